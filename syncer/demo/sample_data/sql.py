"""SQL text helpers shared by the generator's queries: literals, constant lists and the `now` timestamp."""

from __future__ import annotations

from datetime import datetime, timezone


def literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def list_literal(values: list) -> str:
    return "[" + ", ".join(str(v) if isinstance(v, int) else literal(v) for v in values) + "]"


def timestamp_literal(now: datetime) -> str:
    return f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'"


def utc_now(now: datetime | None) -> datetime:
    """`now` as naive UTC to the second (the warehouse's timestamps are naive UTC); None = the current time."""
    if now is None:
        now = datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=0)
