"""Segment extraction: a segment's query made readable as one DuckDB table or view with canonical
columns (``member_key``, ``k_<kind>``, ``region``, ``consent_<channel>``), whatever the warehouse.
The columns the segment's syncs send as traits (``SyncConfig.traits``, named by the caller) are kept as
``t_<column>``, their values as JSON text; other columns the query returns are not read.

A DuckDB warehouse is attached read-only and read in place through a view; any other warehouse is
streamed in as Arrow chunks (``syncer.planning.extract``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncer.errors import ConfigError
from syncer.planning.extract import extract
from syncer.project.config import SegmentConfig

CHANNELS = ("ads", "email", "sms")


@dataclass
class SegmentData:
    name: str
    table: str  # a DuckDB table or view with the canonical columns (see ``_wanted_columns``)
    rows: int
    extract_seconds: float
    kinds: tuple[str, ...]
    has_region: bool
    null_keys: int = 0  # rows without a member key


def _wanted_columns(segment: SegmentConfig) -> dict[str, tuple[str, pa.DataType]]:
    """canonical name -> (the segment's column, type) for every column the engine reads."""
    wanted: dict[str, tuple[str, pa.DataType]] = {"member_key": (segment.member_key, pa.string())}
    for kind, column in segment.identifiers.items():
        wanted[f"k_{kind}"] = (column, pa.string())
    if segment.phone_region_column:
        wanted["region"] = (segment.phone_region_column, pa.string())
    for channel in CHANNELS:
        column = getattr(segment.consent, channel)
        if column:
            wanted[f"consent_{channel}"] = (column, pa.bool_())
    return wanted


wanted_columns = _wanted_columns  # the configured columns, for callers outside this module (explain)


def resolve_columns(returned: list[str], segment: SegmentConfig, name: str) -> dict[str, tuple[str, pa.DataType]]:
    """canonical name -> (the column as the query spells it, type); ConfigError naming a missing one."""
    lower = {n.lower(): n for n in returned}
    resolved = {}
    for canonical, (column, dtype) in _wanted_columns(segment).items():
        actual = column if column in returned else lower.get(column.lower())
        if actual is None:
            raise ConfigError(
                f"segment '{name}': the query returned no column '{column}' (configured for {canonical.removeprefix('k_')});"
                f" it returned: {', '.join(returned)}")
        resolved[canonical] = (actual, dtype)
    return resolved


def trait_columns(returned: list[str], resolved: dict[str, tuple[str, pa.DataType]],
                  traits: frozenset[str] = frozenset()) -> list[str]:
    """The returned columns named in ``traits`` (matched as the query spells them, else case-insensitively) not
    read as a canonical one: each is kept as ``t_<column>`` (JSON text). Carrying every other column would
    cost a JSON text per value for nothing (about 1.5 s per million rows of eight columns)."""
    used = {actual for actual, _ in resolved.values()}
    wanted = {t.lower() for t in traits}
    return [column for column in returned if column not in used and column.lower() in wanted]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _canonical_batch(batch: pa.RecordBatch, segment: SegmentConfig, name: str, traits: frozenset[str]) -> pa.Table:
    """The canonical columns, then each other column raw as ``t_<column>`` (made JSON text on insert)."""
    arrays, names = [], []
    resolved = resolve_columns(batch.schema.names, segment, name)
    for canonical, (actual, dtype) in resolved.items():
        array = batch.column(actual)
        try:
            arrays.append(pc.cast(array, dtype) if array.type != dtype else array)
        except pa.ArrowInvalid as exc:
            raise ConfigError(f"segment '{name}': column '{actual}' cannot be read as {dtype}: {exc}") from exc
        names.append(canonical)
    for column in trait_columns(batch.schema.names, resolved, traits):
        arrays.append(batch.column(column))
        names.append(f"t_{column}")
    return pa.table(arrays, names=names)


def _empty_columns(segment: SegmentConfig) -> str:
    cols = ["member_key VARCHAR"] + [f"k_{k} VARCHAR" for k in segment.identifiers]
    if segment.phone_region_column:
        cols.append("region VARCHAR")
    cols += [f"consent_{c} BOOLEAN" for c in CHANNELS if getattr(segment.consent, c)]
    return ", ".join(cols)


def load_segment(con: duckdb.DuckDBPyConnection, name: str, segment: SegmentConfig, sql: str, *,
                 warehouse_url: str, chunk_rows: int, traits: frozenset[str] = frozenset()) -> SegmentData:
    """Make ``seg_<name>`` readable in ``con``: a view over an attached DuckDB warehouse, else a table
    streamed in from the warehouse. ``traits``: the columns the segment's syncs send as traits."""
    started = time.perf_counter()
    table = f"seg_{name}"
    if warehouse_url.startswith("duckdb:///") and warehouse_url != "duckdb:///:memory:":
        _view_over_duckdb_file(con, table, warehouse_url.removeprefix("duckdb:///"), sql, segment, name, traits)
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({_empty_columns(segment)})")
        extras: list[str] | None = None
        for batch in extract(warehouse_url, sql, chunk_rows=chunk_rows):
            chunk = _canonical_batch(batch, segment, name, traits)
            if extras is None:  # the other columns are known from the first chunk on
                extras = [n for n in chunk.column_names if n.startswith("t_")]
                for column in extras:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {_quoted(column)} VARCHAR")
            con.register("_chunk", chunk)
            values = ", ".join([n for n in chunk.column_names if not n.startswith("t_")]
                               + [f"to_json({_quoted(n)})::VARCHAR" for n in extras])
            con.execute(f"INSERT INTO {table} SELECT {values} FROM _chunk")
            con.unregister("_chunk")
    return _segment_data(con, name, table, segment, started)


def load_segment_file(con: duckdb.DuckDBPyConnection, name: str, segment: SegmentConfig, path: Path) -> SegmentData:
    """Read a segment kept by ``Engine.extract_segment`` (canonical columns, Parquet) in place."""
    started = time.perf_counter()
    table = f"seg_{name}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    return _segment_data(con, name, table, segment, started)


def _segment_data(con: duckdb.DuckDBPyConnection, name: str, table: str, segment: SegmentConfig, started: float) -> SegmentData:
    try:
        rows, null_keys = con.sql(
            f"SELECT count(*), count(*) FILTER (WHERE member_key IS NULL OR member_key = '') FROM {table}").fetchall()[0]
    except duckdb.Error as exc:
        raise ConfigError(f"segment '{name}': the query failed in the warehouse: {exc}") from exc
    return SegmentData(name, table, rows, time.perf_counter() - started, tuple(segment.identifiers),
                       bool(segment.phone_region_column), null_keys)


WAREHOUSE_ALIAS = "_wh"


def _canonical_select(sql: str, columns: dict[str, tuple[str, pa.DataType]]) -> str:
    """The segment's query over a DuckDB warehouse with the canonical columns, as DuckDB runs it."""
    casts = ", ".join(f'CAST(_q."{actual}" AS {"BOOLEAN" if dtype == pa.bool_() else "VARCHAR"}) AS {canonical}'
                      for canonical, (actual, dtype) in columns.items())
    return f"SELECT {casts} FROM ({sql}) AS _q"


def local_statements(segment: SegmentConfig, sql: str, *, warehouse_url: str) -> list[str]:
    """What ``load_segment`` sends to the warehouse, in order, with the columns as configured: a DuckDB file
    is asked for its columns, then read through a view with the canonical ones; any other warehouse gets
    the segment's query as written (``syncer.planning.extract``)."""
    if warehouse_url.startswith("duckdb:///") and warehouse_url != "duckdb:///:memory:":
        return [f"SELECT * FROM ({sql}) AS _q LIMIT 0", _canonical_select(sql, _wanted_columns(segment))]
    return [sql]


def _view_over_duckdb_file(con: duckdb.DuckDBPyConnection, table: str, path: str, sql: str,
                           segment: SegmentConfig, name: str, traits: frozenset[str]) -> None:
    """A DuckDB warehouse is attached read-only and stays the default catalog while ``con`` lives, so the
    segment's SQL can name its tables unqualified; our own tables are TEMP and never touch it."""
    attached = {n for (n,) in con.sql("SELECT database_name FROM duckdb_databases()").fetchall()}
    if WAREHOUSE_ALIAS not in attached:
        try:
            con.execute(f"ATTACH '{path}' AS {WAREHOUSE_ALIAS} (READ_ONLY)")
        except duckdb.Error as exc:
            raise ConfigError(f"cannot open the DuckDB warehouse {path}: {exc}") from exc
        con.execute(f"USE {WAREHOUSE_ALIAS}")
    try:
        returned = [d[0] for d in con.sql(f"SELECT * FROM ({sql}) AS _q LIMIT 0").description]
        columns = resolve_columns(returned, segment, name)
        casts = ", ".join([f'CAST(_q."{actual}" AS {"BOOLEAN" if dtype == pa.bool_() else "VARCHAR"}) AS {canonical}'
                           for canonical, (actual, dtype) in columns.items()]
                          + [f"to_json(_q.{_quoted(c)})::VARCHAR AS {_quoted('t_' + c)}" for c in trait_columns(returned, columns, traits)])
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT {casts} FROM ({sql}) AS _q")
    except duckdb.Error as exc:
        raise ConfigError(f"segment '{name}': the query failed in the warehouse: {exc}") from exc


def trait_object_sql(con: duckdb.DuckDBPyConnection, data: SegmentData, segment: SegmentConfig, sync, sync_name: str) -> str:
    """SQL over a segment row ``s``: the sync's traits as a JSON object's text, properties in name order.

    With ``null_traits: keep`` a NULL value is left out of the object (the platform keeps its value), with
    ``clear`` it stays as ``null``. The text is part of the row's fingerprint, so a changed value, a renamed
    property or a switched ``null_traits`` sends the member again.

    Raises:
        ConfigError: a trait names a column the segment's query does not return.
    """
    present = [row[0] for row in con.sql(f"DESCRIBE {data.table}").fetchall()]
    extras = {c.removeprefix("t_").lower(): c for c in present if c.startswith("t_")}
    extras |= {c.removeprefix("t_"): c for c in present if c.startswith("t_")}
    canonical = {column.lower(): name for name, (column, _) in _wanted_columns(segment).items()}
    pairs = []
    for prop, column in sorted(sync.traits.items()):
        if column in extras or column.lower() in extras:
            value = f"CAST(s.{_quoted(extras.get(column) or extras[column.lower()])} AS JSON)"
        elif column.lower() in canonical:
            value = f"to_json(s.{canonical[column.lower()]})"
        elif not data.rows:
            value = "NULL::JSON"  # an empty streamed segment: its other columns were never seen
        else:
            raise ConfigError(f"sync '{sync_name}': trait '{prop}' names column '{column}', which segment '{data.name}'"
                              f" does not return; add it to the segment's query")
        pairs.append(f"'{prop.replace(chr(39), chr(39) * 2)}', {value}")
    obj = f"json_object({', '.join(pairs)})"
    return f"CAST({obj} AS VARCHAR)" if sync.null_traits == "clear" else f"CAST(json_merge_patch('{{}}', {obj}) AS VARCHAR)"
