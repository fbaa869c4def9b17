"""Per-batch ledger writes on SQLite and Postgres: what lands in ``held`` and ``held_log``.

``commit_batch`` writes a 10,000-row batch as a few set-based statements (Postgres) or one executemany
per table (SQLite), with the identifiers JSON built once per batch; these tests pin the stored text,
the log order and the one-row-at-a-time semantics on both databases.
"""

from __future__ import annotations

import json

import pytest

from syncer.ledger.store import HeldRow, Ledger
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (fixture: a real server for this module)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
    else:
        url = request.getfixturevalue("postgres_url")
    ledger = Ledger(url)
    sync = f"s_{request.node.name}".replace("[", "_").replace("]", "")[:100]
    yield ledger, sync, ledger.start_sync_run(ledger.start_run("test"), sync, plan_hash=None, members=None)
    ledger.close()


def commit(ledger: Ledger, sync: str, run: int, op: str, landed=(), failed=()) -> None:
    ledger.commit_batch(sync=sync, sync_run_id=run, op=op, landed=list(landed), failed=list(failed), attempts=1,
                        platform_counts={"num_received": len(landed)}, rows=len(landed) + len(failed))


def stored(ledger: Ledger, sync: str) -> dict[str, tuple[str, str]]:
    with ledger.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT member_key, raw_fp, identifiers FROM held WHERE sync = '{sync}'").all()
    return {k: (fp, text) for k, fp, text in rows}


TRICKY = [
    {"email": "a" * 64, "phone": "b" * 64},
    {"phone": "c" * 64, "email": "d" * 64},  # keys out of order: stored sorted
    {"external_id": 'x"},{"y'},  # the text between two objects, inside a value
    {"city": "São Paulo", "last_name": "Ørsted\\n"},  # non-ASCII and a backslash
    {},
]


def test_identifiers_are_stored_as_sorted_compact_json_and_read_back(ledger):
    ledger, sync, run = ledger
    rows = [HeldRow(f"k{i}", f"{i:032x}", ids) for i, ids in enumerate(TRICKY)]
    commit(ledger, sync, run, "add", rows)
    assert stored(ledger, sync) == {r.member_key: (r.raw_fp, json.dumps(r.identifiers, sort_keys=True, separators=(",", ":")))
                                    for r in rows}
    assert ledger.held_rows(sync, [r.member_key for r in rows]) == {r.member_key: r for r in rows}


def test_a_full_batch_lands_and_leaves_with_one_log_version_each(ledger):
    ledger, sync, run = ledger
    rows = [HeldRow(f"{i:08d}", f"{i:032x}", {"email": f"{i:064x}"}) for i in range(10_000)]
    commit(ledger, sync, run, "add", rows)
    ledger.record_deferred(sync=sync, op="remove", member_keys=[r.member_key for r in rows[:1_500]], reason="deferred: test")
    commit(ledger, sync, run, "remove", rows[:2_500])  # more keys than one IN list holds
    assert ledger.held_count(sync) == 7_500
    assert ledger.pending_keys(sync) == {}
    current, changes = ledger.held_changes_since(sync, 0)
    assert current == 2
    assert changes == [(r.member_key, r.raw_fp) for r in rows] + [(r.member_key, None) for r in rows[:2_500]]
    assert ledger.held_changes_since(sync, 1) == (2, [(r.member_key, None) for r in rows[:2_500]])


def test_a_key_twice_in_one_batch_ends_as_its_last_row_and_is_logged_twice(ledger):
    ledger, sync, run = ledger
    first, again, other = HeldRow("k", "1" * 32, {"email": "a" * 64}), HeldRow("k", "2" * 32, {"email": "b" * 64}), HeldRow("j", "3" * 32, {})
    commit(ledger, sync, run, "add", [first, other, again])
    assert stored(ledger, sync)["k"] == ("2" * 32, '{"email":"' + "b" * 64 + '"}')
    assert ledger.held_changes_since(sync, 0)[1] == [("k", "1" * 32), ("j", "3" * 32), ("k", "2" * 32)]


def test_replaying_a_batch_changes_nothing_but_the_version(ledger):
    ledger, sync, run = ledger
    rows = [HeldRow(f"k{i}", f"{i:032x}", {"email": f"{i:064x}"}) for i in range(50)]
    commit(ledger, sync, run, "add", rows)
    before = stored(ledger, sync)
    commit(ledger, sync, run, "add", rows)  # a rerun after a crash between send and commit
    commit(ledger, sync, run, "refresh", [HeldRow("k0", "f" * 32, {"email": "e" * 64})])
    after = stored(ledger, sync)
    assert {k: v for k, v in after.items() if k != "k0"} == {k: v for k, v in before.items() if k != "k0"}
    assert after["k0"] == ("f" * 32, '{"email":"' + "e" * 64 + '"}')
    assert ledger.state_version(sync) == 3


def test_forget_held_drops_rows_and_logs_them_as_gone(ledger):
    ledger, sync, run = ledger
    rows = [HeldRow(f"k{i:04d}", f"{i:032x}", {"email": f"{i:064x}"}) for i in range(1_000)]
    commit(ledger, sync, run, "add", rows)
    ledger.forget_held(sync, [r.member_key for r in rows[::2]])
    assert set(stored(ledger, sync)) == {r.member_key for r in rows[1::2]}
    assert ledger.held_changes_since(sync, 1) == (2, [(r.member_key, None) for r in rows[::2]])
    ledger.forget_held(sync, [])  # nothing to drop: only the version moves
    assert ledger.held_changes_since(sync, 2) == (3, [])


def test_failed_rows_go_to_outcomes_and_pending_without_touching_held(ledger):
    ledger, sync, run = ledger
    commit(ledger, sync, run, "add", [HeldRow("ok", "0" * 32, {})], failed=[("late", "retryable", "throttled"), ("bad", "rejected", "x")])
    assert set(stored(ledger, sync)) == {"ok"} and ledger.pending_keys(sync) == {"late": "add"}
    commit(ledger, sync, run, "add", [HeldRow("late", "1" * 32, {})])
    assert ledger.pending_keys(sync) == {}
