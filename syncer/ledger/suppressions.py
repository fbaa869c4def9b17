"""The fast path's part of the ledger: suppressions, the outcome of each conversion, and cursors.

These methods are mixed into ``syncer.ledger.store.Ledger`` (callers keep using one ``Ledger``); they
live here because they answer a different question than the audience bookkeeping does: "who
must not be in a segment right now, and how fast did we act on each conversion".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from syncer.ledger.tables import cursors, suppression_events, suppressions

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


class SuppressionRecords:
    """Suppressions, suppression events and cursors; needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def suppress(self, member_key: str, segments: Sequence[str], reason: str, expires_at: float | None) -> None:
        """Record (or extend) a suppression of a member from segments; idempotent."""
        now = time.time()
        with self.begin() as conn:
            for segment in segments:
                row = conn.execute(sa.select(suppressions.c.expires_at).where(
                    suppressions.c.member_key == member_key, suppressions.c.segment == segment)).first()
                if row is None:
                    conn.execute(suppressions.insert().values(member_key=member_key, segment=segment, reason=reason,
                                                              created_at=now, expires_at=expires_at))
                elif row[0] is not None and (expires_at is None or expires_at > row[0]):
                    conn.execute(suppressions.update().where(
                        suppressions.c.member_key == member_key, suppressions.c.segment == segment).values(
                        expires_at=expires_at, reason=reason))

    def release_suppressions(self, segment: str, member_keys: Sequence[str]) -> int:
        """Drop until-they-leave suppressions of members who left the segment; returns how many."""
        gone = 0
        with self.begin() as conn:
            for start in range(0, len(member_keys), 900):
                result = conn.execute(suppressions.delete().where(
                    suppressions.c.segment == segment, suppressions.c.expires_at.is_(None),
                    suppressions.c.member_key.in_(list(member_keys[start:start + 900]))))
                gone += result.rowcount or 0
        return gone

    def active_suppressions(self, now: float | None = None) -> list[tuple[str, str]]:
        now = now or time.time()
        with self.engine.connect() as conn:
            q = sa.select(suppressions.c.member_key, suppressions.c.segment).where(
                sa.or_(suppressions.c.expires_at.is_(None), suppressions.c.expires_at > now))
            return [(k, s) for k, s in conn.execute(q)]

    def suppressed_since(self, since: float, segment: str, now: float | None = None) -> set[str]:
        """Members suppressed from ``segment`` (or every segment) by suppressions recorded at or after
        ``since`` and still active: what a plan made at ``since`` could not know."""
        now = now or time.time()
        with self.engine.connect() as conn:
            q = sa.select(suppressions.c.member_key).where(
                suppressions.c.created_at >= since, suppressions.c.segment.in_((segment, "*")),
                sa.or_(suppressions.c.expires_at.is_(None), suppressions.c.expires_at > now))
            return set(conn.execute(q).scalars())

    def record_suppression_event(self, *, conversion_id: str, member_key: str, sync: str, converted_at: float,
                                 outcome: str) -> None:
        """Store the outcome of one (conversion, sync): removed | not_held | cancelled | pending | failed.

        A ``pending`` one (the destination failed for now) is retried by ``pending_suppressions``."""
        with self.begin() as conn:
            where = (suppression_events.c.conversion_id == conversion_id) & (suppression_events.c.sync == sync)
            if conn.execute(sa.select(suppression_events.c.id).where(where)).first():
                conn.execute(suppression_events.update().where(where).values(outcome=outcome, acked_at=time.time()))
            else:
                conn.execute(suppression_events.insert().values(
                    conversion_id=conversion_id, member_key=member_key, sync=sync, converted_at=converted_at,
                    acked_at=time.time(), outcome=outcome))

    def suppression_done(self, conversion_id: str, sync: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(suppression_events.c.id).where(
                suppression_events.c.conversion_id == conversion_id, suppression_events.c.sync == sync,
                suppression_events.c.outcome != "pending")).first() is not None

    def pending_suppressions(self) -> list[tuple[str, str, str, float]]:
        """(conversion_id, member_key, sync, converted_at) whose remove has not been acknowledged yet."""
        with self.engine.connect() as conn:
            q = sa.select(suppression_events.c.conversion_id, suppression_events.c.member_key, suppression_events.c.sync,
                          suppression_events.c.converted_at).where(suppression_events.c.outcome == "pending")
            return [tuple(row) for row in conn.execute(q)]

    def suppression_latencies(self, since: float = 0.0, sync: str | None = None) -> list[float]:
        """Seconds from conversion to the destination's acknowledgement, for removes that happened (of ``sync``)."""
        with self.engine.connect() as conn:
            q = sa.select(suppression_events.c.acked_at - suppression_events.c.converted_at).where(
                suppression_events.c.outcome == "removed", suppression_events.c.acked_at >= since)
            if sync is not None:
                q = q.where(suppression_events.c.sync == sync)
            return [float(v) for (v,) in conn.execute(q)]

    # --- cursors: how far the conversion follower has read ------------------------------------

    def get_cursor(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(cursors.c.value).where(cursors.c.name == name)).scalar()

    def set_cursor(self, name: str, value: str) -> None:
        with self.begin() as conn:
            updated = conn.execute(cursors.update().where(cursors.c.name == name).values(value=value, updated_at=time.time()))
            if not updated.rowcount:
                conn.execute(cursors.insert().values(name=name, value=value, updated_at=time.time()))


def percentiles(values: list[float], points=(50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, plus the max, in seconds: of ``suppression_latencies``, for `status`."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{p}": round(ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))], 3) for p in points}
    out["max"] = round(ordered[-1], 3)
    out["count"] = len(ordered)
    return out
