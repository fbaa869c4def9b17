"""What a warehouse-mode plan cost in the warehouse, per sync run: statements, rows, bytes billed.

``WarehouseCosts`` is filled by the warehouse sessions (``syncer.planning.warehouse_sessions``) as they run
statements, travels with the plan (``SyncPlan.stats["warehouse"]``, so a saved plan applied later still
says what planning it cost) and is stored here, one row per sync run, in the ``warehouse_costs`` table.
``syncer history`` shows it ("warehouse: 7 statements, 12,400 rows returned"), and so does the sync
asset's Dagster metadata.

What each engine reports, and so what a row holds (a figure the engine does not report stays NULL,
never a guess):

Every engine: statements, rows returned (rows that left the warehouse), rows uploaded, seconds waited.
Beyond those:
- DuckDB: rows scanned, from its profiler (``total_rows_scanned`` of each statement).
- Snowflake: each statement's query id (``cursor.sfqid``), to look up in QUERY_HISTORY for credits.
- BigQuery: bytes billed and processed, and the job ids (the DB-API cursor's query job,
  https://cloud.google.com/python/docs/reference/bigquery/latest/google.cloud.bigquery.job.QueryJob).
- Postgres, Spark, Databricks: nothing more is reported cheaply.

Segment-wide statements (reading the segment's columns and counts, the bookkeeping schema) are counted
with the first sync planned from that segment in a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from syncer.ledger.tables import sync_runs, warehouse_costs

__all__ = ["WarehouseCosts", "record_warehouse_costs", "warehouse_costs_of"]

MAX_QUERY_IDS = 200  # enough to find a run's statements in the warehouse's own history; a bound on the row


@dataclass
class WarehouseCosts:
    """Figures of the statements a warehouse-mode plan ran; ``None`` where the engine does not report one."""

    engine: str = ""
    statements: int = 0
    rows_returned: int = 0  # rows that left the warehouse (results read by the syncer)
    rows_uploaded: int = 0  # rows the syncer put into work tables (keys to delete, fingerprints to insert)
    rows_scanned: int | None = None
    bytes_billed: int | None = None
    bytes_processed: int | None = None
    seconds: float = 0.0  # time spent waiting on the warehouse
    query_ids: list[str] = field(default_factory=list)

    def add(self, *, rows_scanned: int | None = None, bytes_billed: int | None = None,
            bytes_processed: int | None = None, query_id: str | None = None) -> None:
        """Add what the engine reported for one statement."""
        if rows_scanned is not None:
            self.rows_scanned = (self.rows_scanned or 0) + int(rows_scanned)
        if bytes_billed is not None:
            self.bytes_billed = (self.bytes_billed or 0) + int(bytes_billed)
        if bytes_processed is not None:
            self.bytes_processed = (self.bytes_processed or 0) + int(bytes_processed)
        if query_id and len(self.query_ids) < MAX_QUERY_IDS:
            self.query_ids.append(str(query_id))

    def merge(self, other: "WarehouseCosts | dict | None") -> "WarehouseCosts":
        """These figures plus ``other``'s (a later catch-up of the same sync run)."""
        if not other:
            return self
        other = other if isinstance(other, WarehouseCosts) else WarehouseCosts.from_dict(other)
        self.engine = self.engine or other.engine
        self.statements += other.statements
        self.rows_returned += other.rows_returned
        self.rows_uploaded += other.rows_uploaded
        self.seconds = round(self.seconds + other.seconds, 3)
        self.add(rows_scanned=other.rows_scanned, bytes_billed=other.bytes_billed, bytes_processed=other.bytes_processed)
        self.query_ids = (self.query_ids + other.query_ids)[:MAX_QUERY_IDS]
        return self

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WarehouseCosts":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "query_ids": list(known.get("query_ids") or [])})

    def summary(self) -> str:
        """One line for people: ``7 statements, 12,400 rows returned, 1,000,000 rows scanned``."""
        parts = [_count(self.statements, "statement"), _count(self.rows_returned, "row") + " returned"]
        if self.rows_uploaded:
            parts.append(_count(self.rows_uploaded, "row") + " uploaded")
        if self.rows_scanned is not None:
            parts.append(_count(self.rows_scanned, "row") + " scanned")
        if self.bytes_billed is not None:
            parts.append(f"{_size(self.bytes_billed)} billed")
        if self.bytes_processed is not None and self.bytes_billed is None:
            parts.append(f"{_size(self.bytes_processed)} processed")
        return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} B"


class _Store(Protocol):
    engine: sa.engine.Engine

    def begin(self): ...


def record_warehouse_costs(ledger: _Store, *, sync_run_id: int, sync: str, costs: WarehouseCosts | dict | None) -> None:
    """Store a sync run's warehouse costs; nothing for a run without any (the local mode)."""
    if not costs:
        return
    c = costs if isinstance(costs, WarehouseCosts) else WarehouseCosts.from_dict(costs)
    with ledger.begin() as conn:
        run_id = conn.execute(sa.select(sync_runs.c.run_id).where(sync_runs.c.id == sync_run_id)).scalar_one()
        conn.execute(warehouse_costs.insert().values(
            sync_run_id=sync_run_id, run_id=run_id, sync=sync, engine=c.engine, statements=c.statements,
            rows_returned=c.rows_returned, rows_uploaded=c.rows_uploaded, rows_scanned=c.rows_scanned,
            bytes_billed=c.bytes_billed, bytes_processed=c.bytes_processed, seconds=round(c.seconds, 3),
            query_ids=json.dumps(c.query_ids) if c.query_ids else None, recorded_at=time.time()))


def warehouse_costs_of(ledger: _Store, sync_run_ids: Iterable[int]) -> dict[int, WarehouseCosts]:
    """sync run id -> its warehouse costs, for the runs that have any."""
    ids = list(sync_run_ids)
    if not ids:
        return {}
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(warehouse_costs).where(warehouse_costs.c.sync_run_id.in_(ids))).mappings().all()
    return {row["sync_run_id"]: WarehouseCosts(
        engine=row["engine"], statements=row["statements"], rows_returned=row["rows_returned"],
        rows_uploaded=row["rows_uploaded"] or 0, rows_scanned=row["rows_scanned"], bytes_billed=row["bytes_billed"],
        bytes_processed=row["bytes_processed"], seconds=row["seconds"] or 0.0,
        query_ids=json.loads(row["query_ids"]) if row["query_ids"] else []) for row in rows}
