"""Set-based diff of a segment against what each audience holds, producing a ``SyncPlan``.

The heavy work runs in an in-process DuckDB database: the segment is streamed in as Arrow chunks,
fingerprinted in SQL (md5 of the raw identifier values), and joined against the ledger's fingerprints.
Only rows whose fingerprint changed (new, changed or previously failed members) go through the
Python identity rules, so a run's cost follows the churn, not the audience size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncer import identity
from syncer.config import SegmentConfig, SyncConfig
from syncer.errors import ConfigError
from syncer.ledger import Ledger
from syncer.plan import PlannedRow, SyncPlan
from syncer.snapshot import load_held
from syncer.warehouse import extract

CHANNELS = ("ads", "email", "sms")


@dataclass
class SegmentData:
    name: str
    table: str
    rows: int
    extract_seconds: float
    kinds: tuple[str, ...]
    has_region: bool


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


def _resolve_columns(returned: list[str], segment: SegmentConfig, name: str) -> dict[str, tuple[str, pa.DataType]]:
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


def _canonical_batch(batch: pa.RecordBatch, segment: SegmentConfig, name: str) -> pa.Table:
    arrays, names = [], []
    for canonical, (actual, dtype) in _resolve_columns(batch.schema.names, segment, name).items():
        column = actual
        array = batch.column(actual)
        try:
            arrays.append(pc.cast(array, dtype) if array.type != dtype else array)
        except pa.ArrowInvalid as exc:
            raise ConfigError(f"segment '{name}': column '{column}' cannot be read as {dtype}: {exc}") from exc
        names.append(canonical)
    return pa.table(arrays, names=names)


def _empty_columns(segment: SegmentConfig) -> str:
    cols = ["member_key VARCHAR"] + [f"k_{k} VARCHAR" for k in segment.identifiers]
    if segment.phone_region_column:
        cols.append("region VARCHAR")
    cols += [f"consent_{c} BOOLEAN" for c in CHANNELS if getattr(segment.consent, c)]
    return ", ".join(cols)


def load_segment(con: duckdb.DuckDBPyConnection, name: str, segment: SegmentConfig, sql: str, *,
                 warehouse_url: str, chunk_rows: int) -> SegmentData:
    """Stream the segment query into the DuckDB table ``seg_<name>``."""
    started = time.perf_counter()
    table = f"seg_{name}"
    if warehouse_url.startswith("duckdb:///") and warehouse_url != "duckdb:///:memory:":
        rows = _load_from_duckdb_file(con, table, warehouse_url.removeprefix("duckdb:///"), sql, segment, name)
        return SegmentData(name, table, rows, time.perf_counter() - started, tuple(segment.identifiers),
                           bool(segment.phone_region_column))
    con.execute(f"CREATE OR REPLACE TABLE {table} ({_empty_columns(segment)})")
    rows = 0
    for batch in extract(warehouse_url, sql, chunk_rows=chunk_rows):
        chunk = _canonical_batch(batch, segment, name)
        con.register("_chunk", chunk)
        con.execute(f"INSERT INTO {table} SELECT * FROM _chunk")
        con.unregister("_chunk")
        rows += chunk.num_rows
    return SegmentData(name, table, rows, time.perf_counter() - started, tuple(segment.identifiers),
                       bool(segment.phone_region_column))


def load_segment_file(con: duckdb.DuckDBPyConnection, name: str, segment: SegmentConfig, path: Path) -> SegmentData:
    """Load a segment kept by ``Engine.extract_segment`` (canonical columns, Parquet)."""
    started = time.perf_counter()
    table = f"seg_{name}"
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
    rows = _scalar(con, f"SELECT count(*) FROM {table}")
    return SegmentData(name, table, rows, time.perf_counter() - started, tuple(segment.identifiers),
                       bool(segment.phone_region_column))


def _load_from_duckdb_file(con: duckdb.DuckDBPyConnection, table: str, path: str, sql: str,
                           segment: SegmentConfig, name: str) -> int:
    """A DuckDB warehouse is attached read-only and queried in place: no rows cross into Python."""
    try:
        con.execute(f"ATTACH '{path}' AS _wh (READ_ONLY)")
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open the DuckDB warehouse {path}: {exc}") from exc
    try:
        con.execute("USE _wh")
        try:
            returned = [d[0] for d in con.sql(f"SELECT * FROM ({sql}) AS _q LIMIT 0").description]
            columns = _resolve_columns(returned, segment, name)
            casts = ", ".join(f'CAST(_q."{actual}" AS {"BOOLEAN" if dtype == pa.bool_() else "VARCHAR"}) AS {canonical}'
                              for canonical, (actual, dtype) in columns.items())
            con.execute(f"CREATE OR REPLACE TABLE memory.main.{table} AS SELECT {casts} FROM ({sql}) AS _q")
        except duckdb.Error as exc:
            raise ConfigError(f"segment '{name}': the query failed in the warehouse: {exc}") from exc
    finally:
        con.execute("USE memory")
        con.execute("DETACH _wh")
    return _scalar(con, f"SELECT count(*) FROM {table}")


def _consent_filter(segment: SegmentConfig, sync: SyncConfig, default_channel: str) -> str:
    channel = sync.channel or default_channel
    send_unknown = sync.send_unknown_consent if sync.send_unknown_consent is not None else channel == "ads"
    column = getattr(segment.consent, channel)
    if not column:
        return "TRUE" if send_unknown else "FALSE"
    if send_unknown:
        return f"consent_{channel} IS DISTINCT FROM FALSE"
    return f"consent_{channel} IS TRUE"


def _register(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, list]) -> None:
    con.register(name, pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}))


def plan_sync(con: duckdb.DuckDBPyConnection, data: SegmentData, segment: SegmentConfig, sync_name: str,
              sync: SyncConfig, *, platform: str, region: str, ledger: Ledger,
              suppressed: set[str], channel: str = "ads", consent_marker: bool = False,
              cache_dir: Path | None = None, resend_all: bool = False) -> SyncPlan:
    """Diff one sync: what to add, remove, refresh in the ledger only, and which rows are rejected."""
    started = time.perf_counter()
    kinds = list(sync.identifiers)
    channel = sync.channel or channel
    base_version = ledger.state_version(sync_name)
    held_count = load_held(con, "_held", ledger, sync_name, cache_dir or Path(".syncer") / "snapshots")
    rejected = ledger.rejected_fingerprints(sync_name)
    _register(con, "_rej", {"member_key": list(rejected), "raw_fp": list(rejected.values())})
    _register(con, "_supp", {"member_key": sorted(suppressed)})
    try:
        distinct_keys = _build_desired(con, data, segment, sync, kinds, channel, consent_marker)
        desired, still_rejected, candidates, gone, stale_rejections = _diff(con, sync, resend_all)
    finally:
        for name in ("_rej", "_supp"):
            con.unregister(name)
    plan = SyncPlan(sync=sync_name, segment=sync.segment, destination=sync.destination, audience_id=sync.audience_id,
                    mode=sync.mode, base_version=base_version, members=desired - still_rejected,
                    held_before=held_count, stats={"segment_rows": data.rows, "null_or_duplicate_keys": data.rows - distinct_keys})
    _classify_candidates(plan, candidates, kinds, platform=platform, region=region,
                         has_region=data.has_region, ledger=ledger, resend_all=resend_all)
    _finish(plan, ledger, gone, stale_rejections)
    plan.stats["plan_seconds"] = round(time.perf_counter() - started, 3)
    return plan


def _build_desired(con: duckdb.DuckDBPyConnection, data: SegmentData, segment: SegmentConfig, sync: SyncConfig,
                   kinds: list[str], channel: str, consent_marker: bool) -> int:
    """Create ``_desired``: one row per member the audience should hold, with a fingerprint of the raw
    identifiers (and consent, for consent-aware connectors). Returns the number of distinct member keys."""
    consent_column = f"consent_{channel}" if consent_marker and getattr(segment.consent, channel) else None
    consent_sql = (f"CASE WHEN {consent_column} THEN 'granted' ELSE 'unknown' END" if consent_column
                   else "'unknown'" if consent_marker else None)
    fp_parts = [f"coalesce(k_{k}, chr(0))" for k in kinds] + (["coalesce(region, chr(0))"] if data.has_region else [])
    fp_parts += [consent_sql] if consent_sql else []
    valid_keys = "member_key IS NOT NULL AND member_key <> ''"
    valid_rows, distinct_keys = con.sql(
        f"SELECT count(*), count(DISTINCT member_key) FROM {data.table} WHERE {valid_keys}").fetchall()[0]
    # a duplicated member key keeps one row, chosen by content so the plan stays deterministic;
    # the window costs a sort, so it only runs when there are duplicates
    dedupe = "QUALIFY row_number() OVER (PARTITION BY member_key ORDER BY raw_fp) = 1" if valid_rows > distinct_keys else ""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _desired AS
        SELECT member_key, md5(concat_ws(chr(31), {', '.join(fp_parts)})) AS raw_fp,
               {', '.join(f'k_{k}' for k in kinds)}{', region' if data.has_region else ''}
               {f', {consent_sql} AS consent' if consent_sql else ''}
        FROM {data.table}
        WHERE {valid_keys}
          AND {_consent_filter(segment, sync, channel)}
          AND member_key NOT IN (SELECT member_key FROM _supp)
        {dedupe}""")
    return distinct_keys


