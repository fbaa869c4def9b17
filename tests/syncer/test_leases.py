"""A lease per sync: runs that overlap never send for the same sync at once (SQLite and Postgres ledgers).

The ledger-level tests judge a lease with a fake clock, standing in for another machine where only the
expiry tells (``alive=ELSEWHERE``). The overlap tests start real ``syncer run`` processes against one
ledger and the Meta emulator; ``HeldAdds`` keeps the first add request waiting until the other process has
finished or sent its own add, so the first sender is mid-apply, holding its lease, without any timing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from destinations.fake.connector import FakeDestination
from syncer.delivery.conversions import record_conversion
from syncer.delivery.engine import Engine
from syncer.delivery.fast_path import Suppressor
from syncer.delivery.reconcile import Reconciler
from syncer.ledger.leases import Holder, Lease
from syncer.ledger.store import Ledger, suppression_events
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import FAKE, meta_on, person, write_customers, write_project
from tests.syncer.test_engine import FakeClock
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (a fixture: a throwaway PostgreSQL server)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "lease-test-token"
OTHER = Holder("syncer run", "db-host-2", "4026531836/4242/99", run_id=7)  # a run on another machine


def ELSEWHERE(_lease: Lease) -> None:  # noqa: N802 - reads as a place: "judged from elsewhere"
    """How another machine judges a holder: it cannot see the process, only the lease's expiry."""
    return None


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path: Path) -> str:
    """A new, empty ledger: a SQLite file, or a database of its own on the throwaway Postgres server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    server = request.getfixturevalue("postgres_url")
    name = f"leases_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


# --- the lease itself ----------------------------------------------------------------------------------


def test_a_lease_is_renewed_by_its_holder_and_taken_over_only_once_it_expired(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    mine = ledger.acquire_lease("buyers_sync", Holder("syncer run", "web-1", "1/100/5", run_id=3), ttl=60, now=1000.0)
    assert mine.won
    other = ledger.acquire_lease("buyers_sync", OTHER, ttl=60, now=1059.0, alive=ELSEWHERE)
    assert not other.won and other.lease.token == mine.lease.token
    assert other.lease.busy_reason(1059.0).startswith(
        f"syncer run (run 3, pid 100 on web-1) holds this sync since {utc(1000.0)} (lease renewed 59 s ago)")
    renewed = ledger.renew_lease(mine.lease, ttl=60, now=1050.0)
    assert renewed is not None and renewed.expires_at == 1110.0
    assert not ledger.acquire_lease("buyers_sync", OTHER, ttl=60, now=1109.0, alive=ELSEWHERE).won
    taken = ledger.acquire_lease("buyers_sync", OTHER, ttl=60, now=1110.5, alive=ELSEWHERE)
    assert taken.won and taken.took_over is not None and taken.took_over.host == "web-1"
    assert ledger.renew_lease(renewed, ttl=60, now=1111.0) is None  # the stalled holder learns it lost it
    assert not ledger.release_lease(renewed)  # and cannot release the new holder's lease
    assert ledger.lease_of("buyers_sync").host == "db-host-2"
    assert ledger.release_lease(taken.lease) and ledger.lease_of("buyers_sync") is None
    assert ledger.acquire_lease("buyers_sync", OTHER, ttl=60, now=1112.0).won


def test_a_renewal_between_a_read_and_a_take_over_keeps_the_lease(ledger_url: str) -> None:
    """The take-over compares what it read: a holder that renews after another process saw its lease expired
    keeps it (no read-then-write race)."""
    ledger = Ledger(ledger_url)
    held = ledger.acquire_lease("buyers_sync", Holder("syncer run", "web-1", "1/100/5"), ttl=60, now=1000.0).lease
    seen = ledger.lease_of("buyers_sync")  # another process reads it at 1061: expired
    assert ledger.renew_lease(held, ttl=60, now=1061.0) is not None  # the holder wakes and renews
    assert ledger.take_over_lease(seen, OTHER, ttl=60, now=1061.0) is None
    assert ledger.lease_of("buyers_sync").token == held.token


def _race(url: str, n: int, barrier, answers) -> None:
    ledger = Ledger(url)
    barrier.wait()
    answer = ledger.acquire_lease("buyers_sync", Holder(f"racer {n}", f"host-{n}", f"1/{n}/1"), ttl=60)
    answers.put((n, answer.won, answer.lease.label))


def test_of_processes_taking_a_free_lease_at_once_exactly_one_wins(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(4), context.Queue()
    racers = [context.Process(target=_race, args=(ledger_url, n, barrier, answers)) for n in range(4)]
    for racer in racers:
        racer.start()
    results = [answers.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join()
    winners = [n for n, won, _ in results if won]
    assert len(winners) == 1
    assert {label for _, _, label in results} == {f"racer {winners[0]}"}  # every loser names the winner


_HOLD = """
import sys
from syncer.ledger.leases import Holder
from syncer.ledger.store import Ledger
ledger = Ledger(sys.argv[1])
for sync in ("meta_sync", "sms_sync"):
    assert ledger.acquire_lease(sync, Holder.this_process("syncer run", 9), ttl=60).won
