"""The ledger: what each audience is believed to hold, what happened in each run, what to retry.

SQLAlchemy Core over SQLite (WAL mode, safe for several processes: Dagster runs, sensors, the CLI)
or Postgres. Writes happen per acknowledged batch, in one transaction, so a crash at any moment
leaves the ledger describing exactly what the platform confirmed; the next plan re-sends the rest.

Tables (``SCHEMA_VERSION`` bumps with a migration in ``_MIGRATIONS``):

- ``held``          sync, member_key -> raw fingerprint and the identifiers sent (needed to remove)
- ``sync_state``    a version counter per sync, bumped by every committed batch (stale-plan check)
- ``held_log``      every change to ``held`` with its version, so a cached snapshot (``syncer.snapshot``)
                    catches up by reading the churn instead of the whole audience
- ``runs`` / ``sync_runs``  one row per command run and per sync within it, with the figures
- ``batches``       each request sent: op, rows, outcome counts
- ``row_outcomes``  rows that did not land: rejected (with reason) or retryable
- ``pending``       rows to retry on the next run
- ``rejected``      rows whose identifiers are unusable, with reason and raw fingerprint
- ``platform_jobs`` jobs a platform runs later (Google Customer Match), polled until final
- ``platform_ids``  a platform's own id per member (Klaviyo profile ids), so lookups happen once
- ``suppressions``, ``cursors``  for the fast path
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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


class PlatformIdCache:
    """A destination's own ids for our members, kept in the ledger (``Destination.id_cache``)."""

    def __init__(self, ledger: "Ledger", destination: str) -> None:
        self._ledger, self._destination = ledger, destination

    def get_many(self, member_keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._ledger.engine.connect() as conn:
            for start in range(0, len(member_keys), 900):
                chunk = list(member_keys[start:start + 900])
                q = sa.select(platform_ids.c.member_key, platform_ids.c.platform_id).where(
                    platform_ids.c.destination == self._destination, platform_ids.c.member_key.in_(chunk))
                out.update({k: v for k, v in conn.execute(q)})
        return out

    def put_many(self, ids: dict[str, str]) -> None:
        if not ids:
            return
        now = time.time()
        with self._ledger.begin() as conn:
            keys = list(ids)
            for start in range(0, len(keys), 900):
                conn.execute(platform_ids.delete().where(platform_ids.c.destination == self._destination,
                                                         platform_ids.c.member_key.in_(keys[start:start + 900])))
            conn.execute(platform_ids.insert(), [dict(destination=self._destination, member_key=k, platform_id=v, updated_at=now)
                                                 for k, v in ids.items()])


@dataclass(frozen=True)
class HeldRow:
    member_key: str
    raw_fp: str
    identifiers: dict[str, str]


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Ledger:
    """Every read and write of the state store goes through here."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
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

    # --- what each audience holds -------------------------------------------------------------

    def state_version(self, sync: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sync_state.c.version).where(sync_state.c.sync == sync)).scalar()
        return int(value or 0)

    def held_fingerprints(self, sync: str) -> tuple[list[str], list[str]]:
        """(member_keys, raw_fps) of every member the audience holds, as two columns."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT member_key, raw_fp FROM held WHERE sync = ?" if self._is_sqlite else
                        "SELECT member_key, raw_fp FROM held WHERE sync = %s", (sync,))
            rows = cur.fetchall()
        finally:
            raw.close()
        if not rows:
            return [], []
        keys, fps = zip(*rows)
        return list(keys), list(fps)

    def held_rows(self, sync: str, member_keys: Sequence[str]) -> dict[str, HeldRow]:
        out: dict[str, HeldRow] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(member_keys), 900):
                chunk = list(member_keys[start:start + 900])
                query = sa.select(held.c.member_key, held.c.raw_fp, held.c.identifiers).where(
                    held.c.sync == sync, held.c.member_key.in_(chunk))
                for key, fp, idents in conn.execute(query):
                    out[key] = HeldRow(key, fp, json.loads(idents))
        return out

    def held_count(self, sync: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(held).where(held.c.sync == sync)).scalar() or 0)

    @property
    def _is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def id_cache(self, destination: str) -> PlatformIdCache:
        return PlatformIdCache(self, destination)

    # --- runs ---------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        with self.begin() as conn:
            return int(conn.execute(runs.insert().values(command=command, started_at=time.time(), status="running")).inserted_primary_key[0])

    def finish_run(self, run_id: int, status: str) -> None:
        with self.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, finished_at=time.time()))

    def start_sync_run(self, run_id: int, sync: str, *, plan_hash: str | None, members: int | None) -> int:
        with self.begin() as conn:
            result = conn.execute(sync_runs.insert().values(
                run_id=run_id, sync=sync, status="running", plan_hash=plan_hash, members=members,
                added=0, removed=0, rejected=0, retried=0, deferred=0, requests=0, started_at=time.time()))
            return int(result.inserted_primary_key[0])

    def finish_sync_run(self, sync_run_id: int, *, status: str, reason: str | None = None, **figures) -> None:
        details = figures.pop("details", None)
        values = dict(status=status, reason=reason, finished_at=time.time(), **figures)
        if details is not None:
            values["details"] = json.dumps(details, sort_keys=True, default=str)
        with self.begin() as conn:
            conn.execute(sync_runs.update().where(sync_runs.c.id == sync_run_id).values(**values))
            if status == "ok":
                sync = conn.execute(sa.select(sync_runs.c.sync).where(sync_runs.c.id == sync_run_id)).scalar()
                self._touch_state(conn, sync, bump=False, success=True)

    def history(self, sync: str | None = None, limit: int = 20) -> list[dict]:
        query = sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
        if sync:
            query = query.where(sync_runs.c.sync == sync)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def last_success(self, sync: str) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sync_state.c.last_success_at).where(sync_state.c.sync == sync)).scalar()

    # --- per-batch commit ---------------------------------------------------------------------

    def _touch_state(self, conn: Connection, sync: str, *, bump: bool = True, success: bool = False) -> int:
        row = conn.execute(sa.select(sync_state.c.version).where(sync_state.c.sync == sync)).first()
        values: dict = {}
        if bump:
            values["version"] = (row[0] if row else 0) + 1
        if success:
            values["last_success_at"] = time.time()
        if row is None:
            conn.execute(sync_state.insert().values(sync=sync, version=values.get("version", 0), log_floor=0,
                                                    last_success_at=values.get("last_success_at")))
        elif values:
            conn.execute(sync_state.update().where(sync_state.c.sync == sync).values(**values))
        return values.get("version", row[0] if row else 0)

    @staticmethod
    def _log(conn: Connection, sync: str, version: int, rows: Iterable[tuple[str, str | None]]) -> None:
        values = [dict(sync=sync, version=version, member_key=k, raw_fp=fp) for k, fp in rows]
        if values:
            conn.execute(held_log.insert(), values)

    def commit_batch(
        self,
        *,
        sync: str,
        sync_run_id: int,
        op: str,
        landed: Sequence[HeldRow],
        failed: Sequence[tuple[str, str, str]],
        attempts: int,
        platform_counts: dict | None = None,
        rows: int,
    ) -> None:
        """Record one acknowledged batch: what landed changes ``held``; failures go to outcomes/pending.

        ``failed`` holds (member_key, status, reason) with status ``rejected`` or ``retryable``.
        """
        now = time.time()
        landed_keys = [r.member_key for r in landed]
        with self.begin() as conn:
            version = self._touch_state(conn, sync)
            if landed:
                if op in ("add", "refresh"):
                    self._upsert_held(conn, sync, landed, now)
                    self._log(conn, sync, version, ((r.member_key, r.raw_fp) for r in landed))
                else:
                    self._delete_keys(conn, held, sync, landed_keys)
                    self._log(conn, sync, version, ((k, None) for k in landed_keys))
                self._delete_keys(conn, pending, sync, landed_keys)
            if failed:
                conn.execute(row_outcomes.insert(), [
                    dict(sync_run_id=sync_run_id, member_key=k, op=op, status=s, reason=r) for k, s, r in failed])
                retry = [(k, r) for k, s, r in failed if s == "retryable"]
                if retry:
                    self._record_pending(conn, sync, op, retry, now)
                gone = [k for k, s, _ in failed if s == "rejected"]
                if gone:
                    self._delete_keys(conn, pending, sync, gone)
            if op != "refresh":
                conn.execute(batches.insert().values(
                    sync_run_id=sync_run_id, op=op, rows=rows, sent=len(landed),
                    rejected=sum(1 for f in failed if f[1] == "rejected"),
                    retryable=sum(1 for f in failed if f[1] == "retryable"),
                    attempts=attempts, platform_counts=json.dumps(platform_counts or {}), at=now))

    def record_deferred(self, *, sync: str, op: str, member_keys: Sequence[str], reason: str) -> None:
        """Rows we could not send in this run (the platform kept failing): retry next run."""
        with self.begin() as conn:
            self._record_pending(conn, sync, op, [(k, reason) for k in member_keys], time.time())

    def forget_held(self, sync: str, member_keys: Sequence[str]) -> None:
        """Drop rows from ``held`` without a remove call (e.g. after a full replace)."""
        with self.begin() as conn:
            version = self._touch_state(conn, sync)
            self._delete_keys(conn, held, sync, member_keys)
            self._log(conn, sync, version, ((k, None) for k in member_keys))

    # --- snapshot support ---------------------------------------------------------------------

    def held_changes_since(self, sync: str, version: int) -> tuple[int, list[tuple[str, str | None]]] | None:
        """(current version, [(member_key, raw_fp or None)] in commit order) for changes after ``version``;
        None when the log no longer reaches back that far."""
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(sync_state.c.version, sync_state.c.log_floor).where(sync_state.c.sync == sync)).first()
            current, floor = (state[0], state[1]) if state else (0, 0)
            if version < floor or version > current:
                return None
            rows = conn.execute(sa.select(held_log.c.member_key, held_log.c.raw_fp).where(
                held_log.c.sync == sync, held_log.c.version > version, held_log.c.version <= current).order_by(held_log.c.id)).all()
        return current, [(k, fp) for k, fp in rows]

    def truncate_log(self, sync: str, up_to: int) -> None:
        """Forget log entries a snapshot at ``up_to`` already covers."""
        with self.begin() as conn:
            conn.execute(held_log.delete().where(held_log.c.sync == sync, held_log.c.version <= up_to))
            conn.execute(sync_state.update().where(sync_state.c.sync == sync, sync_state.c.log_floor < up_to).values(log_floor=up_to))

    def _upsert_held(self, conn: Connection, sync: str, rows: Sequence[HeldRow], now: float) -> None:
        values = [dict(sync=sync, member_key=r.member_key, raw_fp=r.raw_fp,
                       identifiers=json.dumps(r.identifiers, sort_keys=True, separators=(",", ":")), updated_at=now)
                  for r in rows]
        if self._is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(held)
        stmt = stmt.on_conflict_do_update(
            index_elements=[held.c.sync, held.c.member_key],
            set_={"raw_fp": stmt.excluded.raw_fp, "identifiers": stmt.excluded.identifiers, "updated_at": stmt.excluded.updated_at})
        conn.execute(stmt, values)

    def _record_pending(self, conn: Connection, sync: str, op: str, rows: Sequence[tuple[str, str]], now: float) -> None:
        if self._is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(pending)
        stmt = stmt.on_conflict_do_update(
            index_elements=[pending.c.sync, pending.c.member_key],
            set_={"op": stmt.excluded.op, "reason": stmt.excluded.reason,
                  "attempts": pending.c.attempts + 1, "last_at": stmt.excluded.last_at})
        conn.execute(stmt, [dict(sync=sync, member_key=k, op=op, reason=r, attempts=1, last_at=now) for k, r in rows])

    @staticmethod
    def _delete_keys(conn: Connection, table: sa.Table, sync: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 900):
            chunk = list(keys[start:start + 900])
            conn.execute(table.delete().where(table.c.sync == sync, table.c.member_key.in_(chunk)))

    # --- rejections and retries ---------------------------------------------------------------

    def pending_keys(self, sync: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {k: op for k, op in conn.execute(sa.select(pending.c.member_key, pending.c.op).where(pending.c.sync == sync))}

    def rejected_fingerprints(self, sync: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {k: fp for k, fp in conn.execute(sa.select(rejected.c.member_key, rejected.c.raw_fp).where(rejected.c.sync == sync))}

    def replace_rejections(self, sync: str, rows: Iterable[tuple[str, str, str]], clear_keys: Sequence[str]) -> None:
        """Store identity rejections (member_key, raw_fp, reason); drop those for ``clear_keys``."""
        now = time.time()
        rows = list(rows)
        with self.begin() as conn:
            self._delete_keys(conn, rejected, sync, list(clear_keys) + [k for k, _, _ in rows])
            if rows:
                conn.execute(rejected.insert(), [dict(sync=sync, member_key=k, raw_fp=fp, reason=r, at=now) for k, fp, r in rows])

    def rejection_summary(self, sync: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            q = sa.select(rejected.c.reason, sa.func.count()).where(rejected.c.sync == sync).group_by(rejected.c.reason)
            return {reason: int(n) for reason, n in conn.execute(q)}

    # --- suppressions (fast path) -------------------------------------------------------------

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

    def suppression_latencies(self, since: float = 0.0) -> list[float]:
        """Seconds from conversion to the destination's acknowledgement, for removes that happened."""
        with self.engine.connect() as conn:
            q = sa.select(suppression_events.c.acked_at - suppression_events.c.converted_at).where(
                suppression_events.c.outcome == "removed", suppression_events.c.acked_at >= since)
            return [float(v) for (v,) in conn.execute(q)]

    # --- platform jobs ----------------------------------------------------------------------------

    def record_jobs(self, destination: str, sync: str, jobs: Sequence[str]) -> None:
        now = time.time()
        with self.begin() as conn:
            for job in jobs:
                if conn.execute(sa.select(platform_jobs.c.job).where(platform_jobs.c.job == job)).first() is None:
                    conn.execute(platform_jobs.insert().values(job=job, destination=destination, sync=sync, created_at=now,
                                                               status="SUBMITTED", final=False, updated_at=now))

    def open_jobs(self) -> dict[str, list[str]]:
        """destination -> jobs not final yet."""
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for job, destination in conn.execute(sa.select(platform_jobs.c.job, platform_jobs.c.destination).where(
                    platform_jobs.c.final.is_(False))):
                out.setdefault(destination, []).append(job)
        return out

    def update_job(self, job: str, *, status: str, failure_reason: str | None, match_rate_range: str | None, final: bool) -> None:
        with self.begin() as conn:
            conn.execute(platform_jobs.update().where(platform_jobs.c.job == job).values(
                status=status, failure_reason=failure_reason, match_rate_range=match_rate_range, final=final,
                updated_at=time.time()))

    def jobs(self, limit: int = 50) -> list[dict]:
        with self.engine.connect() as conn:
            q = sa.select(platform_jobs).order_by(platform_jobs.c.created_at.desc()).limit(limit)
            return [dict(row._mapping) for row in conn.execute(q)]

    def get_cursor(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(cursors.c.value).where(cursors.c.name == name)).scalar()

    def set_cursor(self, name: str, value: str) -> None:
        with self.begin() as conn:
            updated = conn.execute(cursors.update().where(cursors.c.name == name).values(value=value, updated_at=time.time()))
            if not updated.rowcount:
                conn.execute(cursors.insert().values(name=name, value=value, updated_at=time.time()))

    def active_suppressions(self, now: float | None = None) -> list[tuple[str, str]]:
        now = now or time.time()
        with self.engine.connect() as conn:
            q = sa.select(suppressions.c.member_key, suppressions.c.segment).where(
                sa.or_(suppressions.c.expires_at.is_(None), suppressions.c.expires_at > now))
            return [(k, s) for k, s in conn.execute(q)]
