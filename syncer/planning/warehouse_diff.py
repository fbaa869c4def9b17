"""The ``warehouse`` diff mode: the audience snapshot lives in the warehouse and the diff runs there as SQL.

For teams that grant the syncer a bookkeeping schema (``bookkeeping_schema`` in syncer.yml, default
``syncer``). Each sync's held fingerprints are mirrored into ``<schema>.held_snapshot``, caught up
from the ledger's change log before each plan (the ledger stays the truth), and one query per sync
returns only the members whose fingerprint changed, with their identifier columns. Nothing else
leaves the warehouse. The plan is then finished by the same code as the ``local`` mode, and is
identical to it: the same fingerprints (``syncer.planning.fingerprints``), filters and duplicate rule.

Supported warehouses: DuckDB and PostgreSQL (the SQL is standard apart from ``md5``, ``concat_ws`` and
``chr``, which both have); other dialects are refused when the project loads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from syncer.errors import ConfigError
from syncer.ledger.store import Ledger
from syncer.planning.fingerprints import byte_reversed_hex, number_from_hex
from syncer.planning.segment import resolve_columns
from syncer.planning.snapshot import MAX_REPLAY, latest_fingerprints
from syncer.project.config import SegmentConfig

SUPPORTED_DIALECTS = ("duckdb", "postgresql")
_UPLOAD_ROWS = 50_000


def _int(value: object) -> int | None:
    return None if value is None else int(value)


def _inline(query: str, params: dict[str, str]) -> str:
    """``query`` with its ``:name`` parameters written as SQL string literals (for the engine's own API)."""
    for name, value in params.items():
        query = query.replace(f":{name}", "'" + str(value).replace("'", "''") + "'")
    return query


@dataclass
class WarehouseChanges:
    members: int
    duplicates: int
    stale_rejections: list[str]
    unchanged: bool = False  # proven by checksums, without ranking or joining


class WarehouseDiff:
    """One connection to the warehouse for a plan: the snapshot tables, the catch-up and the diff queries."""

    def __init__(self, url: str, schema: str, *, memory_limit: str | None = None, temp_directory: str | None = None) -> None:
        self.engine = sa.create_engine(url)
        self.schema = schema
        self.conn = self.engine.connect()
        dialect = self.conn.dialect.name
        if dialect not in SUPPORTED_DIALECTS:
            raise ConfigError(f"diff_mode: warehouse supports {', '.join(SUPPORTED_DIALECTS)} warehouses, not {dialect}; use diff_mode: local")
        self.dialect = dialect
        # Postgres deletes by key through the primary key's index; DuckDB joins without one, and its
        # in-memory key index on ten million rows would cost more memory than the table
        key = ", PRIMARY KEY (sync, member_key)" if dialect == "postgresql" else ""
        try:
            if dialect == "duckdb":  # an embedded warehouse: held to the project's memory cap
                if memory_limit:
                    self.conn.execute(sa.text(f"SET memory_limit = '{memory_limit}'"))
                if temp_directory:
                    self.conn.execute(sa.text(f"SET temp_directory = '{temp_directory}'"))
            self.conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            self.conn.execute(sa.text(f"""CREATE TABLE IF NOT EXISTS {schema}.held_snapshot (
                sync VARCHAR(128) NOT NULL, member_key VARCHAR(256) NOT NULL, fp CHAR(32) NOT NULL{key})"""))
            self.conn.execute(sa.text(f"""CREATE TABLE IF NOT EXISTS {schema}.snapshot_version (
                sync VARCHAR(128) PRIMARY KEY, version INTEGER NOT NULL)"""))
            self.conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            self.close()
            raise ConfigError(f"diff_mode: warehouse needs a schema '{schema}' the syncer may write"
                              f" (bookkeeping_schema in syncer.yml): {getattr(exc, 'orig', exc)}") from exc

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()

    # --- the snapshot -----------------------------------------------------------------------------

    def catch_up(self, ledger: Ledger, sync: str) -> int:
        """Bring ``held_snapshot`` for ``sync`` up to the ledger; return how many members it holds."""
        version = self.conn.execute(sa.text(f"SELECT version FROM {self.schema}.snapshot_version WHERE sync = :s"),
                                    {"s": sync}).scalar()
        caught_up = ledger.held_changes_since(sync, version, limit=MAX_REPLAY) if version is not None else None
        if caught_up is None:
            current = ledger.state_version(sync)
            self.conn.execute(sa.text(f"DELETE FROM {self.schema}.held_snapshot WHERE sync = :s"), {"s": sync})
            for keys, fps in ledger.held_fingerprint_chunks(sync):
                self._insert(sync, keys, fps)
        else:
            current, changes = caught_up
            latest = latest_fingerprints(changes)
            self._delete(sync, list(latest))
            present = [(k, fp) for k, fp in latest.items() if fp is not None]
            self._insert(sync, [k for k, _ in present], [fp for _, fp in present])
        self.conn.execute(sa.text(f"DELETE FROM {self.schema}.snapshot_version WHERE sync = :s"), {"s": sync})
        self.conn.execute(sa.text(f"INSERT INTO {self.schema}.snapshot_version (sync, version) VALUES (:s, :v)"),
                          {"s": sync, "v": current})
        self.conn.commit()  # snapshot and its version in one transaction
        ledger.truncate_log(sync, current)
        return int(self.conn.execute(sa.text(f"SELECT count(*) FROM {self.schema}.held_snapshot WHERE sync = :s"),
                                     {"s": sync}).scalar())

    def _delete(self, sync: str, keys: Sequence[str]) -> None:
        if keys:
            self._upload("syncer_keys", ["member_key"], [keys])
            self.conn.execute(sa.text(f"DELETE FROM {self.schema}.held_snapshot WHERE sync = :s"
                                      " AND member_key IN (SELECT member_key FROM syncer_keys)"), {"s": sync})

    def _insert(self, sync: str, keys: Sequence[str], fps: Sequence[str]) -> None:
        if keys:
            self._upload("syncer_rows", ["member_key", "fp"], [keys, fps])
            self.conn.execute(sa.text(f"INSERT INTO {self.schema}.held_snapshot (sync, member_key, fp)"
                                      " SELECT :s, member_key, fp FROM syncer_rows"), {"s": sync})

    def _upload(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        """(Re)fill a session temp table; DuckDB takes the rows as Arrow, others by executemany in chunks."""
        self.conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        self.conn.execute(sa.text(f"CREATE TEMP TABLE {table} ({', '.join(f'{c} VARCHAR' for c in columns)})"))
        if self.dialect == "duckdb":
            raw = self.conn.connection.driver_connection
            raw.register("_syncer_upload", pa.table(dict(zip(columns, (pa.array(v, pa.string()) for v in values)))))
            raw.execute(f"INSERT INTO {table} SELECT * FROM _syncer_upload")
            raw.unregister("_syncer_upload")
            return
        raw = self.conn.connection.driver_connection
        if type(raw).__module__.split(".")[0] == "psycopg":  # psycopg 3: COPY, far faster than executemany
            with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in zip(*values):
                    copy.write_row(row)
            return
        marks = ", ".join(f":{c}" for c in columns)
        rows = [dict(zip(columns, row)) for row in zip(*values)]
        for start in range(0, len(rows), _UPLOAD_ROWS):
            self.conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"), rows[start:start + _UPLOAD_ROWS])

    # --- the diff ---------------------------------------------------------------------------------

    def source(self, sql: str, segment: SegmentConfig, name: str) -> str:
        """The segment's query with the canonical columns; ConfigError naming a missing column."""
        try:
            returned = list(self.conn.execute(sa.text(f"SELECT * FROM ({sql}) q WHERE 1 = 0")).keys())
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"segment '{name}': the query failed in the warehouse: {getattr(exc, 'orig', exc)}") from exc
        columns = resolve_columns(returned, segment, name)
        casts = ", ".join(f'CAST(q."{actual}" AS {"BOOLEAN" if dtype == pa.bool_() else "VARCHAR"}) AS {canonical}'
                          for canonical, (actual, dtype) in columns.items())
        return f"(SELECT {casts} FROM ({sql}) q)"

    def diff(self, con: duckdb.DuckDBPyConnection, *, source: str, sync_name: str, shape, suppressed: set[str],
             rejected: dict[str, str], held_count: int, resend_all: bool, chunk_rows: int) -> WarehouseChanges:
        """Run the diff in the warehouse and land the changed members in ``con`` as ``_wchanges`` (with their
        columns) and ``_changes(member_key, fp, held_fp)``, the local mode's shape."""
        self._upload("syncer_supp", ["member_key"], [sorted(suppressed)])
        valid = "s.member_key IS NOT NULL AND s.member_key <> ''"
        desired = f"{valid} AND ({shape.wanted}) AND s.member_key NOT IN (SELECT member_key FROM syncer_supp)"
        pair = self._hash64(f"s.member_key || '|' || md5({shape.concat})")
        stats = self.conn.execute(sa.text(f"""
            SELECT count(*), sum({pair}), bit_xor({pair}) FROM {source} s WHERE {desired}""")).one()
        rows = int(stats[0])
        held = self.conn.execute(sa.text(f"""
            SELECT count(*), sum({self._hash64("member_key || '|' || fp")}), bit_xor({self._hash64("member_key || '|' || fp")})
            FROM {self.schema}.held_snapshot WHERE sync = :sync"""), {"sync": sync_name}).one()
        stale = self._stale(source, desired, rejected)
        if not resend_all and (rows, _int(stats[1]), _int(stats[2])) == (int(held[0]), _int(held[1]), _int(held[2])):
            # the same (member, fingerprint) pairs as held, as in the local mode's short-cut: no ranking, no join
            self._land(con, None, {}, shape, chunk_rows)
            con.execute("CREATE OR REPLACE TEMP TABLE _changes (member_key VARCHAR, fp UHUGEINT, held_fp UHUGEINT)")
            return WarehouseChanges(members=held_count, duplicates=0, stale_rejections=stale, unchanged=True)
        columns = ", ".join([f"d.k_{k}" for k in shape.kinds] + (["d.region"] if shape.has_region else [])
                            + (["d.consent"] if shape.consent_sql else []))
        consent = f", {shape.consent_sql} AS consent" if shape.consent_sql else ""
        query = f"""
            SELECT coalesce(d.member_key, h.member_key) AS member_key, d.fp AS raw_fp, h.fp AS held_raw_fp{', ' + columns if columns else ''}
            FROM (
                SELECT * FROM (
                    SELECT f.*, row_number() OVER (PARTITION BY f.member_key ORDER BY {byte_reversed_hex('f.fp')}) AS pick
                    FROM (SELECT s.*, md5({shape.concat}) AS fp{consent} FROM {source} s WHERE {desired}) f
                ) ranked WHERE pick = 1
            ) d
            FULL JOIN (SELECT member_key, fp FROM {self.schema}.held_snapshot WHERE sync = :sync) h
              ON h.member_key = d.member_key
            WHERE d.fp IS DISTINCT FROM h.fp {'OR d.fp IS NOT NULL' if resend_all else ''}"""
        self._land(con, query, {"sync": sync_name}, shape, chunk_rows)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _changes AS
                        SELECT member_key, {number_from_hex('raw_fp')} AS fp, {number_from_hex('held_raw_fp')} AS held_fp FROM _wchanges""")
        gone, new = con.sql("SELECT count(*) FILTER (WHERE fp IS NULL), count(*) FILTER (WHERE held_fp IS NULL) FROM _changes").fetchall()[0]
        members = held_count - gone + new
        return WarehouseChanges(members=members, duplicates=rows - members, stale_rejections=stale)

    def _stale(self, source: str, desired: str, rejected: dict[str, str]) -> list[str]:
        """Rejected members the segment no longer wants (their rejection is moot)."""
        if not rejected:
            return []
        self._upload("syncer_rej", ["member_key"], [list(rejected)])
        return [k for (k,) in self.conn.execute(sa.text(
            f"SELECT r.member_key FROM syncer_rej r WHERE r.member_key NOT IN (SELECT s.member_key FROM {source} s WHERE {desired})"))]

    def _hash64(self, text: str) -> str:
        """SQL: the first 60 bits of md5(``text``) as a BIGINT, in this warehouse's dialect."""
        if self.dialect == "duckdb":
            return f"('0x' || substr(md5({text}), 1, 15))::BIGINT"
        return f"('x' || substr(md5({text}), 1, 15))::bit(60)::bigint"

    def _land(self, con: duckdb.DuckDBPyConnection, query: str | None, params: dict, shape, chunk_rows: int) -> None:
        """Create ``_wchanges`` in ``con`` with the rows ``query`` returns (none without a query)."""
        names = ["member_key", "raw_fp", "held_raw_fp"] + [f"k_{k}" for k in shape.kinds] + (
            ["region"] if shape.has_region else []) + (["consent"] if shape.consent_sql else [])
        con.execute(f"CREATE OR REPLACE TEMP TABLE _wchanges ({', '.join(f'{n} VARCHAR' for n in names)})")
        for batch in self._stream(query, params, chunk_rows) if query else ():
            con.register("_batch", pa.table(batch, names=names))
            con.execute("INSERT INTO _wchanges SELECT * FROM _batch")
            con.unregister("_batch")

    def _stream(self, query: str, params: dict, chunk_rows: int) -> Iterator[list[pa.Array]]:
        if self.dialect == "duckdb":  # the engine hands out Arrow itself: no rows through Python
            raw = self.conn.connection.driver_connection
            reader = raw.sql(_inline(query, params)).to_arrow_reader(chunk_rows)
            for batch in reader:
                yield [column.cast(pa.string()) for column in batch.columns]
            return
        try:
            # per statement: Connection.execution_options would make every later statement a server-side cursor
            result = self.conn.execute(sa.text(query).execution_options(stream_results=True, yield_per=chunk_rows), params)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"the warehouse diff failed: {getattr(exc, 'orig', exc)}") from exc
        width = len(result.keys())
        for rows in result.partitions(chunk_rows):
            yield [pa.array([None if r[i] is None else str(r[i]) for r in rows], pa.string()) for i in range(width)]

    def segment_counts(self, source: str) -> tuple[int, int]:
        """(rows, rows without a member key) of a segment, counted in the warehouse."""
        row = self.conn.execute(sa.text(
            f"SELECT count(*), sum(CASE WHEN s.member_key IS NULL OR s.member_key = '' THEN 1 ELSE 0 END) FROM {source} s")).one()
        return int(row[0]), int(row[1] or 0)

    def left_segment(self, source: str, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` the segment no longer holds."""
        self._upload("syncer_keys", ["member_key"], [list(keys)])
        return [k for (k,) in self.conn.execute(sa.text(
            f"SELECT k.member_key FROM syncer_keys k WHERE k.member_key NOT IN (SELECT s.member_key FROM {source} s WHERE s.member_key IS NOT NULL)"))]

