"""The Parquet cache of what an audience holds must always agree with the ledger."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from syncer.ledger.store import HeldRow, Ledger
from syncer.planning.snapshot import load_held


def fp(label: str) -> str:
    """A fingerprint as the ledger keeps it (md5 hex) of a short label."""
    return hashlib.md5(label.encode()).hexdigest()


def held(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """What the snapshot table holds, as {member_key: label} (the diff keeps fingerprints as md5_number)."""
    by_number = {int.from_bytes(bytes.fromhex(fp(label)), "little"): label for label in "abcz123"}
    return {k: by_number[n] for k, n in con.sql("SELECT member_key, fp FROM _held").fetchall()}


def commit(ledger: Ledger, op: str, rows: list[tuple[str, str]]) -> None:
    run = ledger.start_sync_run(ledger.start_run("test"), "s", plan_hash=None, members=None)
    ledger.commit_batch(sync="s", sync_run_id=run, op=op, landed=[HeldRow(k, fp(label), {"email": k}) for k, label in rows],
                        failed=[], attempts=1, rows=len(rows))


def test_snapshot_plus_log_equals_the_ledger_after_adds_changes_and_removes(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    cache = tmp_path / "snapshots"
    commit(ledger, "add", [(f"k{i}", "a") for i in range(100)])
    con = duckdb.connect()
    assert load_held(con, "_held", ledger, "s", cache) == 100
    assert (cache / "s.held.version").read_text() == "1"
    commit(ledger, "remove", [("k1", "a"), ("k2", "a")])
    commit(ledger, "add", [("k3", "b"), ("new", "c")])
    commit(ledger, "remove", [("new", "c")])
    commit(ledger, "add", [("k1", "z")])
    assert load_held(con, "_held", ledger, "s", cache) == 99
    expected = {f"k{i}": "a" for i in range(100) if i != 2} | {"k3": "b", "k1": "z"}
    assert held(con) == expected
    assert (cache / "s.held.version").read_text() == "5"
    keys, fps = ledger.held_fingerprints("s")
    assert dict(zip(keys, fps)) == {k: fp(label) for k, label in expected.items()}


def test_a_damaged_or_outdated_snapshot_falls_back_to_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    cache = tmp_path / "snapshots"
    commit(ledger, "add", [("a", "1"), ("b", "2")])
    con = duckdb.connect()
    load_held(con, "_held", ledger, "s", cache)
    (cache / "s.held.parquet").write_bytes(b"not parquet")
    commit(ledger, "add", [("c", "3")])
    assert load_held(con, "_held", ledger, "s", cache) == 3 and held(con) == {"a": "1", "b": "2", "c": "3"}
    (cache / "s.held.version").write_text("0")  # older than the log keeps (the log was truncated at 2)
    assert load_held(con, "_held", ledger, "s", cache) == 3 and held(con) == {"a": "1", "b": "2", "c": "3"}


def test_a_log_longer_than_the_replay_limit_is_read_back_from_held_instead(tmp_path: Path, monkeypatch) -> None:
    import syncer.planning.snapshot

    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    cache = tmp_path / "snapshots"
    con = duckdb.connect()
    load_held(con, "_held", ledger, "s", cache)  # an empty snapshot at version 0, as before an initial sync
    commit(ledger, "add", [(f"k{i}", "a") for i in range(30)])
    commit(ledger, "remove", [("k1", "a")])
    commit(ledger, "add", [("k2", "b")])
    monkeypatch.setattr(syncer.planning.snapshot, "MAX_REPLAY", 5)
    assert ledger.held_changes_since("s", 0, limit=5) is None and ledger.held_changes_since("s", 0) is not None
    assert load_held(con, "_held", ledger, "s", cache) == 29
    assert held(con) == {f"k{i}": "a" for i in range(30) if i != 1} | {"k2": "b"}
    assert (cache / "s.held.version").read_text() == "3"


def log_entries(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM held_log").scalar()


def test_past_the_log_cap_commits_log_nothing_and_the_snapshot_is_rebuilt_from_held(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Ledger, "MAX_LOG", 5)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    cache = tmp_path / "snapshots"
    con = duckdb.connect()
    load_held(con, "_held", ledger, "s", cache)  # a snapshot at version 0
    commit(ledger, "add", [(f"k{i}", "a") for i in range(4)])
    assert log_entries(ledger) == 4
    commit(ledger, "add", [("k4", "b"), ("k5", "b")])  # 6 entries: past the cap
    commit(ledger, "remove", [("k0", "a")])
    assert log_entries(ledger) == 4  # the two commits past the cap wrote none
    assert ledger.held_changes_since("s", 0) is None and ledger.held_changes_since("s", 2) is None
    assert load_held(con, "_held", ledger, "s", cache) == 5
    assert held(con) == {"k1": "a", "k2": "a", "k3": "a", "k4": "b", "k5": "b"}
    assert log_entries(ledger) == 0
    commit(ledger, "add", [("k0", "c")])  # after the snapshot the log starts again, and is replayed
    assert ledger.held_changes_since("s", 3) == (4, [("k0", fp("c"))])
    assert load_held(con, "_held", ledger, "s", cache) == 6 and held(con)["k0"] == "c"


def test_an_apply_larger_than_the_log_cap_logs_nothing_from_its_first_batch(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Ledger, "MAX_LOG", 5)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    cache = tmp_path / "snapshots"
    con = duckdb.connect()
    load_held(con, "_held", ledger, "s", cache)
    ledger.expect_changes("s", 3)  # within the cap: the log is kept
    commit(ledger, "add", [("k0", "a")])
    assert log_entries(ledger) == 1
    ledger.expect_changes("s", 8)
    commit(ledger, "add", [("k1", "a"), ("k2", "a")])
    commit(ledger, "add", [("k3", "b")])
    assert log_entries(ledger) == 1 and ledger.held_changes_since("s", 1) is None
    assert load_held(con, "_held", ledger, "s", cache) == 4
    assert held(con) == {"k0": "a", "k1": "a", "k2": "a", "k3": "b"}
