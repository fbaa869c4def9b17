"""Set-based diff of a segment against what each audience holds, producing a ``SyncPlan``.

The heavy work runs in an in-process DuckDB database (memory-capped, spilling to disk). A DuckDB
warehouse is attached read-only and read in place through a view; any other warehouse is streamed in
as Arrow chunks. Each row is fingerprinted in SQL (``syncer.planning.fingerprints``) and one full join against
the audience's snapshot finds the members who are new, changed or gone. Only those rows come back to
Python, chunk by chunk, for the identity rules, so a run's cost and memory follow the churn, not the
audience size.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from syncer.errors import ConfigError
from syncer.ledger.store import Ledger
from syncer.planning.classify import add_leavers, classify_chunk
from syncer.planning.fingerprints import concat_sql, number_from_hex
from syncer.planning.plan import PlanRows, SyncPlan
from syncer.planning.segment import SegmentData, trait_object_sql
from syncer.planning.shared import retain_linked
from syncer.planning.snapshot import load_held
from syncer.project.config import SegmentConfig, SyncConfig


class PushedDownDiff(Protocol):
    """The set work done in the warehouse instead (``syncer.planning.warehouse_diff.WarehouseDiff``)."""

    def catch_up(self, ledger: Ledger, sync: str) -> int:
        """Bring the warehouse's snapshot of ``sync`` up to the ledger; returns the members held."""

    def diff(self, con: duckdb.DuckDBPyConnection, *, source: str, sync_name: str, shape, suppressed: set[str],
             rejected: dict[str, str], held_count: int, resend_all: bool, chunk_rows: int):
        """Leave the changed members in ``con`` as ``_wchanges``; returns what was found."""


def consent_filter(segment: SegmentConfig, sync: SyncConfig, default_channel: str) -> str:
    """SQL over a segment's canonical columns: the member's consent lets this sync send to them."""
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


@dataclass(frozen=True)
class _Shape:
    """How one sync reads its segment: the fingerprinted text, the row filter and the columns it needs."""

    kinds: list[str]
    has_region: bool
    concat: str  # SQL: the text whose md5 is the row's fingerprint
    wanted: str  # SQL: the row may be sent (consent)
    consent_sql: str | None  # SQL: the consent marker sent to consent-aware connectors
    traits_sql: str | None = None  # SQL: the sync's traits as a JSON object's text (syncs with traits only)

    @property
    def columns(self) -> str:
        cols = [f"s.k_{k}" for k in self.kinds] + (["s.region"] if self.has_region else [])
        cols += [f"{self.consent_sql} AS consent"] if self.consent_sql else []
        return ", ".join(cols + ([f"{self.traits_sql} AS traits"] if self.traits_sql else []))


def _shape(data: SegmentData, segment: SegmentConfig, sync: SyncConfig, channel: str, consent_marker: bool,
           traits_sql: str | None = None) -> _Shape:
    kinds = list(sync.identifiers)
    consent_column = f"consent_{channel}" if consent_marker and getattr(segment.consent, channel) else None
    consent_sql = (f"CASE WHEN s.{consent_column} THEN 'granted' ELSE 'unknown' END" if consent_column
                   else "'unknown'" if consent_marker else None)
    parts = [f"s.k_{k}" for k in kinds] + (["s.region"] if data.has_region else []) + ([consent_sql] if consent_sql else [])
    # a sync without traits keeps the fingerprint it always had; with traits, a changed value changes it
    parts += [traits_sql] if traits_sql else []
    return _Shape(kinds, data.has_region, concat_sql(parts), consent_filter(segment, sync, channel), consent_sql, traits_sql)


