"""A batch sent and never recorded (the process killed between the platform's answer and the ledger's
commit) is settled by the next process that holds the sync's lease: sent again as it was and recorded,
so a member who changed in between (converted, left, came back) still ends up right on the platform.

Found by ``bench/soak.py``: before the write-ahead record, seed 3 ended with 40 members the ledger held
missing on Meta, and seed 1 with a converter left in the audience. Each test kills the process at that
moment (``_Crash`` from the commit) and checks the strict Meta emulator, as a user reading the audience
would."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from syncer.delivery.apply import RetryPolicy
from syncer.delivery.conversions import record_conversion
from syncer.delivery.engine import Engine
from syncer.delivery.fast_path import Suppressor
from syncer.ledger.store import Ledger, runs, sync_runs
from syncer.ledger.tables import batch_intents
from syncer.project.project import load_project
from tests.conftest import write_customers
from tests.syncer.test_suppress import email_hash, held, rows, setup  # noqa: F401  (setup: members 1-10 synced)

SYNC = "abandoners_meta"  # audience "1", segment "abandoners" (every row with in_segment)


class _Crash(BaseException):
    """The process dies: nothing after this point runs."""


def killed_after_send(root: Path, monkeypatch, op: str) -> None:
    """A run of ``SYNC`` killed once its first ``op`` batch was answered, before the ledger recorded it."""
    original = Ledger.commit_batch

    def commit_batch(self, **kwargs):
        if kwargs["op"] == op:
            raise _Crash(op)
        return original(self, **kwargs)

    monkeypatch.setattr(Ledger, "commit_batch", commit_batch)
    engine = Engine(load_project(root))
    with pytest.raises(_Crash):
        engine.run([SYNC])
    engine.close()  # its lease goes with it, as a dead process's does once its holder is found gone
    monkeypatch.setattr(Ledger, "commit_batch", original)


def ledger_holds(root: Path) -> set[str]:
    return set(Ledger(load_project(root).ledger_url()).held_fingerprints(SYNC)[0])


def test_an_add_that_landed_unrecorded_is_removed_when_the_member_converts_before_the_next_run(setup, monkeypatch) -> None:
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 12)))  # 11 joins
    killed_after_send(root, monkeypatch, "add")
    assert email_hash(11) in held(sandbox, "1")  # it landed; the ledger never heard
    # the follower records the conversion while another run holds the sync (so it leaves the remove to it)
    Ledger(load_project(root).ledger_url()).suppress("11", ["abandoners", "lapsed"], "purchase", None)
    reports = Engine(load_project(root)).run([SYNC])
    assert [r.status for r in reports] == ["ok"]
    assert email_hash(11) not in held(sandbox, "1")  # before: left in the audience for good
    assert held(sandbox, "1") == {email_hash(i) for i in range(1, 11)} and ledger_holds(root) == {str(i) for i in range(1, 11)}


def test_an_add_that_landed_unrecorded_is_removed_when_the_member_leaves_before_the_next_run(setup, monkeypatch) -> None:
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 12)))
    killed_after_send(root, monkeypatch, "add")
    write_customers(root / "warehouse.duckdb", rows(range(1, 11)))  # 11 leaves again
    [report] = Engine(load_project(root)).run([SYNC])
    assert (report.status, report.settled, report.removed) == ("ok", 1, 1)
    assert held(sandbox, "1") == {email_hash(i) for i in range(1, 11)}
    assert ledger_holds(root) == {str(i) for i in range(1, 11)}


def test_a_remove_that_landed_unrecorded_is_undone_when_the_member_comes_back(setup, monkeypatch) -> None:
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 10)))  # 10 leaves
    killed_after_send(root, monkeypatch, "remove")
    assert email_hash(10) not in held(sandbox, "1") and "10" in ledger_holds(root)
    write_customers(root / "warehouse.duckdb", rows(range(1, 11)))  # and comes back before the next run
    [report] = Engine(load_project(root)).run([SYNC])
    assert report.status == "ok"
    assert email_hash(10) in held(sandbox, "1")  # before: the ledger held 10, so nothing was sent
    assert ledger_holds(root) == {str(i) for i in range(1, 11)}


def test_the_fast_path_settles_the_batch_and_removes_a_converter_at_once(setup, monkeypatch) -> None:
    """No batch run needed: the follower holds the sync's lease for its remove and settles first."""
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 12)))
    killed_after_send(root, monkeypatch, "add")
    record_conversion(load_project(root), "11")
    with Suppressor(load_project(root)) as suppressor:
        [result] = suppressor.step()
    assert result.outcomes[SYNC] == "removed"  # before: "not_held", and 11 stayed until a batch run
    assert email_hash(11) not in held(sandbox, "1")


def test_history_shows_the_settle_and_no_batch_stays_open(setup, monkeypatch) -> None:
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 12)))
    killed_after_send(root, monkeypatch, "add")
    [report] = Engine(load_project(root)).run([SYNC])
    assert (report.added, report.settled) == (1, 1)
    ledger = Ledger(load_project(root).ledger_url())
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batch_intents)).scalar() == 0
        [(reason, added)] = conn.execute(sa.select(sync_runs.c.reason, sync_runs.c.added).join(
            runs, runs.c.id == sync_runs.c.run_id).where(runs.c.command == "settle")).all()
    assert added == 1 and "settled 1 batch(es) an interrupted run left unrecorded: 1 row(s) sent again" in reason


def test_a_settle_the_platform_refuses_for_now_sends_nothing_else_for_the_sync(setup, monkeypatch) -> None:
    root, sandbox = setup
    write_customers(root / "warehouse.duckdb", rows(range(1, 12)))
    killed_after_send(root, monkeypatch, "add")
    write_customers(root / "warehouse.duckdb", rows(range(1, 13)))  # 12 joins too
    sandbox.meta.inject_http(503, times=RetryPolicy().attempts)  # every attempt of the settle
    [report] = Engine(load_project(root), sleep=lambda s: None).run([SYNC])
    assert report.status == "partial" and "could not be sent again" in report.reason
    assert email_hash(12) not in held(sandbox, "1")  # not planned against a ledger that misses a batch
    [later] = Engine(load_project(root)).run([SYNC])
    assert (later.status, later.settled, later.added) == ("ok", 1, 2)
    assert held(sandbox, "1") == {email_hash(i) for i in range(1, 13)}
