"""The real-time path's part of the ledger: members waiting for a refresh, what the stream sent, and held streams.

``StreamBook(ledger)`` wraps a ``Ledger``; the follower (``syncer.delivery.realtime``) and ``syncer status``
read and write through it. The audience itself (who is held) stays in the ledger's ``held`` table, written
by the same ``send_and_commit`` as a batch run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from syncer.ledger.store import Ledger
from syncer.ledger.suppressions import percentiles
from syncer.ledger.tables import stream_changes, stream_holds, stream_pending


@dataclass(frozen=True)
class Touched:
    """A member of a segment to re-evaluate, and the earliest event (or expiry) that asks for it."""

    segment: str
    member_key: str
    event_at: float
    cause: str = "event"  # event | expiry


@dataclass(frozen=True)
class StreamChange:
    sync: str
    member_key: str
    op: str
    cause: str
    event_at: float
    acked_at: float


class StreamBook:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # --- pending refreshes ------------------------------------------------------------------

    def pend(self, touched: Iterable[Touched], now: float) -> None:
        """Remember members to refresh; a member already waiting keeps its earliest event time."""
        rows: dict[tuple[str, str], Touched] = {}
        for t in touched:
            key = (t.segment, t.member_key)
            if key not in rows or t.event_at < rows[key].event_at:
                rows[key] = t
        if not rows:
            return
        with self.ledger.begin() as conn:
            found: dict[tuple[str, str], float] = {}
            for segment in {s for s, _ in rows}:
                keys = sorted(k for s, k in rows if s == segment)
                for start in range(0, len(keys), 500):
                    q = sa.select(stream_pending.c.member_key, stream_pending.c.event_at).where(
                        stream_pending.c.segment == segment, stream_pending.c.member_key.in_(keys[start:start + 500]))
                    found.update({(segment, k): at for k, at in conn.execute(q)})
            new = [dict(segment=s, member_key=k, event_at=t.event_at, cause=t.cause, since=now)
                   for (s, k), t in sorted(rows.items()) if (s, k) not in found]
            if new:
                conn.execute(stream_pending.insert(), new)
            for (segment, key), t in rows.items():
                if (segment, key) in found and t.event_at < found[(segment, key)]:
                    conn.execute(stream_pending.update().where(stream_pending.c.segment == segment,
                                                               stream_pending.c.member_key == key).values(event_at=t.event_at))

    def pending(self, limit: int = 5_000) -> list[Touched]:
        with self.ledger.engine.connect() as conn:
            q = sa.select(stream_pending.c.segment, stream_pending.c.member_key, stream_pending.c.event_at,
                          stream_pending.c.cause).order_by(stream_pending.c.event_at).limit(limit)
            return [Touched(*row) for row in conn.execute(q)]

    def done(self, segment: str, member_keys: Iterable[str]) -> None:
        keys = sorted(set(member_keys))
        with self.ledger.begin() as conn:
            for start in range(0, len(keys), 500):
                conn.execute(stream_pending.delete().where(stream_pending.c.segment == segment,
                                                           stream_pending.c.member_key.in_(keys[start:start + 500])))

    # --- what was sent --------------------------------------------------------------------

    def record(self, changes: Iterable[StreamChange]) -> None:
        values = [vars(c) for c in changes]
        if values:
            with self.ledger.begin() as conn:
                conn.execute(stream_changes.insert(), values)

    def sent_since(self, sync: str, since: float) -> dict[str, int]:
        """Adds and removes the stream sent for ``sync`` since ``since``: what a stream gate counts."""
        with self.ledger.engine.connect() as conn:
            q = (sa.select(stream_changes.c.op, sa.func.count()).where(stream_changes.c.sync == sync,
                                                                       stream_changes.c.acked_at >= since)
                 .group_by(stream_changes.c.op))
            counts = dict(conn.execute(q).all())
        return {"add": int(counts.get("add", 0)), "remove": int(counts.get("remove", 0))}

    def latencies(self, *, since: float = 0.0, sync: str | None = None) -> list[float]:
        with self.ledger.engine.connect() as conn:
            q = sa.select(stream_changes.c.acked_at - stream_changes.c.event_at).where(stream_changes.c.acked_at >= since)
            if sync is not None:
                q = q.where(stream_changes.c.sync == sync)
            return [max(0.0, float(v)) for (v,) in conn.execute(q)]

    def latency(self, *, since: float = 0.0, sync: str | None = None) -> dict[str, float]:
        """p50/p95/p99/max/count of event -> acknowledgement, in seconds (empty when nothing was sent)."""
        return percentiles(self.latencies(since=since, sync=sync))

    # --- held streams ---------------------------------------------------------------------

    def hold(self, sync: str, reason: str, now: float) -> None:
        with self.ledger.begin() as conn:
            if conn.execute(sa.select(stream_holds.c.sync).where(stream_holds.c.sync == sync)).first() is None:
                conn.execute(stream_holds.insert().values(sync=sync, reason=reason, since=now))

    def holds(self) -> dict[str, tuple[str, float]]:
        """sync -> (reason, since) for every held stream."""
        with self.ledger.engine.connect() as conn:
            return {s: (r, t) for s, r, t in conn.execute(sa.select(stream_holds.c.sync, stream_holds.c.reason, stream_holds.c.since))}

    def release(self, sync: str) -> bool:
        with self.ledger.begin() as conn:
            return bool(conn.execute(stream_holds.delete().where(stream_holds.c.sync == sync)).rowcount)