print("held", flush=True)
sys.stdin.read()
"""


def test_a_holder_killed_with_kill_9_loses_its_lease_at_expiry_or_at_once_on_its_own_machine(ledger_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, ledger_url], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        ledger = Ledger(ledger_url)
        lease = ledger.lease_of("meta_sync")
        alive = ledger.acquire_lease("meta_sync", OTHER, ttl=60, now=lease.expires_at + 10)
        assert not alive.won  # expired, but its process still runs here: it may still be sending
        assert f"but pid {holder.pid} still runs on this machine" in alive.lease.busy_reason(lease.expires_at + 10, True)
    finally:
        holder.kill()
        holder.wait()
    # seen from another machine, only the expiry tells
    before = ledger.acquire_lease("meta_sync", OTHER, ttl=60, now=lease.expires_at - 1, alive=ELSEWHERE)
    assert not before.won and f"pid {holder.pid} on " in before.lease.busy_reason(lease.expires_at - 1)
    after = ledger.acquire_lease("meta_sync", OTHER, ttl=60, now=lease.expires_at + 0.001, alive=ELSEWHERE)
    assert after.won and after.took_over.pid == str(holder.pid)
    # on this machine the dead holder is seen at once: a recovery run right after the crash proceeds
    dead = ledger.lease_of("sms_sync")
    mine = ledger.acquire_lease("sms_sync", Holder.this_process("syncer run"), ttl=60, now=dead.acquired_at + 1)
    assert mine.won and mine.took_over.pid == str(holder.pid)


# --- the engine under leases (the in-process fake destination) ------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 26)])
    root = write_project(tmp_path, destination=FAKE)
    (root / "destinations" / "other.yml").write_text(FAKE)
    (root / "syncs" / "other_sync.yml").write_text('segment: buyers\ndestination: other\naudience_id: "1002"\n'
                                                    "identifiers: [email]\n")
    return root


def test_a_sync_another_run_holds_is_skipped_naming_it_and_the_other_syncs_go_on(project: Path) -> None:
    clock = FakeClock()
    engine = Engine(load_project(project), clock=clock)
    engine.ledger.acquire_lease("buyers_sync", OTHER, ttl=60, now=clock())
    reports = {r.sync: r for r in engine.run()}
    busy = reports["buyers_sync"]
    assert (busy.status, busy.added, busy.requests) == ("busy", 0, 0)
    assert busy.reason.startswith(f"syncer run (run 7, pid 4242 on db-host-2) holds this sync since {utc(clock())}")
    assert "nothing was sent for it" in busy.reason
    assert (reports["other_sync"].status, reports["other_sync"].added) == ("ok", 25)
    assert "1001" not in FakeDestination.audiences and len(FakeDestination.audiences["1002"]) == 25
    [row] = engine.ledger.history("buyers_sync")
    assert (row["status"], row["reason"]) == ("busy", busy.reason)
    assert engine.replace("buyers_sync").status == "busy"
    [reconciled] = Reconciler(engine).run(["buyers_sync"])
    assert reconciled.status == "busy" and reconciled.reason.endswith("nothing was read or changed: reconcile again once it ends")
    clock.now += 61  # the holder on the other machine stopped renewing: its lease expired
    [after] = Engine(load_project(project), clock=clock).run(["buyers_sync"])
    assert (after.status, after.added) == ("ok", 25) and len(FakeDestination.audiences["1001"]) == 25


def test_a_dagster_backfill_of_a_sync_another_run_holds_sends_nothing_and_says_who(project: Path) -> None:
    import dagster as dg

    from dagster_project.definitions import build_definitions

    Ledger(load_project(project).ledger_url()).acquire_lease("buyers_sync", OTHER, ttl=86_400)
    job = build_definitions(project).resolve_job_def("full_resync")
    result = job.execute_in_process(partition_key="buyers_sync", instance=dg.DagsterInstance.ephemeral())
    assert result.success and "1001" not in FakeDestination.audiences  # a clear skip, not a failed run
    [output] = [e.event_specific_data.metadata for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert output["status"].value == "busy" and "syncer run (run 7, pid 4242 on db-host-2)" in output["note"].value


def test_a_run_told_to_wait_takes_the_sync_once_it_is_free_or_gives_up_naming_the_holder(project: Path) -> None:
    clock = FakeClock()
    start = clock.now

    def sleep(seconds: float) -> None:
        clock.now += seconds

    Ledger(load_project(project).ledger_url()).acquire_lease("buyers_sync", OTHER, ttl=60, now=clock())
    [short] = Engine(load_project(project), clock=clock, sleep=sleep, lease_wait=30).run(["buyers_sync"])
    assert short.status == "busy" and "pid 4242 on db-host-2" in short.reason and clock.now == start + 30
    [waited] = Engine(load_project(project), clock=clock, sleep=sleep, lease_wait=45).run(["buyers_sync"])
    assert (waited.status, waited.added) == ("ok", 25) and clock.now == start + 60  # its lease expired meanwhile


def test_a_run_renews_its_lease_before_each_batch_so_a_long_apply_keeps_it(project: Path) -> None:
    clock = FakeClock()
    engine = Engine(load_project(project), clock=clock, lease_ttl=60, sleep=[].append)
    contender = Ledger(load_project(project).ledger_url())
    answers = []

    def slow_batch(sync: str, op: str, rows: int) -> None:
        clock.now += 45  # each batch of 10 takes 45 s of a 60 s lease
        answers.append(contender.acquire_lease(sync, OTHER, ttl=60, now=clock(), alive=ELSEWHERE).won)

    [report, _] = engine.run(on_batch=slow_batch)
    assert (report.sync, report.status, report.added) == ("buyers_sync", "ok", 25)
    assert answers == [False] * 6  # 3 batches per sync, 135 s each: never taken over


def test_a_run_whose_lease_was_taken_over_sends_no_further_batch(project: Path) -> None:
    clock = FakeClock()
    engine = Engine(load_project(project), clock=clock, lease_ttl=60, sleep=[].append)
    contender = Ledger(load_project(project).ledger_url())

    def stall(sync: str, op: str, rows: int) -> None:
        if len(FakeDestination.calls) == 1:
            clock.now += 61  # the process stopped (Ctrl-Z, a paused VM) past its TTL; another machine took over
            assert contender.acquire_lease(sync, OTHER, ttl=60, now=clock(), alive=ELSEWHERE).won

    [report] = engine.run(["buyers_sync"], on_batch=stall)
    assert report.status == "failed" and len(FakeDestination.calls) == 1
    assert report.reason.startswith("lost the lease of sync 'buyers_sync' to syncer run (run 7, pid 4242 on db-host-2)")
    assert contender.lease_of("buyers_sync").host == "db-host-2"  # the taker's lease stands


# --- the fast path and a batch run of the same sync -----------------------------------------------------


def test_a_conversion_while_its_add_is_in_flight_is_removed_by_that_run(tmp_path: Path, monkeypatch) -> None:
    """Member 15 converts while the batch adding it is at Meta: the fast path waits for the lease (before, it
    found 15 not held, recorded nothing to do, and the batch then added 15, who stayed until the next run);
    the run removes 15 right after that batch, and the fast path's waiting event is settled as removed."""
    from tests.syncer.test_suppress import email_hash, held, rows, write

    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        for audience in ("1", "2", "3"):
            sandbox.meta.create_audience(audience)
        write_customers(tmp_path / "warehouse.duckdb", rows(range(1, 11)))
        root = write(tmp_path, int(sandbox.url.rsplit(":", 1)[1]))
        Engine(load_project(root)).run()
        write_customers(tmp_path / "warehouse.duckdb", rows(range(1, 21)))
        suppressor = Suppressor(load_project(root))
        during: dict[str, str] = {}
        handle = sandbox.meta.handle

        def converts_in_flight(method, path, query, body, content_type):
            if method == "POST" and path.endswith("/1/users") and not during:
                record_conversion(load_project(root), "15")
                during.update(suppressor.step()[0].outcomes)
            return handle(method, path, query, body, content_type)

        sandbox.meta.handle = converts_in_flight
        reports = Engine(load_project(root)).run()
        assert {r.status for r in reports} == {"ok"}
        assert during == {"abandoners_meta": "pending", "lapsed_meta": "pending"}
        assert email_hash(15) not in held(sandbox, "1")  # added, then removed by the same run
        assert email_hash(15) not in held(sandbox, "2") and email_hash(15) in held(sandbox, "3")
        suppressor.step()  # the waiting event of the other sync: 15 was never added there
        suppressor.close()
        with suppressor.ledger.engine.connect() as conn:
            outcomes = dict(conn.execute(sa.select(suppression_events.c.sync, suppression_events.c.outcome)).all())
        assert outcomes == {"abandoners_meta": "removed", "lapsed_meta": "not_held"}
        assert email_hash(15) not in held(sandbox, "1") | held(sandbox, "2")


