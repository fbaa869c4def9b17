"""The ledger's job book (``syncer.ledger.jobs.LedgerJobBook``), which Customer Match jobs resume from: a
step is resumed until its sync commits a batch or Google's window to run a job closes, never after."""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.base import JobBook
from syncer.ledger.jobs import RESUME_WINDOW_S, LedgerJobBook
from syncer.ledger.store import HeldRow, Ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield store
    store.close()


def commit(ledger: Ledger, sync: str) -> None:
    run = ledger.start_sync_run(ledger.start_run("test"), sync, plan_hash=None, members=1)
    ledger.commit_batch(sync=sync, sync_run_id=run, op="add", landed=[HeldRow("k1", "fp", {"email": "e"})], failed=[],
                        attempts=1, rows=1)


def test_a_step_is_kept_across_ledger_handles_until_its_sync_commits(ledger, tmp_path):
    book: JobBook = ledger.job_book("google")
    assert book.get("vip", "step-1") is None
    book.put("vip", "step-1", job=None, stage="creating", detail={"external_id": 7})
    book.put("vip", "step-1", job="customers/1/offlineUserDataJobs/2", stage="created", detail={"external_id": 7})
    reopened = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")  # another process
    try:
        assert reopened.job_book("google").get("vip", "step-1") == {
            "job": "customers/1/offlineUserDataJobs/2", "stage": "created", "detail": {"external_id": 7}}
        assert reopened.job_book("other").get("vip", "step-1") is None  # steps of one destination only
    finally:
        reopened.close()
    commit(ledger, "other_sync")  # another sync's commit changes nothing here
    assert book.get("vip", "step-1")["stage"] == "created"
    commit(ledger, "vip")  # the batch was committed: the same step now is a new send
    assert book.get("vip", "step-1") is None
    book.put("vip", "step-1", job=None, stage="creating", detail={"external_id": 8})
    assert book.get("vip", "step-1") == {"job": None, "stage": "creating", "detail": {"external_id": 8}}


def test_a_step_is_not_resumed_once_google_would_no_longer_run_its_job(ledger):
    clock = Clock()
    book = LedgerJobBook(ledger, "google", clock=clock)
    book.put("vip", "old", job="customers/1/offlineUserDataJobs/2", stage="created", detail={})
    clock.now += RESUME_WINDOW_S - 1
    assert book.get("vip", "old") is not None
    clock.now += 2
    assert book.get("vip", "old") is None
    assert RESUME_WINDOW_S < 5 * 24 * 3600  # under Google's five days to run a job


def test_a_new_step_prunes_the_steps_of_its_sync_that_cannot_resume(ledger):
    from syncer.ledger.tables import job_steps

    book = ledger.job_book("google")
    book.put("vip", "a", job="j1", stage="running", detail={})
    book.put("other", "a", job="j2", stage="running", detail={})
    commit(ledger, "vip")
    book.put("vip", "b", job=None, stage="creating", detail={})
    book.drop("other", "missing")
    with ledger.engine.connect() as conn:
        assert sorted((r.sync, r.step) for r in conn.execute(job_steps.select())) == [("other", "a"), ("vip", "b")]
    book.drop("vip", "b")
    assert book.get("vip", "b") is None
