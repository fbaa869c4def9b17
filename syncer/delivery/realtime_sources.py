"""Where the real-time path learns which members to re-evaluate: the `events:` table, events posted to
`syncer serve`, and members whose ``expires_at`` has just passed.

Each source is read past a cursor kept in the ledger (``cursors``), and what it finds becomes ``Touched``
members recorded in ``stream_pending`` *before* the cursor moves, so a crash in between reads the rows
again (recording is idempotent) and loses nothing.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
from collections.abc import Sequence

import sqlalchemy as sa

from syncer.ledger.realtime import Touched
from syncer.ledger.store import Ledger
from syncer.planning.realtime_sql import dialect_of, expiring_between
from syncer.project.config import ConversionSource, EventSource
from syncer.project.project import Project

EVENTS_CURSOR = "events"
POSTED_CURSOR = "posted_events"
EXPIRY_CURSOR = "expiries"


def epoch(value) -> float:
    """A time from a warehouse or a cursor as epoch seconds; a naive datetime is UTC."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(value, str):
        return epoch(dt.datetime.fromisoformat(value))
    return float(value)


def dump_cursor(position: list) -> str:
    """A cursor as JSON; timestamps keep their type through an ISO string."""
    return json.dumps([{"t": v.isoformat()} if isinstance(v, dt.datetime) else v for v in position])


def load_cursor(text: str | None) -> list | None:
    if text is None:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        values = [text]  # a plain id written by hand
    if not isinstance(values, list):
        values = [values]
    return [dt.datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in values]


def open_source(url: str) -> sa.Engine:
    """An engine on a table source. DuckDB lets one process write a file at a time: a connection is opened
    read-only per read and closed after it (no pool), so whatever lands the events can write between polls."""
    if url.startswith("duckdb"):
        return sa.create_engine(url, connect_args={"read_only": True}, poolclass=sa.pool.NullPool)
    return sa.create_engine(url)


def read_after(db: sa.Engine, source: ConversionSource | EventSource, cursor: str | None,
               limit: int) -> list[tuple[str, str, str, str, float]]:
    """Rows of a cursor-read table after ``cursor``, oldest first: (cursor to save, row id, member key, type,
    epoch time). Rows without a member key are skipped (the cursor still moves past them)."""
    s = source
    after = load_cursor(cursor) or None  # [] : from the first row (the table was empty when the worker started)
    order = [s.cursor_column] + ([s.tiebreak_column] if s.tiebreak_column else [])
    where, params = "", {}
    if after is not None and s.tiebreak_column:
        where = f" WHERE {s.cursor_column} > :a OR ({s.cursor_column} = :a AND {s.tiebreak_column} > :b)"
        params = {"a": after[0], "b": after[1]}
    elif after is not None:
        where, params = f" WHERE {s.cursor_column} > :a", {"a": after[0]}
    query = (f"SELECT {', '.join(order)}, {s.member_key_column}, {s.type_column}, {s.time_column} FROM {s.table}"
             f"{where} ORDER BY {', '.join(order)} LIMIT {int(limit)}")
    with db.connect() as conn:
        rows = conn.execute(sa.text(query), params).all()
    out = []
    for row in rows:
        position, (key, kind, at) = list(row[:len(order)]), row[len(order):]
        out.append((dump_cursor(position), ":".join(map(str, position)), None if key is None else str(key), str(kind), epoch(at)))
    return out


def segments_listening(project: Project, event_type: str) -> list[str]:
    return sorted(name for name, segment in project.segments.items()
                  if event_type in segment.events or "*" in segment.events)


def touched_by(project: Project, events: Sequence[tuple[str | None, str, float]]) -> list[Touched]:
    """(member key, type, time) of events -> the members each listening segment must re-evaluate."""
    touched = []
    for key, kind, at in events:
        if key:
            touched += [Touched(segment, key, at, "event") for segment in segments_listening(project, kind)]
    return touched