# --- two real `syncer run` processes at once ------------------------------------------------------------


class HeldAdds:
    """Keeps the first add the Meta emulator receives waiting until ``release()`` or a second add arrives, so
    its sender is mid-apply (holding its lease) for as long as the test needs."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.meta, self._handle = sandbox.meta, sandbox.meta.handle
        self.first, self._open, self._lock, self._adds = threading.Event(), threading.Event(), threading.Lock(), 0
        sandbox.meta.handle = self._held

    def release(self) -> None:
        self._open.set()

    def add_rows(self) -> list[int]:
        """Rows of every add (and remove) request the emulator answered."""
        return [rows for method, path, rows in self.meta.requests if method == "POST" and path.endswith("/users")]

    def _held(self, method, path, query, body, content_type):
        if method == "POST" and path.endswith("/users"):
            with self._lock:
                self._adds += 1
                first = self._adds == 1
            if first:
                self.first.set()
                self._open.wait()
            else:
                self._open.set()  # a second sender: let both through (what the test then catches)
        return self._handle(method, path, query, body, content_type)


def run_at_once(root: Path, gate: HeldAdds, count: int = 2) -> list[tuple[int, int, dict]]:
    """Start ``count`` ``syncer --json run`` at once; the gate opens when the first of them ends. Returns
    (pid, exit code, JSON output) of each."""
    command = [sys.executable, "-m", "syncer.cli", "-p", str(root), "--json", "run"]
    env = {**os.environ, "SANDBOX_META_TOKEN": gate.meta.token}
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    outputs: dict[int, tuple[str, str]] = {}

    def collect(proc: subprocess.Popen) -> None:
        outputs[proc.pid] = proc.communicate(timeout=300)
        gate.release()

    threads = [threading.Thread(target=collect, args=(proc,)) for proc in procs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = []
    for proc in procs:
        out, err = outputs[proc.pid]
        assert out, err
        results.append((proc.pid, proc.returncode, json.loads(out)["syncs"][0]))
    return results


def meta_project(root: Path, sandbox: Sandbox, members: int, ledger_url: str | None = None) -> Path:
    write_customers(root / "warehouse.duckdb", [(i, f"m{i}@example.com", None, "US", None, None, True, True)
                                                for i in range(1, members + 1)])
    write_project(root, destination=meta_on(sandbox.url))
    if ledger_url:
        (root / "syncer.yml").write_text((root / "syncer.yml").read_text() + f"ledger_url: {ledger_url}\n")
    Ledger(load_project(root).ledger_url()).close()  # created once, before the processes race to open it
    return root


def check_one_won(results: list[tuple[int, int, dict]], gate: HeldAdds, sandbox: Sandbox, members: int) -> dict:
    """Every member added exactly once, by the winner; the loser was busy and named the winner. Returns the
    loser's report."""
    assert gate.add_rows() == [members]  # one add request of every member: nobody was sent twice
    assert len(sandbox.meta.members("1001")) == members
    [(winner, _, won)] = [r for r in results if r[2]["status"] == "ok"]
    [(_, code, lost)] = [r for r in results if r[2]["status"] != "ok"]
    assert won["added"] == members
    assert lost["status"] == "busy" and (lost["added"], lost["requests"]) == (0, 0)
    # "(run N, pid P on H)" once the winner recorded its run; in the moment between taking the lease and
    # recording the run (settling, the stale check) the lease names the process only: "(pid P on H)"
    assert lost["reason"].startswith("syncer run (") and f"pid {winner} on " in lost["reason"]
    assert " holds this sync since " in lost["reason"]
    return lost


