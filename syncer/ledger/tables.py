"""The ledger's tables and how an older ledger database is brought up to date.

Kept apart from ``syncer.ledger.store`` so the schema reads as one page: each table says what it holds,
and ``migrate`` is the only code that changes the shape of the store. ``syncer.ledger.store`` re-exports
every table, so ``from syncer.ledger.store import suppressions`` keeps working.

Bump ``SCHEMA_VERSION`` together with an entry in ``_MIGRATIONS`` (the SQL that reaches it from the
version before); ``migrate`` refuses a ledger written by a newer syncer rather than guessing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
held = sa.Table(
    "held", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("raw_fp", sa.String(32), nullable=False),
    sa.Column("identifiers", sa.Text, nullable=False),  # JSON: kind -> encoded value as sent
    sa.Column("updated_at", sa.Float, nullable=False),
)
sync_state = sa.Table(
    "sync_state", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_success_at", sa.Float),
    sa.Column("log_floor", sa.Integer, nullable=False, server_default="0"),  # held_log holds every change after this
)
held_log = sa.Table(
    "held_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("member_key", sa.String(256), nullable=False),
    sa.Column("raw_fp", sa.String(32)),  # NULL: the member left the audience
    sa.Index("ix_held_log_sync_version", "sync", "version"),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),  # running | ok | held | failed
)
sync_runs = sa.Table(
    "sync_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("sync", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | ok | held | failed | partial
    sa.Column("plan_hash", sa.String(64)),
    sa.Column("members", sa.Integer),
    sa.Column("added", sa.Integer, default=0),
    sa.Column("removed", sa.Integer, default=0),
    sa.Column("rejected", sa.Integer, default=0),
    sa.Column("retried", sa.Integer, default=0),
    sa.Column("deferred", sa.Integer, default=0),
    sa.Column("requests", sa.Integer, default=0),
    sa.Column("reason", sa.Text),  # held reason or error message (operator words, no PII)
    sa.Column("details", sa.Text),  # JSON: platform counts, sample reasons, timings
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)
batches = sa.Table(
    "batches", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_run_id", sa.Integer, sa.ForeignKey("sync_runs.id"), nullable=False, index=True),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("retryable", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("platform_counts", sa.Text),
    sa.Column("at", sa.Float, nullable=False),
)
row_outcomes = sa.Table(
    "row_outcomes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_run_id", sa.Integer, sa.ForeignKey("sync_runs.id"), nullable=False, index=True),
    sa.Column("member_key", sa.String(256), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(256)),
)
pending = sa.Table(
    "pending", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("reason", sa.String(256)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
)
rejected = sa.Table(
    "rejected", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("raw_fp", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("segment", sa.String(128), primary_key=True),  # "*" = every segment
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
)
platform_ids = sa.Table(
    "platform_ids", metadata,
    sa.Column("destination", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("platform_id", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
suppression_events = sa.Table(
    "suppression_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversion_id", sa.String(128), nullable=False),
    sa.Column("member_key", sa.String(256), nullable=False),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("converted_at", sa.Float, nullable=False),
    sa.Column("acked_at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),  # removed | not_held | failed
    sa.UniqueConstraint("conversion_id", "sync", name="uq_suppression_event"),
)
platform_jobs = sa.Table(
    "platform_jobs", metadata,
    sa.Column("job", sa.String(512), primary_key=True),  # the platform's job name or request id
    sa.Column("destination", sa.String(128), nullable=False),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("failure_reason", sa.String(256)),
    sa.Column("match_rate_range", sa.String(64)),
    sa.Column("final", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
cursors = sa.Table(
    "cursors", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

_MIGRATIONS: dict[int, Sequence[str]] = {}  # version -> SQL run to reach it from version - 1


def migrate(conn: Connection) -> None:
    """Create missing tables, then run every migration between the stored version and ours."""
    metadata.create_all(conn)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=time.time()))
        return
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"ledger schema version {current} is newer than this syncer knows ({SCHEMA_VERSION}); upgrade syncer"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS.get(version, ()):
            conn.execute(sa.text(statement))
        conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))