def _diff(con: duckdb.DuckDBPyConnection, sync: SyncConfig, resend_all: bool):
    """The set work: (desired, still rejected, changed rows, members who left, rejections now moot)."""
    desired = _scalar(con, "SELECT count(*) FROM _desired")
    still_rejected = _scalar(
        con, "SELECT count(*) FROM _desired d JOIN _rej r ON r.member_key = d.member_key AND r.raw_fp = d.raw_fp")
    candidates = con.sql(f"""
        SELECT d.*, h.raw_fp AS held_fp, r.member_key IS NOT NULL AS was_rejected
        FROM _desired d
        LEFT JOIN _held h ON h.member_key = d.member_key
        LEFT JOIN _rej r ON r.member_key = d.member_key
        WHERE ({'TRUE' if resend_all else 'h.raw_fp IS DISTINCT FROM d.raw_fp'}) AND r.raw_fp IS DISTINCT FROM d.raw_fp
        ORDER BY d.member_key""").to_arrow_table()
    gone = [] if sync.mode == "add_only" else [k for (k,) in con.sql(
        "SELECT member_key FROM _held ANTI JOIN _desired USING (member_key) ORDER BY member_key").fetchall()]
    stale_rejections = [k for (k,) in con.sql("SELECT member_key FROM _rej ANTI JOIN _desired USING (member_key)").fetchall()]
    return desired, still_rejected, candidates, gone, stale_rejections


