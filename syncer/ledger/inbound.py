"""Events posted to `syncer serve`, kept in the ledger's ``inbound_events`` table until the real-time worker reads them.

``record_events`` stores a post's events in the order given; an event whose ``external_id`` is already stored
(or repeats an earlier one of the same post) is a duplicate and is not stored again, so a poster may retry a
post it got no answer for. ``events_after`` reads them back in id order, past a cursor, as the real-time worker
reads the rows of an ``events:`` table.

Ids only grow in the order rows become visible: SQLite serialises writers and never reuses an id
(``AUTOINCREMENT``); on Postgres a post takes a lock on the table for its transaction, so a sequence value
handed out later is never committed before one handed out earlier. A reader holding a cursor at id N
therefore never misses a row below it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from syncer.ledger.tables import inbound_events

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from syncer.ledger.store import Ledger

__all__ = ["InboundEvent", "PostedEvent", "events_after", "record_events"]

_ID_CHUNK = 900  # ids per IN list: under SQLite's parameter limit


@dataclass(frozen=True)
class PostedEvent:
    """One event as posted: who, what, when (epoch seconds, UTC), and the poster's own id if it gave one."""

    member_key: str
    type: str
    occurred_at: float
    external_id: str | None = None


@dataclass(frozen=True)
class InboundEvent:
    """One stored event, as the real-time worker reads it."""

    id: int
    member_key: str
    type: str
    occurred_at: float


def record_events(ledger: "Ledger", events: Sequence[PostedEvent], *, now: float | None = None) -> tuple[int, int]:
    """Store ``events`` in one transaction, skipping the ones whose ``external_id`` is stored already.

    Returns:
        (accepted, duplicates): how many were stored, and how many were skipped as re-posts.
    """
    fresh = _first_of_each_id(events)
    received = time.time() if now is None else now
    rows = [dict(external_id=e.external_id, member_key=e.member_key, type=e.type, occurred_at=float(e.occurred_at),
                 received_at=received) for e in fresh]
    if not rows:
        return 0, len(events)
    with ledger.begin() as conn:
        accepted = _insert_new(conn, rows)
    return accepted, len(events) - accepted


def events_after(ledger: "Ledger", after_id: int | None, limit: int) -> list[InboundEvent]:
    """At most ``limit`` stored events with an id above ``after_id`` (None: from the first), in id order."""
    query = sa.select(inbound_events.c.id, inbound_events.c.member_key, inbound_events.c.type,
                      inbound_events.c.occurred_at).order_by(inbound_events.c.id).limit(limit)
    if after_id is not None:
        query = query.where(inbound_events.c.id > after_id)
    with ledger.engine.connect() as conn:
        return [InboundEvent(int(i), k, t, float(at)) for i, k, t, at in conn.execute(query)]


def _first_of_each_id(events: Sequence[PostedEvent]) -> list[PostedEvent]:
    """``events`` without the ones repeating an ``external_id`` seen earlier in the same post."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.external_id is not None:
            if event.external_id in seen:
                continue
            seen.add(event.external_id)
        kept.append(event)
    return kept


def _insert_new(conn: "Connection", rows: list[dict]) -> int:
    """Insert ``rows`` but those whose external id is stored; how many were inserted."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "postgresql":
            # serialise posts: ids become visible in the order they were drawn (see the module docstring)
            conn.execute(sa.text(f"LOCK TABLE {inbound_events.name} IN SHARE ROW EXCLUSIVE MODE"))
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(inbound_events).on_conflict_do_nothing(index_elements=[inbound_events.c.external_id])
        return len(conn.execute(statement.returning(inbound_events.c.id), rows).all())
    stored = _stored_ids(conn, [r["external_id"] for r in rows if r["external_id"] is not None])
    new = [r for r in rows if r["external_id"] is None or r["external_id"] not in stored]
    if new:
        conn.execute(inbound_events.insert(), new)
    return len(new)


def _stored_ids(conn: "Connection", ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start:start + _ID_CHUNK]
        found.update(conn.execute(sa.select(inbound_events.c.external_id).where(
            inbound_events.c.external_id.in_(chunk))).scalars())
    return found