class EventReader:
    """The `events:` table and the events posted to `syncer serve` (``syncer.ledger.inbound``)."""

    def __init__(self, project: Project, ledger: Ledger) -> None:
        self.project = project
        self.ledger = ledger
        source = project.config.events
        self._db = open_source(project.events_url()) if source is not None else None

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()

    def table(self, limit: int = 1_000) -> tuple[list[Touched], str | None]:
        """Members touched by new rows of the events table, and the cursor to save once they are recorded."""
        if self._db is None:
            return [], None
        cursor = self.ledger.get_cursor(EVENTS_CURSOR)
        if cursor is None:  # the first start: events so far are in the warehouse, the batch run's to act on
            return [], self._end_of_table()
        rows = read_after(self._db, self.project.config.events, cursor, limit)
        if not rows:
            return [], None
        return touched_by(self.project, [(key, kind, at) for _, _, key, kind, at in rows]), rows[-1][0]

    def _end_of_table(self) -> str | None:
        s = self.project.config.events
        order = [s.cursor_column] + ([s.tiebreak_column] if s.tiebreak_column else [])
        with self._db.connect() as conn:
            last = conn.execute(sa.text(f"SELECT {', '.join(order)} FROM {s.table} ORDER BY"
                                        f" {', '.join(c + ' DESC' for c in order)} LIMIT 1")).first()
        return dump_cursor(list(last) if last is not None else [])

    def posted(self, limit: int = 1_000) -> tuple[list[Touched], str | None]:
        """Members touched by events posted to `syncer serve` since the last read."""
        from syncer.ledger.inbound import events_after

        after = self.ledger.get_cursor(POSTED_CURSOR)
        events = events_after(self.ledger, int(after) if after else None, limit)
        if not events:
            return [], None
        return touched_by(self.project, [(e.member_key, e.type, e.occurred_at) for e in events]), str(events[-1].id)


class ExpiryReader:
    """Members whose ``expires_at`` passed since the last look, per segment that names the column.

    Asked of the warehouse with the segment's own query (without the expiry filter the engine adds), every
    ``LOOK_EVERY_S`` for the members expiring up to ``LOOKAHEAD_S`` ahead; each is then due at its own
    moment, so a removal is not late by the look's interval and the warehouse is not queried every step. The
    cursor is the moment up to which expiries were handed over: a restarted worker looks again from there. The
    first look starts from now: a member who expired while no worker ever ran is the next batch run's to
    remove. A member whose moment was moved in the warehouse after the look (a new cart event) is
    re-evaluated at the old moment too and simply stays."""

    LOOKAHEAD_S = 10.0
    LOOK_EVERY_S = 5.0

    def __init__(self, project: Project, ledger: Ledger) -> None:
        self.project = project
        self.ledger = ledger
        self.segments = sorted(name for name, s in project.segments.items() if s.expires_at)
        self._db = open_source(project.warehouse_url()) if self.segments else None
        self._horizon: float | None = None  # expiries up to here are known (in _due or handed over)
        self._next_look = -math.inf
        self._due: list[tuple[float, str, str]] = []  # heap of (moment, segment, member key)

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()

    def due(self, now: float) -> tuple[list[Touched], str | None]:
        if self._db is None:
            return [], None
        if self._horizon is None:
            saved = self.ledger.get_cursor(EXPIRY_CURSOR)
            if saved is None:
                return [], repr(now)
            self._horizon = float(saved)
        looked = now >= self._next_look
        if looked:
            self._look(self._horizon, now + self.LOOKAHEAD_S)
            self._horizon, self._next_look = now + self.LOOKAHEAD_S, now + self.LOOK_EVERY_S
        touched = []
        while self._due and self._due[0][0] <= now:
            at, segment, key = heapq.heappop(self._due)
            touched.append(Touched(segment, key, at, "expiry"))
        # the cursor moves when something was handed over or looked at; a step with neither writes nothing
        return touched, repr(now) if looked or touched else None

    def _look(self, after: float, until: float) -> None:
        dialect = dialect_of(self.project.warehouse_url())
        with self._db.connect() as conn:
            for name in self.segments:
                segment = self.project.segments[name]
                sql = expiring_between(self.project.segment_sql(name), segment.member_key, segment.expires_at, after, until, dialect)
                for key, at in conn.execute(sa.text(sql)):
                    if key is not None:
                        heapq.heappush(self._due, (epoch(at), name, str(key)))
