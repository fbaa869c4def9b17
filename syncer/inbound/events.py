"""The body of an event post, checked field by field: ``{"events": [{member_key, type, occurred_at, id?}, ...]}``.

``occurred_at`` is ISO 8601 with a UTC offset (``2026-12-07T21:00:00Z``) or epoch seconds (a number). A
timestamp without an offset is refused rather than guessed. An error names the field and the event's index
and never echoes a value or an unknown key: a member key or an event may carry personal data.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

from syncer.ledger.inbound import PostedEvent

__all__ = ["MAX_EVENTS", "EventBodyError", "parse_events"]

MAX_EVENTS = 10_000  # per post
_FIELDS = {"member_key": 256, "type": 128, "id": 128}  # string fields and their longest length (the ledger's columns)
_KNOWN = {"member_key", "type", "occurred_at", "id"}


class EventBodyError(ValueError):
    """The post's body is not what `POST /events` takes; the message names the field, never its value."""


def parse_events(body: bytes) -> list[PostedEvent]:
    """The events of a post's raw body.

    Raises:
        EventBodyError: the body is not JSON of the documented shape.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventBodyError("the body is not JSON; expected {\"events\": [...]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise EventBodyError("expected a JSON object with an 'events' list")
    extra = sorted(set(document) - {"events"})
    if extra:
        raise EventBodyError(f"{len(extra)} unknown top-level key(s); only 'events' is taken")
    items = document["events"]
    if len(items) > MAX_EVENTS:
        raise EventBodyError(f"events: {len(items)} events in one post; at most {MAX_EVENTS}")
    return [_event(item, index) for index, item in enumerate(items)]


def _event(item: object, index: int) -> PostedEvent:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise EventBodyError(f"{where}: expected an object with member_key, type and occurred_at")
    extra = sorted(set(item) - _KNOWN)
    if extra:
        raise EventBodyError(f"{where}: {len(extra)} unknown key(s); expected only member_key, type, occurred_at, id")
    for field, longest in _FIELDS.items():
        value = item.get(field)
        if field == "id" and value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise EventBodyError(f"{where}.{field}: expected a non-empty string")
        if len(value) > longest:
            raise EventBodyError(f"{where}.{field}: longer than {longest} characters")
    return PostedEvent(member_key=item["member_key"], type=item["type"],
                       occurred_at=_epoch(item.get("occurred_at"), f"{where}.occurred_at"), external_id=item.get("id"))


def _epoch(value: object, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise EventBodyError(f"{where}: expected epoch seconds (a non-negative number)")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise EventBodyError(f"{where}: not an ISO 8601 timestamp") from None
        if moment.tzinfo is None:
            raise EventBodyError(f"{where}: an ISO 8601 timestamp needs a UTC offset (Z or +00:00)")
        return moment.timestamp()
    raise EventBodyError(f"{where}: expected an ISO 8601 timestamp with offset, or epoch seconds")