def _finish(plan: SyncPlan, ledger: Ledger, gone: list[str], stale_rejections: list[str]) -> None:
    """Removes of members who left (with the identifiers they were sent with), counts and retries."""
    plan.members -= len(plan.rejections)
    held_map = ledger.held_rows(plan.sync, gone) if gone else {}
    plan.removes = sorted(plan.removes + [PlannedRow(k, held_map[k].raw_fp, held_map[k].identifiers) for k in gone if k in held_map],
                          key=lambda r: r.member_key)
    plan.cleared_rejections = sorted(set(stale_rejections) | set(plan.cleared_rejections))
    pending = ledger.pending_keys(plan.sync)
    plan.retried = sum(1 for r in plan.adds if pending.get(r.member_key) == "add") + sum(
        1 for r in plan.removes if pending.get(r.member_key) == "remove")


def _scalar(con: duckdb.DuckDBPyConnection, query: str):
    return con.sql(query).fetchall()[0][0]


def _classify_candidates(plan: SyncPlan, candidates: pa.Table, kinds: list[str], *, platform: str, region: str,
                         has_region: bool, ledger: Ledger, resend_all: bool = False) -> None:
    """Run identity rules on changed rows only and sort them into adds, removes, refreshes, rejections."""
    if candidates.num_rows == 0:
        return
    rows = candidates.rename_columns([n.removeprefix("k_") for n in candidates.column_names])
    results = identity.identify_many(rows.select(kinds + (["region"] if has_region else [])), kinds,
                                     platform=platform, region=region,
                                     region_column="region" if has_region else None)
    consents = rows.column("consent").to_pylist() if "consent" in rows.column_names else None
    keys = rows.column("member_key").to_pylist()
    fps = rows.column("raw_fp").to_pylist()
    held_fps = rows.column("held_fp").to_pylist()
    plan.cleared_rejections.extend(k for k, was in zip(keys, rows.column("was_rejected").to_pylist()) if was)
    was_held = [k for k, h in zip(keys, held_fps) if h is not None]
    held_map = ledger.held_rows(plan.sync, was_held) if was_held else {}
    dropped: dict[str, int] = {}
    for index, (key, fp, result) in enumerate(zip(keys, fps, results)):
        for reason in result.dropped.values():
            dropped[reason] = dropped.get(reason, 0) + 1
        old = held_map.get(key)
        if result.reason is not None:
            plan.rejections.append((key, fp, result.reason))
            if old is not None and plan.mode == "mirror":
                plan.removes.append(PlannedRow(key, old.raw_fp, old.identifiers))
            continue
        row = PlannedRow(key, fp, dict(result.identifiers) | ({"_consent": consents[index]} if consents else {}))
        if old is not None and plan.mode == "trigger":
            plan.refreshes.append(row)  # never re-text a member who is still in the segment
            continue
        if old is not None and old.identifiers == row.identifiers:
            if resend_all:
                plan.adds.append(row)  # same identifiers: a plain re-add, no remove first
                continue
            plan.refreshes.append(row)
            continue
        if old is not None and plan.mode == "mirror":
            plan.removes.append(PlannedRow(key, old.raw_fp, old.identifiers))
        plan.adds.append(row)
    plan.stats["dropped_identifiers"] = dropped
