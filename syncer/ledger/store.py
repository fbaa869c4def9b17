"""The ledger: what each audience is believed to hold, what happened in each run, what to retry.

SQLAlchemy Core over SQLite (WAL mode, safe for several processes: Dagster runs, sensors, the CLI)
or Postgres. Writes happen per acknowledged batch, in one transaction, so a crash at any moment
leaves the ledger describing exactly what the platform confirmed; the next plan re-sends the rest.

Tables (defined, with their migrations, in ``syncer.ledger.tables``; re-exported here):

- ``held``          sync, member_key -> raw fingerprint and the identifiers sent (needed to remove)
- ``sync_state``    a version counter per sync, bumped by every committed batch (stale-plan check)
- ``held_log``      every change to ``held`` with its version, so a cached snapshot (``syncer.planning.snapshot``)
                    catches up by reading the churn instead of the whole audience
- ``runs`` / ``sync_runs``  one row per command run and per sync within it, with the figures and, for a
                    failed sync, the error's class, fault and scrubbed detail (``syncer.ledger.failures``)
- ``batches``       each request sent: op, rows, outcome counts
- ``row_outcomes``  rows that did not land: rejected (with reason) or retryable
- ``pending``       rows to retry on the next run
- ``rejected``      rows whose identifiers are unusable, with reason and raw fingerprint
- ``platform_jobs`` jobs a platform runs later (Google Customer Match), polled until final
- ``platform_ids``  a platform's own id per member (Klaviyo profile ids), so lookups happen once
- ``job_steps``     how far each platform job built in several calls got (``syncer.ledger.jobs``), so a retry resumes
- ``match_rates``   per sync run and finished job: readiness (members with a valid email, phone, both) and what the
                    platform said it received and matched (``syncer.ledger.match_rates``)
- ``suppressions``, ``suppression_events``, ``cursors``  for the fast path
- ``shared_links``, ``destination_waits``  members one person to the platform, and waits it asked for
                    (``syncer.ledger.links``)

This module keeps the audience bookkeeping (held rows, runs, per-batch commits, snapshot log,
rejections and retries). The fast path's records live in ``syncer.ledger.suppressions`` and what we
keep for platforms (their ids, their jobs) in ``syncer.ledger.platform``; both are mixed into
``Ledger`` so every caller still holds one object.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncer.errors import StateFileError, first_line
from syncer.json_rows import dumps_many, loads
from syncer.ledger.claims import ClaimRecords
from syncer.ledger.failures import scrub_detail
from syncer.ledger.intents import IntentRecords
from syncer.ledger.leases import LeaseRecords
from syncer.ledger.links import LinkRecords
from syncer.ledger.platform import PlatformIdCache, PlatformJobs
from syncer.ledger.suppressions import SuppressionRecords
from syncer.ledger.tables import (  # noqa: F401  (re-exported: callers import the tables from here)
    _MIGRATIONS,
    SCHEMA_VERSION,
    batches,
    cursors,
    held,
    held_log,
    ledger_identity,
    metadata,
    migrate,
    pending,
    platform_ids,
    platform_jobs,
    rejected,
    row_outcomes,
    runs,
    schema_version,
    suppression_events,
    suppressions,
    sync_runs,
    sync_state,
)


@dataclass(frozen=True)
class HeldRow:
    member_key: str
    raw_fp: str
    identifiers: dict[str, str]


_READ_CHUNK = 5_000  # keys per IN list: well under SQLite's 32,766 parameters, few round trips
# Postgres gets a batch's columns as one JSON array each, zipped back into rows by the server: one
# statement instead of one per row (executemany: ~30 us a row). JSON rather than arrays because psycopg
# adapts a list of 10,000 strings in Python, slower than the rows it saves. Non-ASCII goes as is, so the
# server never decodes a \u escape (refused above U+007F unless the database is UTF8).
_pg_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _pg_columns(n: int) -> str:
    return "ROWS FROM (" + ", ".join(["json_array_elements_text(%s::json)"] * n) + ")"


_WRITABLE_COPY = "make it and its folder writable by this user, or point ledger_url at a writable copy"
# SQLite's primary result codes (https://www.sqlite.org/rescode.html) that put the fault on the ledger's file,
# its folder or its disk rather than on our statement, and what a person does about each. The extended codes
# fold into these: SQLITE_READONLY_DIRECTORY, _CANTINIT and _CANTLOCK (a read-only folder or -shm) are 8.
_SQLITE_FAULTS = {
    3: f"may not be written by this user: {_WRITABLE_COPY}",  # SQLITE_PERM
    8: f"is read-only for this user: {_WRITABLE_COPY}",  # SQLITE_READONLY_*
    10: "could not be read or written (a disk I/O error): check the disk it is on, then run again",  # SQLITE_IOERR_*
    11: "is damaged: restore it from a backup, or point ledger_url at another file",  # SQLITE_CORRUPT
    13: "cannot grow: its disk is full. Free space on that disk, then run again (every committed batch is kept)",  # SQLITE_FULL
    14: "cannot be opened: check that it and its folder exist and are writable by this user, or point ledger_url"
        " elsewhere",  # SQLITE_CANTOPEN
    26: "is not a SQLite database: restore the ledger from a backup, or point ledger_url at another file",  # SQLITE_NOTADB
}


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (its effective user; False on a read-only file system)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)


def _check_sqlite_file(path: Path) -> None:
    """Refuse a SQLite ledger this user cannot write, before SQLite opens it.

    In WAL mode SQLite creates ``<ledger>-wal`` and ``<ledger>-shm`` beside the ledger, writes both, and
    memory-maps ``-shm`` (the WAL index); the last connection to close deletes them again. A read-only
    ledger, folder or left-over ``-wal``/``-shm`` therefore fails at the first write ("attempt to write a
    readonly database", SQLITE_READONLY_DIRECTORY, SQLITE_READONLY_CANTINIT) or, when SQLite falls back to
    reading a WAL index it may not write, in a memory-mapped read, where an I/O fault is a SIGBUS that kills
    the process without a word instead of an error code. Checked here, the fault is one message naming the
    file, before any run is recorded. Sources: https://www.sqlite.org/wal.html#read_only_databases (since
    3.22.0 a read-only WAL database opens only if its -shm and -wal exist or can be created, or it is
    immutable), https://www.sqlite.org/walformat.html (the WAL index is memory-mapped; the last connection
    deletes -wal and -shm, after which a process that may not create them cannot open the database),
    https://www.sqlite.org/mmap.html (an I/O error on a memory-mapped file is a signal, not an error code),
    https://www.sqlite.org/rescode.html#readonly_directory (SQLITE_READONLY_DIRECTORY, _CANTINIT, _CANTLOCK).
    """
    if str(path) in ("", ":memory:"):
        return
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateFileError(f"cannot create the ledger's folder {folder} ({exc.strerror}): make its parent writable"
                             " by this user, or point ledger_url elsewhere", path=folder, detail=str(exc)) from exc
    if not _writable(folder):
        raise StateFileError(f"ledger {path} is in a folder this user may not write ({folder}), where SQLite must"
                             f" create {path.name}-wal and {path.name}-shm: make the folder writable by this user,"
                             " or point ledger_url at a writable copy", path=folder)
    if path.exists() and not _writable(path):
        raise StateFileError(f"ledger {path} is read-only for this user: {_WRITABLE_COPY}", path=path)
    for companion in (path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if companion.exists() and not _writable(companion):
            raise StateFileError(f"ledger {path}: {companion.name} beside it is read-only for this user (left by"
                                 " another user's process?): make it writable by this user, run as the user who"
                                 " owns it, or point ledger_url at a writable copy", path=companion)


def _postgres_fault(error: BaseException, *, connecting: bool) -> str | None:
    """What to do about a Postgres error that is the ledger database's fault (SQLSTATE classes 53 and 25006,
    or no connection at all); None for every other error."""
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or ""
    if state.startswith("53"):  # insufficient_resources: disk_full, out_of_memory, too_many_connections
        return "the server is out of resources (disk space, memory or connections): free them, then run again"
    if state == "25006":  # read_only_sql_transaction: a standby, or default_transaction_read_only
        return "it only accepts reads: point ledger_url at the primary, writable database"
    if connecting:  # refused, unknown host or database, authentication failed
        return "check that the server runs and that ledger_url names it, with a user allowed to connect"
    return None


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Ledger(SuppressionRecords, PlatformJobs, LinkRecords, ClaimRecords, LeaseRecords, IntentRecords):
    """Every read and write of the state store goes through here."""

    # held_log entries worth keeping after a snapshot: past this many changes a snapshot is rebuilt from
    # ``held`` (``syncer.planning.snapshot.MAX_REPLAY``), so logging more only costs writes, then deletes
    MAX_LOG = 500_000

    def __init__(self, url: str) -> None:
        """Open (creating or migrating) the ledger at ``url``.

        Raises:
            StateFileError: the ledger cannot be used: read-only for this user, on a full disk, damaged,
                or (Postgres) unreachable. The message names it and says what to do.
        """
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(sa.engine.make_url(url).database or "")
            self._where = str(path)
            _check_sqlite_file(path)
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self._where = sa.engine.make_url(url).render_as_string(hide_password=True)
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        sa.event.listen(self.engine, "handle_error", self._raise_ledger_fault)
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            migrate(conn)

    def _raise_ledger_fault(self, context: sa.engine.ExceptionContext) -> None:
        """SQLAlchemy's ``handle_error`` hook: a driver error that is the ledger's own fault (its file, folder,
        disk or server) becomes a ``StateFileError`` naming it; every other error passes unchanged."""
        if context.is_pre_ping:  # the pool reconnects on its own
            return
        error = context.original_exception
        if self._is_sqlite:
            code = getattr(error, "sqlite_errorcode", None)
            advice = _SQLITE_FAULTS.get(code & 0xFF) if isinstance(code, int) else None
            if advice:
                raise StateFileError(f"ledger {self._where} {advice}", path=self._where,
                                     detail=f"{getattr(error, 'sqlite_errorname', code)}: {error}") from error
            return
        advice = _postgres_fault(error, connecting=context.connection is None)
        if advice:
            raise StateFileError(f"ledger database {self._where}: {first_line(error)}; {advice}", path=self._where,
                                 detail=str(error)) from error

    def identity(self) -> str:
        """The random id this ledger was given when it was created (``ledger_identity``)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(ledger_identity.c.id)).scalar_one()

    # --- what each audience holds -------------------------------------------------------------

    def state_version(self, sync: str) -> int:
        """Bumped by every commit to the sync (snapshots catch up from it)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sync_state.c.version).where(sync_state.c.sync == sync)).scalar()
        return int(value or 0)

    def batch_version(self, sync: str) -> int:
        """Bumped by every commit but the fast path's: a plan made at one is stale once it moves."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sync_state.c.batch_version).where(sync_state.c.sync == sync)).scalar()
        return int(value or 0)

    def held_fingerprints(self, sync: str) -> tuple[list[str], list[str]]:
        """(member_keys, raw_fps) of every member the audience holds, as two columns."""
        keys: list[str] = []
        fps: list[str] = []
        for chunk_keys, chunk_fps in self.held_fingerprint_chunks(sync):
            keys += chunk_keys
            fps += chunk_fps
        return keys, fps

    def held_fingerprint_chunks(self, sync: str, size: int = 200_000) -> Iterator[tuple[list[str], list[str]]]:
        """What ``held_fingerprints`` returns, ``size`` rows at a time (an audience of millions in bounded memory)."""
        for keys, fps in self._held_columns(sync, "member_key, raw_fp", size):
            yield list(keys), list(fps)

    def held_identifier_rows(self, sync: str, size: int = 50_000) -> Iterator[list[tuple[str, str, str]]]:
        """Every held row as (member_key, raw_fp, identifiers as JSON text), ``size`` rows at a time, as the
        driver returns them (a caller building Arrow takes the rows whole, faster than column lists)."""
        yield from self._held_rows(sync, "member_key, raw_fp, identifiers", size)

    def _held_columns(self, sync: str, columns: str, size: int) -> Iterator[tuple[tuple, ...]]:
        for rows in self._held_rows(sync, columns, size):
            yield tuple(zip(*rows))

    def _held_rows(self, sync: str, columns: str, size: int) -> Iterator[list[tuple]]:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(f"SELECT {columns} FROM held WHERE sync = {self._mark}", (sync,))
            while rows := cur.fetchmany(size):
                yield rows
        finally:
            raw.close()

    def held_rows(self, sync: str, member_keys: Sequence[str]) -> dict[str, HeldRow]:
        """The held rows (identifiers as sent) of ``member_keys``, read with the driver in large chunks."""
        return {key: HeldRow(key, fp, loads(idents)) for key, fp, idents in self._held_rows_raw(sync, member_keys)}

    def held_identifier_texts(self, sync: str, member_keys: Sequence[str]) -> dict[str, str]:
        """member key -> identifiers as sent, the JSON text as stored, of those of ``member_keys`` held."""
        return {key: idents for key, _, idents in self._held_rows_raw(sync, member_keys)}

    def _held_rows_raw(self, sync: str, member_keys: Sequence[str]) -> Iterator[tuple[str, str, str]]:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            for start in range(0, len(member_keys), _READ_CHUNK):
                chunk = list(member_keys[start:start + _READ_CHUNK])
                cur.execute(f"SELECT member_key, raw_fp, identifiers FROM held WHERE sync = {self._mark}"
                            f" AND member_key IN ({', '.join([self._mark] * len(chunk))})", [sync, *chunk])
                yield from cur.fetchall()
        finally:
            raw.close()

    def held_count(self, sync: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(held).where(held.c.sync == sync)).scalar() or 0)

    @property
    def _mark(self) -> str:
        """The driver's parameter marker."""
        return "?" if self._is_sqlite else "%s"

    @property
    def _is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def id_cache(self, destination: str) -> PlatformIdCache:
        return PlatformIdCache(self, destination)

    def job_book(self, destination: str) -> "LedgerJobBook":  # noqa: F821 - imported below, kept to this method
        """Where ``destination`` records the stages of jobs it builds in several calls (``Destination.job_book``)."""
        from syncer.ledger.jobs import LedgerJobBook

        return LedgerJobBook(self, destination)

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
        """Close a sync run with its status and figures (columns of ``sync_runs``; ``details`` as JSON).

        ``error_class``, ``error_fault`` and ``error_detail`` (``syncer.ledger.failures.failure_fields``)
        say what failed it; the detail is scrubbed again here, so no caller can store PII or a secret.
        """
        details = figures.pop("details", None)
        if figures.get("error_detail"):
            figures["error_detail"] = scrub_detail(figures["error_detail"])
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

    def _touch_state(self, conn: Connection, sync: str, *, bump: bool = True, success: bool = False,
                     fast_path: bool = False) -> int:
        row = conn.execute(sa.select(sync_state.c.version, sync_state.c.batch_version).where(sync_state.c.sync == sync)).first()
        values: dict = {}
        if bump:
            values["version"] = (row[0] if row else 0) + 1
            if not fast_path:
                values["batch_version"] = ((row[1] or 0) if row else 0) + 1
        if success:
            values["last_success_at"] = time.time()
        if row is None:
            conn.execute(sync_state.insert().values(sync=sync, version=values.get("version", 0), log_floor=0,
                                                    batch_version=values.get("batch_version", 0),
                                                    last_success_at=values.get("last_success_at")))
        elif values:
            conn.execute(sync_state.update().where(sync_state.c.sync == sync).values(**values))
        return values.get("version", row[0] if row else 0)

    def _log(self, conn: Connection, sync: str, version: int, keys: Sequence[str],
             fps: Sequence[str | None] | None = None) -> None:
        """Append one held_log entry per key, in order: its new raw_fp, or NULL (``fps`` None) as it left.
        Past ``MAX_LOG`` entries since the last snapshot nothing is appended and ``log_floor`` moves to
        ``version``: a snapshot older than it is rebuilt from ``held``, as it would be anyway."""
        if not keys:
            return
        logged = conn.execute(sa.select(sync_state.c.log_rows).where(sync_state.c.sync == sync)).scalar() or 0
        if logged + len(keys) > self.MAX_LOG:
            conn.execute(sync_state.update().where(sync_state.c.sync == sync)
                         .values(log_floor=version, log_rows=self.MAX_LOG + 1))
            return
        conn.execute(sync_state.update().where(sync_state.c.sync == sync).values(log_rows=logged + len(keys)))
        fps = list(fps) if fps is not None else [None] * len(keys)
        if conn.dialect.name == "postgresql":  # one statement; ORDER BY n gives the ids in the keys' order
            conn.exec_driver_sql(
                "INSERT INTO held_log (sync, version, member_key, raw_fp) SELECT %s, %s, k, fp"
                f" FROM {_pg_columns(2)} WITH ORDINALITY AS t(k, fp, n) ORDER BY n",
                (sync, version, _pg_json(list(keys)), _pg_json(fps)))
            return
        p = "?" if conn.dialect.name == "sqlite" else "%s"
        conn.exec_driver_sql(f"INSERT INTO held_log (sync, version, member_key, raw_fp) VALUES ({p}, {p}, {p}, {p})",
                             list(zip(repeat(sync), repeat(version), keys, fps)))

    def expect_changes(self, sync: str, count: int) -> None:
        """An apply is about to change up to ``count`` members of ``sync``: when that is more than the log keeps,
        stop logging now rather than once the log is full (a first sync of 1M members would write and then
        delete 500,000 entries)."""
        if count <= self.MAX_LOG:
            return
        with self.begin() as conn:
            version = self._touch_state(conn, sync, bump=False)
            conn.execute(sync_state.update().where(sync_state.c.sync == sync)
                         .values(log_floor=version, log_rows=self.MAX_LOG + 1))

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
        refused: Sequence[tuple[str, str, str]] = (),
        fast_path: bool = False,
        intent: int | None = None,
        identifiers: Sequence[str] | None = None,
    ) -> None:
        """Record one acknowledged batch: what landed changes ``held``; failures go to outcomes/pending.

        ``failed`` holds (member_key, status, reason) with status ``rejected`` or ``retryable``.
        ``refused`` holds (member_key, raw_fp, reason) of adds the platform rejected for good: kept in
        ``rejected`` like an identity rejection, so no later run sends the row again until it changes.
        ``fast_path``: a suppression's remove, which leaves ``batch_version`` alone.
        ``intent``: the batch's write-ahead record (``syncer.ledger.intents``), settled by this commit.
        ``identifiers``: the landed rows' identifiers as canonical JSON (``syncer.json_rows.dumps``), when the
        caller has them already (else encoded here).
        """
        now = time.time()
        landed_keys = [r.member_key for r in landed]
        with self.begin() as conn:
            version = self._touch_state(conn, sync, fast_path=fast_path)
            if intent is not None:
                self.drop_intent(intent, conn)
            if landed:
                if op in ("add", "refresh"):
                    fps = [r.raw_fp for r in landed]
                    texts = identifiers if identifiers is not None else dumps_many([r.identifiers for r in landed])
                    self._upsert_held(conn, sync, landed_keys, fps, texts, now)
                    self._log(conn, sync, version, landed_keys, fps)
                else:
                    self._delete_keys(conn, held, sync, landed_keys)
                    self._log(conn, sync, version, landed_keys)
                if conn.execute(sa.select(pending.c.member_key).where(pending.c.sync == sync).limit(1)).first():
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
            if refused:
                self._delete_keys(conn, rejected, sync, [k for k, _, _ in refused])
                conn.execute(rejected.insert(), [dict(sync=sync, member_key=k, raw_fp=fp, reason=r[:256], at=now)
                                                 for k, fp, r in refused])
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
            self._log(conn, sync, version, member_keys)

    # --- snapshot support ---------------------------------------------------------------------

    def held_changes_since(self, sync: str, version: int, *, limit: int | None = None) -> tuple[int, list[tuple[str, str | None]]] | None:
        """(current version, [(member_key, raw_fp or None)] in commit order) for changes after ``version``;
        None when the log no longer reaches back that far, or holds more than ``limit`` changes (after an
        initial sync, re-reading the audience in chunks costs less memory than replaying its log)."""
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(sync_state.c.version, sync_state.c.log_floor).where(sync_state.c.sync == sync)).first()
            current, floor = (state[0], state[1]) if state else (0, 0)
            if version < floor or version > current:
                return None
            since = sa.and_(held_log.c.sync == sync, held_log.c.version > version, held_log.c.version <= current)
            if limit is not None and conn.execute(sa.select(sa.func.count()).where(since)).scalar() > limit:
                return None
            # the driver's own rows: an initial sync logs up to MAX_REPLAY of them, and Core's Row objects cost ~1 us each
            cur = conn.connection.cursor()
            m = self._mark
            cur.execute(f"SELECT member_key, raw_fp FROM held_log WHERE sync = {m} AND version > {m} AND version <= {m}"
                        " ORDER BY id", (sync, version, current))
            rows = cur.fetchall()
            cur.close()
        return current, [(k, fp) for k, fp in rows]

    def truncate_log(self, sync: str, up_to: int) -> None:
        """Forget log entries a snapshot at ``up_to`` already covers, and log again from there."""
        with self.begin() as conn:
            conn.execute(held_log.delete().where(held_log.c.sync == sync, held_log.c.version <= up_to))
            conn.execute(sync_state.update().where(sync_state.c.sync == sync, sync_state.c.log_floor < up_to).values(log_floor=up_to))
            floor = sa.select(sync_state.c.log_floor).where(sync_state.c.sync == sync).scalar_subquery()
            after = sa.select(sa.func.count()).where(held_log.c.sync == sync, held_log.c.version > floor).scalar_subquery()
            conn.execute(sync_state.update().where(sync_state.c.sync == sync).values(log_rows=after))

    def _upsert_held(self, conn: Connection, sync: str, keys: Sequence[str], fps: Sequence[str], identifiers: Sequence[str],
                     now: float) -> None:
        """Insert or overwrite the held rows (key, raw_fp, identifiers JSON); a key repeated in the batch ends
        as its last row, as if the rows were written one by one."""
        upsert = (" ON CONFLICT (sync, member_key) DO UPDATE SET raw_fp = excluded.raw_fp,"
                  " identifiers = excluded.identifiers, updated_at = excluded.updated_at")
        if conn.dialect.name == "postgresql":
            if len(set(keys)) != len(keys):  # one statement may not update a row twice: keep each key's last row
                last = sorted({k: i for i, k in enumerate(keys)}.values())
                keys, fps, identifiers = [keys[i] for i in last], [fps[i] for i in last], [identifiers[i] for i in last]
            conn.exec_driver_sql(
                "INSERT INTO held (sync, member_key, raw_fp, identifiers, updated_at) SELECT %s, k, fp, i, %s"
                f" FROM {_pg_columns(3)} AS t(k, fp, i)" + upsert,
                (sync, now, _pg_json(list(keys)), _pg_json(list(fps)), _pg_json(list(identifiers))))
            return
        # the driver's own executemany: a 10,000-row batch through Core's per-row compilation cost ~0.2 s
        p = self._mark
        conn.exec_driver_sql(
            f"INSERT INTO held (sync, member_key, raw_fp, identifiers, updated_at) VALUES ({p}, {p}, {p}, {p}, {p})" + upsert,
            list(zip(repeat(sync), keys, fps, identifiers, repeat(now))))

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
        if not keys:
            return
        if conn.dialect.name == "postgresql":
            # a join, not "= ANY(array)": with stale statistics the planner filters every row of the sync
            # through the 10,000-key array (seconds a batch); the join at worst hashes the sync's rows once
            conn.exec_driver_sql(f"DELETE FROM {table.name} AS t USING json_array_elements_text(%s::json) AS d(k)"
                                 " WHERE t.sync = %s AND t.member_key = d.k", (_pg_json(list(keys)), sync))
            return
        for start in range(0, len(keys), 900):
            chunk = list(keys[start:start + 900])
            conn.execute(table.delete().where(table.c.sync == sync, table.c.member_key.in_(chunk)))

    # --- rejections and retries ---------------------------------------------------------------

    def pending_keys(self, sync: str, keys: Sequence[str] | None = None) -> dict[str, str]:
        """member key -> op of rows waiting for a retry (of ``keys`` only, when given)."""
        return self._by_key(pending, pending.c.op, sync, keys)

    def rejected_fingerprints(self, sync: str, keys: Sequence[str] | None = None) -> dict[str, str]:
        """member key -> raw_fp each rejection was made at (of ``keys`` only, when given)."""
        return self._by_key(rejected, rejected.c.raw_fp, sync, keys)

    def _by_key(self, table: sa.Table, column, sync: str, keys: Sequence[str] | None) -> dict[str, str]:
        query = sa.select(table.c.member_key, column).where(table.c.sync == sync)
        with self.engine.connect() as conn:
            if keys is None:
                return dict(conn.execute(query).all())
            ordered = sorted(set(keys))
            return {k: v for start in range(0, len(ordered), 500)
                    for k, v in conn.execute(query.where(table.c.member_key.in_(ordered[start:start + 500])))}

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
