"""The ``warehouse`` diff mode: the audience snapshot lives in the warehouse and the diff runs there as SQL.

For teams that grant the syncer a bookkeeping schema (``bookkeeping_schema`` in syncer.yml, default
``syncer``). Each sync's held fingerprints are mirrored into ``<schema>.held_snapshot``, caught up
from the ledger's change log before each plan (the ledger stays the truth), and one query per sync
returns only the members whose fingerprint changed, with their identifier columns. Nothing else
leaves the warehouse. The plan is then finished by the same code as the ``local`` mode, and is
identical to it: the same fingerprints (``syncer.planning.fingerprints``), filters and duplicate rule.

Supported warehouses: DuckDB, PostgreSQL, Snowflake, Spark SQL (pyspark, a Databricks job's session),
Databricks SQL (``databricks://``, the Spark dialect over Delta tables) and BigQuery (``SUPPORTED_DIALECTS``). The SQL here is a portable core (key joins, anti-joins, ``row_number()``,
``IS DISTINCT FROM`` on a stored fingerprint); the few parts that differ per engine (hashes, work
tables, replacing a sync's rows, quoting) are written out per engine in
``syncer.planning.warehouse_dialects``, and the connection to each in ``syncer.planning.warehouse_sessions``.

What the statements cost is kept by the session and handed out per sync by ``take_costs``
(``syncer.ledger.warehouse_costs``). ``explain`` lists every statement a plan would run, per sync, without
running any: the SQL ``syncer plan --explain`` prints.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from syncer.errors import ConfigError
from syncer.ledger.store import Ledger
from syncer.ledger.warehouse_costs import WarehouseCosts
from syncer.planning.fingerprints import byte_reversed_hex, number_from_hex
from syncer.planning.realtime_sql import dialect_of
from syncer.planning.segment import SegmentData, local_statements, resolve_columns, wanted_columns
from syncer.planning.snapshot import MAX_REPLAY, latest_fingerprints
from syncer.planning.warehouse_dialects import DIALECTS, Dialect
from syncer.planning.warehouse_sessions import WarehouseSession, open_session
from syncer.project.config import SegmentConfig
from syncer.project.project import Project

SUPPORTED_DIALECTS = tuple(DIALECTS)


def _int(value: object) -> int | None:
    return None if value is None else int(value)


@dataclass
class WarehouseChanges:
    members: int
    duplicates: int
    stale_rejections: list[str]
    unchanged: bool = False  # proven by checksums, without ranking or joining
    no_consent: int = 0  # rows left out: their consent does not let this sync send to them


_REBUILD_ROWS = 50_000  # ledger rows per chunk of a snapshot rebuild: their Python strings are the syncer's peak


class WarehouseDiff:
    """One connection to the warehouse for a plan: the snapshot tables, the catch-up and the diff queries."""

    def __init__(self, url: str, schema: str, *, memory_limit: str | None = None, temp_directory: str | None = None,
                 session: WarehouseSession | None = None) -> None:
        self.session = session or open_session(url, schema, memory_limit=memory_limit, temp_directory=temp_directory)
        self.dialect = self.session.dialect
        self.schema = schema
        self._lent: duckdb.DuckDBPyConnection | None = None  # in_process_connection's, where changes land in place
        self.held = self.dialect.table(schema, "held_snapshot")
        self.versions = self.dialect.table(schema, "snapshot_version")
        try:
            for statement in self.dialect.bookkeeping(schema):
                self.session.run(statement)
            self.session.commit()
        except ConfigError as exc:
            self.close()
            raise ConfigError(f"diff_mode: warehouse needs a schema '{schema}' the syncer may write"
                              f" (bookkeeping_schema in syncer.yml): {exc.message}") from exc

    def close(self) -> None:
        self.session.close()

    def take_costs(self) -> WarehouseCosts:
        """What the statements run since the last call cost (the first call also counts the bookkeeping)."""
        costs = getattr(self.session, "costs", None) or WarehouseCosts(engine=self.dialect.name)
        self.session.costs = WarehouseCosts(engine=costs.engine)
        costs.seconds = round(costs.seconds, 3)
        return costs

    def in_process_connection(self) -> duckdb.DuckDBPyConnection | None:
        """A new connection to the warehouse's own DuckDB instance when the warehouse is embedded (DuckDB), for
        the in-process diff: its temporary tables are its own, its memory is the warehouse's, under one cap.
        None for a warehouse elsewhere."""
        self._lent = self.session.duckdb_connection()
        return self._lent

    def _run(self, statements: Sequence[str]) -> None:
        for statement in statements:
            self.session.run(statement)

    # --- the snapshot -----------------------------------------------------------------------------

    def catch_up(self, ledger: Ledger, sync: str) -> int:
        """Bring ``held_snapshot`` for ``sync`` up to the ledger; return how many members it holds.

        The order keeps a cut-short catch-up safe on every engine, with transactions or without (Spark;
        Snowflake commits at each DDL): a rebuild first removes the version, so it is rebuilt again; a
        replay writes the version last, and replaying the same changes twice gives the same snapshot.
        A rebuild commits each chunk: DuckDB keeps a transaction's appended rows outside its memory_limit
        (10M rows in one transaction: 950 MB resident under a 128MB cap; chunk by chunk: 370 MB)."""
        lit = self.dialect.literal(sync)
        found = self.session.rows(f"SELECT version FROM {self.versions} WHERE sync = {lit}")
        version = found[0][0] if found else None
        caught_up = ledger.held_changes_since(sync, int(version), limit=MAX_REPLAY) if version is not None else None
        if caught_up is None:
            current = ledger.state_version(sync)
            self._run(self.dialect.clear_sync(self.versions, sync))
            self._run(self.dialect.clear_sync(self.held, sync))
            self.session.commit()
            for keys, fps in ledger.held_fingerprint_chunks(sync, size=_REBUILD_ROWS):
                self._insert(sync, keys, fps)
                self.session.commit()
        else:
            current, changes = caught_up
            latest = latest_fingerprints(changes)
            self._delete(sync, list(latest))
            present = [(k, fp) for k, fp in latest.items() if fp is not None]
            self._insert(sync, [k for k, _ in present], [fp for _, fp in present])
        self._run(self.dialect.set_version(self.versions, sync, current))
        self.session.commit()
        ledger.truncate_log(sync, current)
        return int(self.session.rows(f"SELECT count(*) FROM {self.held} WHERE sync = {lit}")[0][0])

    def _delete(self, sync: str, keys: Sequence[str]) -> None:
        if keys:
            table = self._upload("syncer_keys", ["member_key"], [keys])
            self._run(self.dialect.remove_keys(self.held, sync, table))

    def _insert(self, sync: str, keys: Sequence[str], fps: Sequence[str]) -> None:
        if keys:
            table = self._upload("syncer_rows", ["member_key", "fp"], [keys, fps])
            self.session.run(self.dialect.append_rows(self.held, sync, table))

    def _upload(self, name: str, columns: list[str], values: list[Sequence[str]]) -> str:
        """(Re)fill a work table of this session; returns the name to query it by."""
        table, create = self.dialect.work_table(name, columns)
        self._run(create)
        self.session.fill(table, columns, values)
        return table

    # --- the diff ---------------------------------------------------------------------------------

    def source(self, sql: str, segment: SegmentConfig, name: str) -> str:
        """The segment's query with the canonical columns; ConfigError naming a missing column."""
        try:
            returned = self.session.columns(f"SELECT * FROM ({sql}) q WHERE 1 = 0")
        except ConfigError as exc:
            raise ConfigError(f"segment '{name}': the query failed in the warehouse: {exc.message}") from exc
        d = self.dialect
        columns = resolve_columns(returned, segment, name)
        casts = ", ".join(f"CAST(q.{d.ident(actual)} AS {d.boolean if dtype == pa.bool_() else d.text}) AS {canonical}"
                          for canonical, (actual, dtype) in columns.items())
        return f"(SELECT {casts} FROM ({sql}) q)"

    def fingerprint(self, shape) -> str:
        """SQL over a segment row ``s``: its fingerprint as 32 hex digits, equal to the local mode's."""
        parts = [f"s.k_{k}" for k in shape.kinds] + (["s.region"] if shape.has_region else []) + (
            [shape.consent_sql] if shape.consent_sql else [])  # the order of ``local_diff._shape``
        return self.dialect.md5(self.dialect.fingerprint_text(parts))

    def diff(self, con: duckdb.DuckDBPyConnection, *, source: str, sync_name: str, shape, suppressed: set[str],
             rejected: dict[str, str], held_count: int, resend_all: bool, chunk_rows: int) -> WarehouseChanges:
        """Run the diff in the warehouse and land the changed members in ``con`` as ``_wchanges`` (with their
        columns) and ``_changes(member_key, fp, held_fp)``, the local mode's shape."""
        d = self.dialect
        supp = self._upload("syncer_supp", ["member_key"], [sorted(suppressed)])
        desired = (f"s.member_key IS NOT NULL AND s.member_key <> '' AND ({d.filter(shape.wanted)})"
                   f" AND s.member_key NOT IN (SELECT member_key FROM {supp})")
        fp = self.fingerprint(shape)
        held = f"(SELECT member_key, fp FROM {self.held} WHERE sync = {d.literal(sync_name)})"
        pair, held_pair = "s.member_key || '|' || " + fp, "h.member_key || '|' || h.fp"
        [stats] = self.session.rows(f"SELECT {d.checksum(pair)} FROM {source} s WHERE {desired}")
        [held_stats] = self.session.rows(f"SELECT {d.checksum(held_pair)} FROM {held} h")
        rows = int(stats[0])
        [[no_consent]] = self.session.rows(f"SELECT count(*) FROM {source} s WHERE s.member_key IS NOT NULL"
                                           f" AND s.member_key <> '' AND NOT ({d.filter(shape.wanted)})")
        stale = self._stale(source, desired, rejected)
        if not resend_all and (rows, _int(stats[1]), _int(stats[2])) == (int(held_stats[0]), _int(held_stats[1]), _int(held_stats[2])):
            # the same (member, fingerprint) pairs as held, as in the local mode's short-cut: no ranking, no join
            self._land(con, None, shape, chunk_rows)
            con.execute("CREATE OR REPLACE TEMP TABLE _changes (member_key VARCHAR, fp UHUGEINT, held_fp UHUGEINT)")
            return WarehouseChanges(members=held_count, duplicates=0, stale_rejections=stale, unchanged=True,
                                    no_consent=int(no_consent))
        self._land(con, self.diff_query(source, desired, fp, held, shape, resend_all), shape, chunk_rows)
        # a view, not a copy: at 10M changed members (an initial sync) a second table crowds the sort that
        # reads them back out of a capped memory_limit
        con.execute(f"""CREATE OR REPLACE TEMP VIEW _changes AS
                        SELECT member_key, {number_from_hex('raw_fp')} AS fp, {number_from_hex('held_raw_fp')} AS held_fp FROM _wchanges""")
        # counted on the text columns: through the view, every row's hex would be parsed for a null test
        gone, new = con.sql("SELECT count(*) FILTER (WHERE raw_fp IS NULL), count(*) FILTER (WHERE held_raw_fp IS NULL)"
                            " FROM _wchanges").fetchall()[0]
        members = held_count - gone + new
        return WarehouseChanges(members=members, duplicates=rows - members, stale_rejections=stale,
                                no_consent=int(no_consent))

    @staticmethod
    def diff_query(source: str, desired: str, fp: str, held: str, shape, resend_all: bool) -> str:
        """SQL, the same on every engine: the members whose fingerprint differs from the held one, a
        repeated key keeping the row with the smallest ``md5_number``, as the local mode does."""
        columns = ", ".join([f"d.k_{k}" for k in shape.kinds] + (["d.region"] if shape.has_region else [])
                            + (["d.consent"] if shape.consent_sql else []))
        consent = f", {shape.consent_sql} AS consent" if shape.consent_sql else ""
        return f"""
            SELECT coalesce(d.member_key, h.member_key) AS member_key, d.fp AS raw_fp, h.fp AS held_raw_fp{', ' + columns if columns else ''}
            FROM (
                SELECT * FROM (
                    SELECT f.*, row_number() OVER (PARTITION BY f.member_key ORDER BY {byte_reversed_hex('f.fp')}) AS pick
                    FROM (SELECT s.*, {fp} AS fp{consent} FROM {source} s WHERE {desired}) f
                ) ranked WHERE pick = 1
            ) d
            FULL JOIN {held} h ON h.member_key = d.member_key
            WHERE d.fp IS DISTINCT FROM h.fp {'OR d.fp IS NOT NULL' if resend_all else ''}"""

    def _stale(self, source: str, desired: str, rejected: dict[str, str]) -> list[str]:
        """Rejected members the segment no longer wants (their rejection is moot)."""
        if not rejected:
            return []
        rej = self._upload("syncer_rej", ["member_key"], [list(rejected)])
        return [k for (k,) in self.session.rows(
            f"SELECT r.member_key FROM {rej} r {self.dialect.except_} SELECT s.member_key FROM {source} s WHERE {desired}")]

    def _land(self, con: duckdb.DuckDBPyConnection, query: str | None, shape, chunk_rows: int) -> None:
        """Create ``_wchanges`` in ``con`` with the rows ``query`` returns (none without a query)."""
        names = ["member_key", "raw_fp", "held_raw_fp"] + [f"k_{k}" for k in shape.kinds] + (
            ["region"] if shape.has_region else []) + (["consent"] if shape.consent_sql else [])
        if query and con is self._lent:  # the warehouse's own instance: the changes are copied in place
            self.session.land_in(con, "_wchanges", names, query)
            return
        con.execute(f"CREATE OR REPLACE TEMP TABLE _wchanges ({', '.join(f'{n} VARCHAR' for n in names)})")
        for batch in self.session.stream(query, chunk_rows) if query else ():
            con.register("_batch", pa.table(batch, names=names))
            con.execute("INSERT INTO _wchanges SELECT * FROM _batch")
            con.unregister("_batch")

    def segment_counts(self, source: str) -> tuple[int, int]:
        """(rows, rows without a member key) of a segment, counted in the warehouse."""
        [row] = self.session.rows(
            f"SELECT count(*), sum(CASE WHEN s.member_key IS NULL OR s.member_key = '' THEN 1 ELSE 0 END) FROM {source} s")
        return int(row[0]), int(row[1] or 0)

    def left_segment(self, source: str, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` the segment no longer holds."""
        table = self._upload("syncer_keys", ["member_key"], [list(keys)])
        return [k for (k,) in self.session.rows(
            f"SELECT k.member_key FROM {table} k {self.dialect.except_} SELECT s.member_key FROM {source} s")]


# --- explain: the statements a plan would run, run by nobody ------------------------------------------


class _ExplainSession:
    """A session that records every statement instead of running it. From ``probe`` (a real session, when
    one could be opened) it reads only what costs nothing: the segment's columns (a query returning no
    rows) and the snapshot's version. Every other read is answered as a warehouse whose segment differs
    from its snapshot, so the checksums and the diff query are both listed."""

    def __init__(self, dialect: Dialect, probe: WarehouseSession | None, configured: dict[str, list[str]]) -> None:
        self.dialect, self.probe, self.configured = dialect, probe, configured
        self.costs = WarehouseCosts(engine=dialect.name)
        self.statements: list[str] = []
        self.segment = ""  # whose columns to answer with, without a probe
        self.counted: set[str] = set()  # segments whose segment-wide statements are listed already

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return taken

    def run(self, sql: str) -> None:
        self.statements.append(sql)

    def rows(self, sql: str) -> list[tuple]:
        self.statements.append(sql)
        if sql.startswith("SELECT version FROM"):
            if self.probe is None:
                return []
            try:
                return self.probe.rows(sql)
            except ConfigError:  # no bookkeeping schema yet: the run builds the snapshot from the ledger
                return []
        if f" {self.dialect.except_} " in sql:
            return []
        width = _select_width(sql)
        if width == 3 and "held_snapshot" not in sql:  # the segment's checksum: other than the snapshot's
            return [(1, 1, 1)]
        return [(0, None, None) if width == 3 else (0,) * width]

    def columns(self, sql: str) -> list[str]:
        self.statements.append(sql)
        return self.probe.columns(sql) if self.probe is not None else self.configured[self.segment]

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        rows = len(values[0]) if values else 0
        self.statements.append(f"-- upload {rows} row(s) into {table} ({', '.join(columns)})")

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        self.statements.append(sql)
        return iter(())

    def commit(self) -> None:
        pass

    def duckdb_connection(self) -> None:
        return None  # nothing runs in the warehouse: the dry diff keeps its own database

    def close(self) -> None:
        pass


def _select_width(sql: str) -> int:
    """How many columns one of our own ``SELECT a, f(b, c), ... FROM`` statements returns."""
    width, depth, quoted = 1, 0, False
    body = sql.split("SELECT", 1)[1]
    for i, ch in enumerate(body):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            width += 1
        elif depth == 0 and body[i:i + 6].upper() == " FROM ":
            break
    return width


class _Rows:
    """As many rows as a rebuild would upload, without reading them: the upload's comment needs the count only."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _DryLedger:
    """The ledger as ``catch_up`` reads it, with its one write (truncating the change log) left out and a
    rebuild's rows counted, not read: the statements are what matter, not the rows."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def held_changes_since(self, sync: str, version: int, *, limit: int | None = None):
        return self.ledger.held_changes_since(sync, version, limit=limit)

    def state_version(self, sync: str) -> int:
        return self.ledger.state_version(sync)

    def held_fingerprint_chunks(self, sync: str, size: int = 200_000) -> Iterable[tuple[_Rows, _Rows]]:
        held = self.ledger.held_count(sync)
        return [(_Rows(n), _Rows(n)) for n in (min(size, held - start) for start in range(0, held, size))]

    def truncate_log(self, sync: str, up_to: int) -> None:
        pass


def explain(project: Project, names: Sequence[str], ledger: Ledger) -> dict[str, list[str]]:
    """sync -> the statements its plan sends to the warehouse, in order, none of them run.

    Local mode: the segment's query as the warehouse gets it. Warehouse mode: the bookkeeping schema, the
    segment's columns and counts (with the first sync of the run, and of each segment, as a run does),
    the catch-up of the snapshot (a replay of the ledger's changes, or a rebuild), the checksums of the
    shortcut and the diff query; uploads are shown as comments with their row counts, never their rows.

    Raises:
        ConfigError: an unknown sync, or a segment's query the warehouse refuses.
    """
    unknown = [n for n in names if n not in project.syncs]
    if unknown:
        raise ConfigError(f"unknown sync(s): {', '.join(unknown)}; known: {', '.join(sorted(project.syncs))}")
    url = project.warehouse_url()
    if project.config.diff_mode != "warehouse":
        return {name: local_statements(project.segments[project.syncs[name].segment], project.segment_sql(project.syncs[name].segment),
                                       warehouse_url=url) for name in names}
    schema = project.config.bookkeeping_schema
    try:
        probe: WarehouseSession | None = open_session(url, schema)
    except (ConfigError, ImportError, ValueError, sa.exc.ArgumentError):  # no driver or credentials here: still shown
        probe = None
    dialect = probe.dialect if probe is not None else _dialect_of(url, schema)
    configured = {n: [column for column, _ in wanted_columns(s).values()] for n, s in project.segments.items()}
    session = _ExplainSession(dialect, probe, configured)
    try:
        warehouse = WarehouseDiff(url, schema, session=session)
        return {name: _explain_sync(project, warehouse, session, ledger, name) for name in names}
    finally:
        if probe is not None:
            probe.close()


def _dialect_of(url: str, schema: str) -> Dialect:
    scheme = dialect_of(url)
    return DIALECTS[scheme](schema) if scheme in ("bigquery", "databricks") else DIALECTS[scheme]()


def _explain_sync(project: Project, warehouse: WarehouseDiff, session: _ExplainSession, ledger: Ledger, name: str) -> list[str]:
    from destinations.registry import capabilities_of  # the connectors' registry: only explain needs it here
    from syncer.planning.local_diff import _shape

    sync = project.syncs[name]
    segment = project.segments[sync.segment]
    session.segment = sync.segment
    source = warehouse.source(project.segment_sql(sync.segment), segment, sync.segment)
    if sync.segment not in session.counted:
        session.counted.add(sync.segment)
        warehouse.segment_counts(source)
        suppressions = ledger.active_suppressions()
        if any(seg == sync.segment for _, seg in suppressions):
            warehouse.left_segment(source, [k for k, seg in suppressions if seg == sync.segment])
    held = warehouse.catch_up(_DryLedger(ledger), name)
    capabilities = capabilities_of(project.destinations[sync.destination])
    data = SegmentData(sync.segment, source, 0, 0.0, tuple(segment.identifiers), bool(segment.phone_region_column))
    shape = _shape(data, segment, sync, sync.channel or capabilities.channel, capabilities.consent_marker)
    suppressed = {k for k, seg in ledger.active_suppressions() if seg in ("*", sync.segment)}
    con = duckdb.connect()
    try:
        warehouse.diff(con, source=source, sync_name=name, shape=shape, suppressed=suppressed,
                       rejected=ledger.rejected_fingerprints(name), held_count=held, resend_all=False,
                       chunk_rows=project.config.chunk_rows)
    finally:
        con.close()
    return [textwrap.dedent(statement).strip() for statement in session.take()]