def plan_sync(con: duckdb.DuckDBPyConnection, data: SegmentData, segment: SegmentConfig, sync_name: str,
              sync: SyncConfig, *, platform: str, region: str, ledger: Ledger,
              suppressed: set[str], channel: str = "ads", consent_marker: bool = False,
              cache_dir: Path | None = None, resend_all: bool = False, spill_dir: Path | None = None,
              chunk_rows: int = 50_000, warehouse: PushedDownDiff | None = None,
              match_keys: frozenset[str] = frozenset(), only_keys: list[str] | None = None) -> SyncPlan:
    """Diff one sync: what to add, remove, refresh in the ledger only, and which rows are rejected.

    The set work runs in ``con`` (the ``local`` mode) or, given ``warehouse``, in the warehouse
    (``syncer.planning.warehouse_diff``); either way the changed rows are finished here. ``spill_dir`` keeps
    planned rows beyond ``chunk_rows`` on disk (see ``PlanRows``). ``match_keys``: the kinds the platform
    recognises a person by; a leaver linked by one to a member who stays is kept (``syncer.planning.shared``).
    ``only_keys`` (the real-time path) diffs those members only: ``data`` holds the segment's rows for them, and
    the audience's other members are neither leavers nor counted (local mode only)."""
    started = time.perf_counter()
    channel = sync.channel or channel
    if sync.traits and warehouse is not None:
        raise ConfigError(f"sync '{sync_name}' maps traits, which diff_mode: warehouse does not send: use diff_mode: local")
    traits_sql = trait_object_sql(con, data, segment, sync, sync_name) if sync.traits else None
    shape = _shape(data, segment, sync, channel, consent_marker, traits_sql)
    base_version = ledger.batch_version(sync_name)
    rejected = ledger.rejected_fingerprints(sync_name, only_keys)
    _register_rejected(con, rejected)
    _register(con, "_supp", {"member_key": sorted(suppressed)})
    plan = SyncPlan(sync=sync_name, segment=sync.segment, destination=sync.destination, audience_id=sync.audience_id,
                    mode=sync.mode, base_version=base_version, members=0, held_before=0,
                    **{op: PlanRows(spill_dir=spill_dir, chunk_rows=chunk_rows) for op in ("adds", "removes", "refreshes")})
    try:
        snapshots = cache_dir or Path(".syncer") / "snapshots"
        if warehouse is None:
            plan.held_before = load_held(con, "_held", ledger, sync_name, snapshots, write=only_keys is None)
            if only_keys is not None:
                plan.held_before = _held_only(con, only_keys)
            members, duplicates, stale, unchanged, candidates = _local_changes(con, data, shape, plan.held_before,
                                                                               resend_all, chunk_rows)
            plan.stats["no_consent"] = _scalar(con, f"""SELECT count(*) FROM {data.table} s WHERE s.member_key IS NOT NULL
                AND s.member_key <> '' AND NOT ({shape.wanted})""")  # left out: "where did 265 members go?"
        else:
            plan.held_before = warehouse.catch_up(ledger, sync_name)
            found = warehouse.diff(con, source=data.table, sync_name=sync_name, shape=shape, suppressed=suppressed,
                                   rejected=rejected, held_count=plan.held_before, resend_all=resend_all, chunk_rows=chunk_rows)
            members, duplicates, stale, unchanged = found.members, found.duplicates, found.stale_rejections, found.unchanged
            plan.stats["no_consent"] = found.no_consent
            candidates = _warehouse_candidates(con, shape, chunk_rows)
        still_rejected = _scalar(con, "SELECT count(*) FROM _changes c JOIN _rej r ON r.member_key = c.member_key AND r.fp = c.fp")
        plan.members = members - still_rejected
        plan.stats.update(segment_rows=data.rows, null_or_duplicate_keys=data.null_keys + duplicates, unchanged_by_checksum=unchanged)
        pending = ledger.pending_keys(sync_name, only_keys)
        dropped: dict[str, int] = {}
        with closing(candidates):
            for batch in candidates:
                classify_chunk(plan, batch, shape.kinds, platform=platform, region=region, has_region=data.has_region,
                                     ledger=ledger, resend_all=resend_all, pending=pending, dropped=dropped)
        plan.stats["dropped_identifiers"] = dropped
        if sync.mode != "add_only":
            with closing(_batches(con, "SELECT member_key FROM _changes WHERE fp IS NULL ORDER BY member_key", chunk_rows)) as leavers:
                for keys in leavers:
                    add_leavers(plan, ledger, keys, pending)
        if match_keys and (plan.adds or plan.removes):
            if warehouse is not None:  # the identifier digests live in the local snapshot in either mode
                load_held(con, "_held", ledger, sync_name, snapshots)
            retain_linked(con, plan, "_held_values", match_keys, ledger, pending)
    finally:
        con.unregister("_supp")
        _drop_work_tables(con)
    plan.members -= len(plan.rejections)
    plan.cleared_rejections = sorted(set(stale) | set(plan.cleared_rejections))
    plan.stats["plan_seconds"] = round(time.perf_counter() - started, 3)
    return plan


