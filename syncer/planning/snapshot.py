"""A Parquet cache of what each audience holds (member key + fingerprint), kept beside the project.

The ledger stays the truth. A snapshot written at ledger version V is brought up to date by replaying
``held_log`` entries after V, so a plan reads the audience in one columnar scan plus the churn, instead
of pulling every row out of SQLite. A missing, unreadable or too-old snapshot falls back to a full read
from the ledger and is rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from syncer.ledger.store import Ledger
from syncer.planning.fingerprints import from_halves, halves, number_from_hex

MAX_REPLAY = 500_000  # more changes than this since the snapshot: re-read the audience in chunks instead


def _paths(cache_dir: Path, sync: str) -> tuple[Path, Path]:
    return cache_dir / f"{sync}.fp.parquet", cache_dir / f"{sync}.version"


def _read_version(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def load_held(con: duckdb.DuckDBPyConnection, table: str, ledger: Ledger, sync: str, cache_dir: Path) -> int:
    """Make ``table(member_key, fp)`` in ``con`` what ``sync`` holds (``fp`` as ``md5_number``, see
    ``syncer.planning.fingerprints``): a view over the snapshot, caught up first if the ledger moved on. Returns
    the row count."""
    parquet, version_file = _paths(cache_dir, sync)
    snap_version = _read_version(version_file) if parquet.exists() else None
    caught_up = ledger.held_changes_since(sync, snap_version, limit=MAX_REPLAY) if snap_version is not None else None
    build = f"{table}_build"
    if caught_up is not None:
        current, changes = caught_up
        try:
            if changes:
                _from_snapshot(con, build, parquet, changes)
            else:
                return _view(con, table, parquet)
        except duckdb.Error:
            caught_up = None
    if caught_up is None:
        current = ledger.state_version(sync)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {build} (member_key VARCHAR, fp UHUGEINT)")
        for keys, fps in ledger.held_fingerprint_chunks(sync):
            con.register("_ledger_rows", pa.table({"member_key": pa.array(keys, pa.string()), "raw_fp": pa.array(fps, pa.string())}))
            con.execute(f"INSERT INTO {build} SELECT member_key, {number_from_hex('raw_fp')} FROM _ledger_rows")
            con.unregister("_ledger_rows")
    _write_snapshot(con, build, parquet, version_file, current)
    con.execute(f"DROP TABLE {build}")
    ledger.truncate_log(sync, current)
    return _view(con, table, parquet)


def _view(con: duckdb.DuckDBPyConnection, table: str, parquet: Path) -> int:
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT member_key, {from_halves()} AS fp FROM read_parquet('{parquet}')")
    return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def latest_fingerprints(changes: list[tuple[str, str | None]]) -> dict[str, str | None]:
    """Each member's last change (its raw_fp, or None: it left), from ``held_changes_since`` in commit order."""
    return dict(changes)


def _from_snapshot(con: duckdb.DuckDBPyConnection, table: str, parquet: Path, changes: list[tuple[str, str | None]]) -> None:
    latest = latest_fingerprints(changes)
    delta = pa.table({"member_key": pa.array(list(latest), pa.string()), "raw_fp": pa.array(list(latest.values()), pa.string())})
    con.register("_delta", delta)
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT s.member_key, {from_halves()} AS fp FROM read_parquet('{parquet}') s ANTI JOIN _delta d USING (member_key)
            UNION ALL
            SELECT member_key, {number_from_hex('raw_fp')} FROM _delta WHERE raw_fp IS NOT NULL""")
    finally:
        con.unregister("_delta")


def _write_snapshot(con: duckdb.DuckDBPyConnection, table: str, parquet: Path, version_file: Path, version: int) -> None:
    parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = parquet.with_name(f".{parquet.name}.{os.getpid()}.tmp")
    con.execute(f"COPY (SELECT member_key, {halves('fp')} FROM {table}) TO '{tmp}' (FORMAT parquet)")
    # version first as "unknown", then the data, then the version: a crash in between leaves a
    # snapshot that is ignored (no readable version) rather than one that lies
    version_file.unlink(missing_ok=True)
    os.replace(tmp, parquet)
    version_tmp = version_file.with_name(f".{version_file.name}.{os.getpid()}.tmp")
    version_tmp.write_text(str(version))
    os.replace(version_tmp, version_file)


def refresh_snapshot(ledger: Ledger, sync: str, cache_dir: Path, *, memory_limit: str = "1GB") -> None:
    """Bring the snapshot up to date now (after a large change), so the next plan reads it in one scan."""
    con = duckdb.connect(config={"memory_limit": memory_limit})
    try:
        load_held(con, "_held", ledger, sync, cache_dir)
    finally:
        con.close()
