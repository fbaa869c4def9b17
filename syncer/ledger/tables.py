"""The ledger's tables and how an older ledger database is brought up to date.

Kept apart from ``syncer.ledger.store`` so the schema reads as one page: each table says what it holds,
and ``migrate`` is the only code that changes the shape of the store. ``syncer.ledger.store`` re-exports
every table, so ``from syncer.ledger.store import suppressions`` keeps working.

Bump ``SCHEMA_VERSION`` together with an entry in ``_MIGRATIONS`` (the SQL, or steps such as
``_add_columns``, that reach it from the version before); ``migrate`` refuses a ledger written by a newer
syncer rather than guessing. A new table needs no migration (``create_all`` makes it); a new column on an
existing table does, and must be nullable so rows written before it stay valid.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 5  # 2: sync_runs.error_class, error_fault, error_detail; 3: sync_state.batch_version;
# 4: platform_jobs.poll_error; 5: sync_state.log_rows

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
    # bumped by every commit but the fast path's: what a saved plan is checked against, so a conversion
    # suppressed beside a batch run never makes its plan stale (apply re-reads suppressions per batch instead)
    sa.Column("batch_version", sa.Integer),
    # held_log entries after log_floor (NULL: not counted yet, as 0). Past Ledger.MAX_LOG the log stops and
    # log_floor follows each commit, until a snapshot is written: no reader would replay that many changes
    sa.Column("log_rows", sa.Integer),
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
    # the error that failed (or cut short) the sync: its class, whose fault, and the platform's own words,
    # scrubbed by syncer.ledger.failures (no PII, no secrets, at most DETAIL_LIMIT characters)
    sa.Column("error_class", sa.String(128)),
    sa.Column("error_fault", sa.String(16)),  # operator | platform | transient | caller
    sa.Column("error_detail", sa.Text),
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
    sa.Column("updated_at", sa.Float, nullable=False),  # when the platform last answered about it
    sa.Column("poll_error", sa.String(256)),  # why the last poll got no answer (cleared by an answer)
)
cursors = sa.Table(
    "cursors", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
shared_links = sa.Table(
    # members of a sync linked by a shared identifier value (one person to the platform), found at plan
    # time (syncer.planning.shared); the fast path reads it to never remove a member linked to one who stays
    "shared_links", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("link", sa.String(256), nullable=False),  # the smallest member key of its linked group
    sa.Column("kinds", sa.String(128), nullable=False),  # the kinds of its values another member shares
    sa.Index("ix_shared_links_link", "sync", "link"),
)
destination_waits = sa.Table(
    # a wait a platform asked for ("regain access in 5 minutes"), honoured by every later run and path
    "destination_waits", metadata,
    sa.Column("destination", sa.String(128), primary_key=True),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("set_at", sa.Float, nullable=False),
)

ledger_identity = sa.Table(
    # who this ledger is: a random id written when it is created, which the project remembers
    # (syncer.ledger.store.Ledger.identity), so a new or restored ledger is told apart from the one texts were sent from
    "ledger_identity", metadata,
    sa.Column("name", sa.String(16), primary_key=True),  # always "ledger": one row
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def _add_columns(table: sa.Table, *names: str) -> Callable[[Connection], None]:
    """A migration step adding the nullable ``names`` of ``table`` that the stored table lacks. Safe to run
    again, and while another process opening the same old ledger adds them too."""
    columns = [table.c[name] for name in names]
    if any(not c.nullable or c.server_default is not None for c in columns):
        raise ValueError("_add_columns adds nullable columns without defaults only")

    def step(conn: Connection) -> None:
        for column in columns:
            if column.name in _stored_columns(conn, table):
                continue
            ddl = f"ALTER TABLE {table.name} ADD COLUMN{{}} {column.name} {column.type.compile(dialect=conn.dialect)}"
            if conn.dialect.name == "postgresql":  # waits for a concurrent ALTER, then skips
                conn.execute(sa.text(ddl.format(" IF NOT EXISTS")))
                continue
            try:
                conn.execute(sa.text(ddl.format("")))
            except sa.exc.OperationalError:  # SQLite: "duplicate column name" if another process won the race
                if column.name not in _stored_columns(conn, table):
                    raise

    return step


def _stored_columns(conn: Connection, table: sa.Table) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table.name)}


_MIGRATIONS: dict[int, Sequence[str | Callable[[Connection], None]]] = {
    # version -> SQL or steps run to reach it from version - 1
    2: (_add_columns(sync_runs, "error_class", "error_fault", "error_detail"),),
    3: (_add_columns(sync_state, "batch_version"),),
    4: (_add_columns(platform_jobs, "poll_error"),),
    5: (_add_columns(sync_state, "log_rows"),),
}


def _record_version(conn: Connection, version: int) -> None:
    """Note ``version`` as applied; a process that migrated the same ledger at the same moment already did."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))
        return
    conn.execute(insert(schema_version).values(version=version, applied_at=time.time()).on_conflict_do_nothing())