def test_two_runs_at_once_on_a_postgres_ledger_add_every_member_once(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    database = f"overlap_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/" + database
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        sandbox.meta.create_audience("1001", name="test")
        root = meta_project(tmp_path, sandbox, 300, ledger_url=url)
        gate = HeldAdds(sandbox)
        lost = check_one_won(run_at_once(root, gate), gate, sandbox, 300)
    ledger = Ledger(url)
    assert ledger.held_count("buyers_sync") == 300
    assert sorted(r["status"] for r in ledger.history("buyers_sync")) == ["busy", "ok"]
    assert [r["reason"] for r in ledger.history("buyers_sync") if r["status"] == "busy"] == [lost["reason"]]
    assert ledger.leases() == []  # both released what they held


def test_the_lease_ttl_comes_from_syncer_yml_unless_the_environment_overrides_it(project: Path, monkeypatch) -> None:
    monkeypatch.delenv("SYNCER_LEASE_TTL_S", raising=False)
    assert Engine(load_project(project)).leases.ttl == 60  # the default
    (project / "syncer.yml").write_text((project / "syncer.yml").read_text() + "lease_ttl_seconds: 300\n")
    assert Engine(load_project(project)).leases.ttl == 300
    monkeypatch.setenv("SYNCER_LEASE_TTL_S", "45")
    assert Engine(load_project(project)).leases.ttl == 45