def _held_only(con: duckdb.DuckDBPyConnection, keys: list[str]) -> int:
    """Narrow ``_held`` to ``keys``; ``_held_values`` keeps the whole audience, so a leaver linked to any member
    who stays is still found."""
    _register(con, "_touched", {"member_key": sorted(set(keys))})
    con.execute("CREATE OR REPLACE TEMP TABLE _held_touched AS SELECT * FROM _held WHERE member_key IN (SELECT member_key FROM _touched)")
    con.execute("CREATE OR REPLACE TEMP VIEW _held AS SELECT * FROM _held_touched")
    con.unregister("_touched")
    return _scalar(con, "SELECT count(*) FROM _held")


def _register_rejected(con: duckdb.DuckDBPyConnection, rejected: dict[str, str]) -> None:
    """``_rej(member_key, fp)``: rows rejected for good, each with the fingerprint it was rejected at."""
    _register(con, "_rej_hex", {"member_key": list(rejected), "raw_fp": list(rejected.values())})
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rej AS SELECT member_key, {number_from_hex('raw_fp')} AS fp FROM _rej_hex")
    con.unregister("_rej_hex")


def _local_changes(con: duckdb.DuckDBPyConnection, data: SegmentData, shape: _Shape, held_before: int,
                   resend_all: bool, chunk_rows: int):
    """The local mode's set work: (members, duplicate keys, stale rejections, unchanged, changed rows)."""
    _build_desired(con, data, shape)
    members, duplicates, unchanged = _diff(con, held_before, resend_all)
    candidates = _candidates(con, data, shape, duplicates > 0, chunk_rows)
    stale = [k for (k,) in con.sql("SELECT member_key FROM _rej ANTI JOIN _rows USING (member_key)").fetchall()]
    return members, duplicates, stale, unchanged, candidates


def _build_desired(con: duckdb.DuckDBPyConnection, data: SegmentData, shape: _Shape) -> None:
    """Create ``_rows(member_key, fp)``: every row the audience should hold, before de-duplication."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _rows AS
        SELECT s.member_key, md5_number({shape.concat}) AS fp
        FROM {data.table} s
        WHERE s.member_key IS NOT NULL AND s.member_key <> '' AND ({shape.wanted})
          AND s.member_key NOT IN (SELECT member_key FROM _supp)""")


_CHECKSUM = "SELECT count(*), bit_xor(hash(member_key, fp)), sum(hash(member_key, fp)) FROM {}"