def _record_identity(conn: Connection) -> None:
    """Give a ledger its identity once; a process creating the same ledger at the same moment keeps the first."""
    values = dict(name="ledger", id=uuid.uuid4().hex, created_at=time.time())
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        if conn.execute(sa.select(ledger_identity.c.id)).first() is None:
            conn.execute(ledger_identity.insert().values(**values))
        return
    conn.execute(insert(ledger_identity).values(**values).on_conflict_do_nothing())


def migrate(conn: Connection) -> None:
    """Create missing tables, then run every migration between the stored version and ours."""
    metadata.create_all(conn)
    _record_identity(conn)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if current is None:
        _record_version(conn, SCHEMA_VERSION)
        return
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"ledger schema version {current} is newer than this syncer knows ({SCHEMA_VERSION}); upgrade syncer"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for step in _MIGRATIONS.get(version, ()):
            if callable(step):
                step(conn)
            else:
                conn.execute(sa.text(step))
        _record_version(conn, version)


# --- Google job stages (issue 13) ---
job_steps = sa.Table(
    "job_steps", metadata,
    # one platform job a connector builds in several calls (Google: create, add operations, run), per batch step;
    # read through syncer.ledger.jobs.LedgerJobBook (Destination.job_book)
    sa.Column("destination", sa.String(128), primary_key=True),
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("step", sa.String(64), primary_key=True),  # digest of the step: op, consent group, member keys and identifiers
    sa.Column("job", sa.String(512)),  # the platform's job name, once it exists
    sa.Column("stage", sa.String(32), nullable=False),  # the connector's own words: created, operations_added, running ...
    sa.Column("detail", sa.Text, nullable=False),  # JSON the connector needs to resume (row outcomes by member_key, no PII)
    sa.Column("sync_version", sa.Integer, nullable=False),  # sync_state.version when the step began
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# --- message claims (issue 14) ---
message_claims = sa.Table(
    # one text a sync owes a member for their entry into the segment (syncer.ledger.claims): taken by a
    # conditional insert just before the send, so two processes never both own it, and settled right after
    "message_claims", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("raw_fp", sa.String(32), nullable=False),  # the entry the text is for
    sa.Column("identifiers", sa.Text, nullable=False),  # JSON, as sent: what the platform's log is searched by
    sa.Column("state", sa.String(16), nullable=False),  # claimed | sent | not_sent | unknown
    sa.Column("attempt", sa.Integer, nullable=False),  # bumped by every take-over: the compare-and-set token
    sa.Column("claimed_by", sa.String(256), nullable=False),  # host/pid namespace/pid/start/sync run of the holder
    sa.Column("claimed_at", sa.Float, nullable=False),  # when the holder took it
    sa.Column("since", sa.Float, nullable=False),  # earliest moment a text for this entry may have gone out
    sa.Column("message_id", sa.String(64)),  # the platform's id of the text (Twilio's message SID)
    sa.Column("at", sa.Float, nullable=False),  # last change of state
    sa.Index("ix_message_claims_state", "sync", "state"),
)


# --- leases (issue 14) ---
sync_leases = sa.Table(
    # who applies a sync right now (syncer.ledger.leases): one row per sync, taken by a conditional insert,
    # renewed while its holder works, taken over only once it expired or its process is gone
    "sync_leases", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),  # this holding's own id: renew, release and take-over compare it
    sa.Column("beat", sa.Integer, nullable=False),  # bumped by every renewal: a take-over compares it too
    sa.Column("label", sa.String(128), nullable=False),  # what holds it: "syncer run", "Dagster run 1a2b3c4d"
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("process", sa.String(128), nullable=False),  # pid namespace/pid/start time of the holding process
    sa.Column("run_id", sa.Integer),  # the holder's run in ``runs``, once it has one
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("renewed_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


# --- batch intents (issue 14) ---
batch_intents = sa.Table(
    # a batch about to be sent to a platform, written before the call and deleted in the same transaction
    # that records what landed (syncer.ledger.intents): a row left behind is a batch whose outcome nobody
    # recorded, settled by the next process that holds the sync's lease
    "batch_intents", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),  # add | remove
    sa.Column("rows", sa.Text, nullable=False),  # JSON [[member_key, raw_fp, identifiers as sent], ...]
    sa.Column("fast_path", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_batch_intents_sync", "sync"),
)


# --- match rates (issue 19) ---
match_rates = sa.Table(
    # what each run of a sync (and each finished platform job) says about matching, over time
    # (syncer.ledger.match_rates): our own readiness of the members before upload, and the platform's figures
    "match_rates", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("sync_run_id", sa.Integer),  # the run's row in sync_runs; NULL on a job's row
    sa.Column("job", sa.String(512)),  # the platform job a row reports (Google); NULL on a run's row
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("members", sa.Integer, nullable=False),  # held members plus members our identity rules refused
    sa.Column("held", sa.Integer, nullable=False),  # of them, held
    sa.Column("ready_email", sa.Integer, nullable=False),  # of them, with a valid email (as held)
    sa.Column("ready_phone", sa.Integer, nullable=False),
    sa.Column("ready_both", sa.Integer, nullable=False),
    sa.Column("readiness_key", sa.String(64), nullable=False),  # state the readiness was counted at (reused while equal)
    sa.Column("sent", sa.Integer, nullable=False),  # add rows sent in the run
    sa.Column("accepted", sa.Integer, nullable=False),  # of them, accepted per their row outcomes
    sa.Column("platform_received", sa.Integer),  # what the platform said it received (Meta num_received)
    sa.Column("platform_invalid", sa.Integer),  # ... and found invalid (Meta num_invalid_entries)
    sa.Column("size_low", sa.Integer),  # the platform's audience size after the run, as a range
    sa.Column("size_high", sa.Integer),
    sa.Column("match_rate_range", sa.String(64)),  # a finished job's range as the platform names it (Google)
    sa.Column("match_rate", sa.Float),  # percent; see syncer.ledger.match_rates.platform_match_rate
    sa.Column("match_rate_source", sa.String(32)),  # job_range | audience_size | accepted
    sa.Index("ix_match_rates_sync", "sync", "id"),
)


# --- real-time segments (issue 18): syncer.ledger.realtime ---
stream_pending = sa.Table(
    # members an event or an expiry touched whose refresh has not gone through yet (a sync was busy, the
    # warehouse or the platform refused for now, the stream is held); retried by the follower
    "stream_pending", metadata,
    sa.Column("segment", sa.String(128), primary_key=True),
    sa.Column("member_key", sa.String(256), primary_key=True),
    sa.Column("event_at", sa.Float, nullable=False),  # the earliest event still waiting: latency counts from it
    sa.Column("cause", sa.String(32), nullable=False),  # event | expiry
    sa.Column("since", sa.Float, nullable=False),
)
stream_changes = sa.Table(
    # each add or remove the real-time path sent and the platform acknowledged, with its latency; the
    # stream gates count these over their window
    "stream_changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("member_key", sa.String(256), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),  # add | remove
    sa.Column("cause", sa.String(32), nullable=False),  # event | expiry
    sa.Column("event_at", sa.Float, nullable=False),
    sa.Column("acked_at", sa.Float, nullable=False),
    sa.Index("ix_stream_changes_sync", "sync", "acked_at"),
)
stream_holds = sa.Table(
    # a sync whose stream a tripped stream gate holds: nothing more is sent for it by the real-time path
    # until an operator releases it (`syncer follow --release SYNC`); its batch runs go on
    "stream_holds", metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
)


# --- inbound events (issue 18) ---
inbound_events = sa.Table(
    # events posted to `syncer serve` (syncer.ledger.inbound): read in id order by the real-time worker, like
    # the rows of an `events:` table; ids never go back (SQLite AUTOINCREMENT), so a cursor on them is safe
    "inbound_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.String(128), unique=True),  # the poster's id: a re-post of it is a duplicate
    sa.Column("member_key", sa.String(256), nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("occurred_at", sa.Float, nullable=False),  # epoch seconds, UTC
    sa.Column("received_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)


# --- warehouse costs (issue 17) ---
warehouse_costs = sa.Table(
    # what a warehouse-mode plan cost in the warehouse, one row per sync run (syncer.ledger.warehouse_costs);
    # a figure the engine does not report stays NULL
    "warehouse_costs", metadata,
    sa.Column("sync_run_id", sa.Integer, sa.ForeignKey("sync_runs.id"), primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("engine", sa.String(32), nullable=False),  # duckdb | postgresql | snowflake | spark | bigquery | databricks
    sa.Column("statements", sa.Integer, nullable=False),
    sa.Column("rows_returned", sa.BigInteger, nullable=False),  # rows that left the warehouse
    sa.Column("rows_uploaded", sa.BigInteger),  # rows the syncer put into its work tables
    sa.Column("rows_scanned", sa.BigInteger),
    sa.Column("bytes_billed", sa.BigInteger),
    sa.Column("bytes_processed", sa.BigInteger),
    sa.Column("seconds", sa.Float),  # time spent waiting on the warehouse
    sa.Column("query_ids", sa.Text),  # JSON list: the warehouse's own ids of the statements, where it gives them
    sa.Column("recorded_at", sa.Float, nullable=False),
)
