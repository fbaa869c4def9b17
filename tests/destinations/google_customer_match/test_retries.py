"""A failure or a crash in the middle of a Customer Match batch, through the engine's real apply path: the
retry (or the next run) resumes each job at its recorded stage. Every member's operation ends in exactly
one job that was run, no job is run twice, and the only jobs left behind are the ones ``job_steps`` allows:
one PENDING job, never run, per Add call whose answer was lost.

Faults are injected into the Google Ads emulator at the second consent group's call (the first group's job
already runs by then), before the call is applied or after it (its answer lost, as on a timeout).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from destinations.base import AudienceRef
from destinations.google_customer_match import data_manager
from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator
from syncer.delivery.apply import ApplyReport, RetryPolicy, send_and_commit
from syncer.delivery.engine import Engine
from syncer.ledger.store import Ledger
from syncer.planning.plan import PlannedRow
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.google_customer_match.helpers import CID, DmTarget, sha

MEMBERS = 30  # customers 1-20 consent to ads (one job), 21-30 are unknown (another job)
CREATE, ADD, RUN = "CreateOfflineUserDataJob", "AddOfflineUserDataJobOperations", "RunOfflineUserDataJob"


@pytest.fixture
def ads_project(ads_server: GoogleAdsEmulator, tmp_path: Path) -> Path:
    ads_server.reset()
    ads_server.latency = 0.0
    ads_server.create_user_list(CID, "1001")
    write_customers(tmp_path / "warehouse.duckdb", [person(i, ads_consent=True if i <= 20 else None) for i in range(1, MEMBERS + 1)])
    write_project(tmp_path, destination=f"""\
        type: google_customer_match
        customer_id: "{CID}"
        transport: google_ads_api
        access_token_env: GADS_TOKEN
        developer_token_env: GADS_DEV
        endpoint: {ads_server.endpoint}
        """)
    return tmp_path


def engine_for(root: Path) -> Engine:
    return Engine(load_project(root), policy=RetryPolicy(attempts=4, base_wait=0.0, jitter=0.0), sleep=lambda s: None)


def assert_each_member_ran_once(emulator: GoogleAdsEmulator, engine: Engine, abandoned: int) -> None:
    jobs = emulator.jobs
    run = [name for name, job in jobs.items() if job["run"]]
    ran = Counter(value for name in run for _, ids in emulator.job_operations(name) for kind, value in ids if kind == "hashed_email")
    assert ran == Counter({sha(f"person{i}@example.com"): 1 for i in range(1, MEMBERS + 1)})  # one run job each
    assert sorted(jobs[name]["operations"] for name in run) == [10, 20]  # one job per consent group
    left = [job for job in jobs.values() if not job["run"]]
    assert len(left) == abandoned and all(job["status"] == "PENDING" for job in left)
    assert sorted(job["job"] for job in engine.ledger.jobs()) == sorted(run)  # every run job is polled later
    emulator.finish_jobs()
    assert len(emulator.user_list_members("1001")) == MEMBERS


@pytest.mark.parametrize("method, code, after, abandoned", [
    (CREATE, "INTERNAL", False, 0),
    (CREATE, "DEADLINE_EXCEEDED", True, 0),  # the job was created: found again by its external_id
    (ADD, "RESOURCE_EXHAUSTED", False, 0),  # refused before applying: the same job is filled
    (ADD, "INTERNAL", False, 1),  # unknown outcome: abandoned, never run
    (ADD, "UNAVAILABLE", True, 1),  # the operations are in that job: abandoned, never run
    (RUN, "RESOURCE_EXHAUSTED", False, 0),
    (RUN, "INTERNAL", False, 0),
    (RUN, "DEADLINE_EXCEEDED", True, 0),  # the job runs: the second Run is refused with JOB_ALREADY_STARTED
])
def test_a_failed_call_is_retried_alone(ads_server, ads_project, method, code, after, abandoned):
    ads_server.inject(code, method=method, skip=1, after=after, retry_delay=5)
    engine = engine_for(ads_project)
    try:
        [report] = engine.run()
        assert (report.status, report.added, report.rejected, report.deferred) == ("ok", MEMBERS, 0, 0)
        assert_each_member_ran_once(ads_server, engine, abandoned)
    finally:
        engine.close()


class _Crash(BaseException):
    """The process dies: nothing after this point runs."""


class _CrashingBook:
    """The engine's job book, but the process dies when ``stage`` is about to be recorded the first time:
    the call before it was made and answered, its record never written."""

    def __init__(self, book, stage: str) -> None:
        self.book, self.stage = book, stage

    def get(self, sync, step):
        return self.book.get(sync, step)

    def put(self, sync, step, *, job, stage, detail):
        if stage == self.stage:
            self.stage = ""
            raise _Crash(stage)
        self.book.put(sync, step, job=job, stage=stage, detail=detail)

    def drop(self, sync, step):
        self.book.drop(sync, step)


@pytest.mark.parametrize("crash_before_recording, abandoned", [
    ("created", 0),  # Create landed: the next run finds the job by its external_id
    ("operations_added", 1),  # Add landed: that job is abandoned, never run
    ("running", 0),  # Run landed: the next run's Run is refused as already started
])
def test_a_crash_between_a_call_and_its_record_never_runs_operations_twice(ads_server, ads_project, crash_before_recording, abandoned):
    engine = engine_for(ads_project)
    destination = engine.destination("dest")
    destination.job_book = _CrashingBook(destination.job_book, crash_before_recording)
    with pytest.raises(_Crash):
        engine.run()
    engine.close()
    resumed = engine_for(ads_project)  # a new process over the same ledger
    try:
        [report] = resumed.run()
        assert (report.status, report.added) == ("ok", MEMBERS)
        assert_each_member_ran_once(ads_server, resumed, abandoned)
        [again] = resumed.run()  # nothing left to send
        assert (again.added, again.requests) == (0, 0)
    finally:
        resumed.close()


def test_a_batch_sent_again_after_its_commit_is_a_new_send(ads_server, ads_project):
    """The job book forgets a step once its batch is committed: members removed and added back come back in a
    job with exactly the operations of their first one, and it runs, as it must."""
    engine = engine_for(ads_project)
    try:
        engine.run()
        write_customers(ads_project / "warehouse.duckdb", [person(i, ads_consent=True if i <= 20 else None, in_segment=i <= 20)
                                                           for i in range(1, MEMBERS + 1)])
        assert engine.run()[0].removed == 10
        write_customers(ads_project / "warehouse.duckdb", [person(i, ads_consent=True if i <= 20 else None)
                                                           for i in range(1, MEMBERS + 1)])
        assert engine.run()[0].added == 10
        assert sum(job["run"] for job in ads_server.jobs.values()) == 4  # two adds, one remove, one add again
        ads_server.finish_jobs()
        assert len(ads_server.user_list_members("1001")) == MEMBERS
    finally:
        engine.close()


def test_data_manager_does_not_resend_a_request_google_accepted(sandbox, tmp_path, opened, monkeypatch):
    """A batch goes in two requests; the first lands, the second is throttled. The retry, through the engine's
    send-and-commit step, sends the second only."""
    monkeypatch.setattr(data_manager, "MAX_MEMBERS_PER_REQUEST", 1)
    target = DmTarget(sandbox)
    destination = opened(target.config(), name="dm")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    destination.job_book = ledger.job_book("dm")
    emulator, handle = target.emulator, target.emulator.handle

    def throttle_what_follows_the_first_ingest(request):
        answer = handle(request)
        if request.path.endswith(":ingest") and answer.status == 200:
            monkeypatch.setattr(emulator, "handle", handle)
            emulator.inject_http(429, retry_after=1)
        return answer

    monkeypatch.setattr(emulator, "handle", throttle_what_follows_the_first_ingest)
    rows = [PlannedRow("k1", "fp1", {"email": sha("a@x.com")}), PlannedRow("k2", "fp2", {"email": sha("b@x.com")})]
    sync_run = ledger.start_sync_run(ledger.start_run("test"), "vip_google", plan_hash=None, members=2)
    report = ApplyReport()
    try:
        failed = send_and_commit(destination, ledger, sync="vip_google", sync_run_id=sync_run, audience=AudienceRef("vip_google", "555"),
                                 op="add", rows=rows, policy=RetryPolicy(attempts=3, base_wait=0, jitter=0), report=report,
                                 sleep=lambda s: None)
    finally:
        ledger.close()
    assert failed == [] and report.added == 2 and report.waits == [1.0]
    sent = Counter(m["userData"]["userIdentifiers"][0]["emailAddress"] for b in emulator.bodies for m in b["audienceMembers"])
    assert sent == {sha("a@x.com"): 1, sha("b@x.com"): 1}  # each sent once, although the batch was sent twice
    assert sorted(m["hashed_email"] for m in target.members()) == sorted([sha("a@x.com"), sha("b@x.com")])
    assert destination.jobs == list(dict.fromkeys(destination.jobs)) and len(destination.jobs) == 2  # both request ids, once