def _diff(con: duckdb.DuckDBPyConnection, held_count: int, resend_all: bool) -> tuple[int, int, bool]:
    """Create ``_changes(member_key, fp, held_fp)``: every member whose fingerprint differs from what the
    audience holds (``fp`` NULL: the member left). A key on several rows keeps its smallest fingerprint,
    so the choice is stable; it is settled among the changed keys only, as a repeated key with differing
    rows always shows up there, and the audience-wide ``GROUP BY`` would cost a second pass.

    Returns (members the audience should hold, duplicate rows, whether the checksums proved no change)."""
    rows = _scalar(con, "SELECT count(*) FROM _rows")
    if not resend_all and con.sql(_CHECKSUM.format("_rows")).fetchall() == con.sql(_CHECKSUM.format("_held")).fetchall():
        # the same (member, fingerprint) pairs as held: nothing changed, and no key repeats since held's
        # keys are unique; the odds of equal count, xor and sum of 64-bit hashes otherwise are ~2^-64
        con.execute("CREATE OR REPLACE TEMP TABLE _changes (member_key VARCHAR, fp UHUGEINT, held_fp UHUGEINT)")
        return rows, 0, True
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _raw_changes AS
        SELECT coalesce(d.member_key, h.member_key) AS member_key, d.fp, h.fp AS held_fp
        FROM _rows d FULL JOIN _held h ON h.member_key = d.member_key
        WHERE d.fp IS DISTINCT FROM h.fp {'OR d.fp IS NOT NULL' if resend_all else ''}""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _dups AS
        SELECT member_key, min(fp) AS fp FROM _rows
        WHERE member_key IN (SELECT member_key FROM _raw_changes WHERE fp IS NOT NULL)
        GROUP BY member_key HAVING count(*) > 1""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _changes AS
        SELECT * FROM _raw_changes WHERE member_key NOT IN (SELECT member_key FROM _dups)
        UNION ALL
        SELECT d.member_key, d.fp, h.fp FROM _dups d LEFT JOIN _held h USING (member_key)
        WHERE d.fp IS DISTINCT FROM h.fp {'OR TRUE' if resend_all else ''}""")
    gone, new = con.sql("SELECT count(*) FILTER (WHERE fp IS NULL), count(*) FILTER (WHERE held_fp IS NULL) FROM _changes").fetchall()[0]
    members = held_count - gone + new
    return members, rows - members, False


def _candidates(con: duckdb.DuckDBPyConnection, data: SegmentData, shape: _Shape, duplicates: bool, chunk_rows: int):
    """The changed members' rows, read back from the segment, in member-key order, in Arrow batches."""
    one_per_key = "QUALIFY row_number() OVER (PARTITION BY c.member_key ORDER BY c.member_key) = 1" if duplicates else ""
    query = f"""
        SELECT c.member_key, md5({shape.concat}) AS raw_fp, {shape.columns},
               c.held_fp IS NOT NULL AS was_held, r.member_key IS NOT NULL AS was_rejected
        FROM _changes c
        JOIN {data.table} s ON s.member_key = c.member_key
        LEFT JOIN _rej r ON r.member_key = c.member_key
        WHERE c.fp IS NOT NULL AND md5_number({shape.concat}) = c.fp AND ({shape.wanted})
          AND r.fp IS DISTINCT FROM c.fp
        {one_per_key}
        ORDER BY c.member_key"""
    yield from _tables(con, query, chunk_rows)


def _warehouse_candidates(con: duckdb.DuckDBPyConnection, shape: _Shape, chunk_rows: int):
    """The changed members the warehouse sent back (``_wchanges``), in the local mode's shape and order."""
    columns = [f"w.k_{k}" for k in shape.kinds] + (["w.region"] if shape.has_region else []) + (
        ["w.consent"] if shape.consent_sql else [])
    query = f"""
        SELECT w.member_key, w.raw_fp, {', '.join(columns)},
               w.held_raw_fp IS NOT NULL AS was_held, r.member_key IS NOT NULL AS was_rejected
        FROM _wchanges w LEFT JOIN _rej r ON r.member_key = w.member_key
        WHERE w.raw_fp IS NOT NULL AND r.fp IS DISTINCT FROM {number_from_hex('w.raw_fp')}
        ORDER BY w.member_key"""
    yield from _tables(con, query, chunk_rows)


def _tables(con: duckdb.DuckDBPyConnection, query: str, chunk_rows: int):
    reader = con.sql(query).to_arrow_reader(chunk_rows)
    try:
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    finally:
        reader.close()  # an abandoned reader keeps the connection busy


def _batches(con: duckdb.DuckDBPyConnection, query: str, chunk_rows: int):
    for table in _tables(con, query, chunk_rows):
        yield table.column(0).to_pylist()


def _drop_work_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Free one sync's work before the next (a work table may be a view or a table, depending on the path)."""
    kinds = con.sql("""SELECT table_name, table_type FROM information_schema.tables
                       WHERE table_catalog = 'temp' AND table_name IN ('_rows', '_raw_changes', '_dups', '_changes', '_wchanges', '_rej')""").fetchall()
    for name, kind in sorted(kinds, key=lambda k: k[1] != "VIEW"):  # views first: they read the tables
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {name}")


def _scalar(con: duckdb.DuckDBPyConnection, query: str):
    return con.sql(query).fetchall()[0][0]
