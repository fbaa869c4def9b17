"""At most one text per member and entry into a segment (Twilio, ``Capabilities.at_most_once``).

- Claims cannot be taken twice: a conditional insert, on SQLite and Postgres, raced by threads and by
  processes.
- A ``kill -9`` of ``syncer run`` in the middle of a batch loses no text: the recovery run texts exactly
  the members the killed run had not texted, none twice.
- Two ``syncer run`` processes overlapping on one ledger (SQLite, Postgres) text each member once.
- A text left in doubt (a timeout, a dead sender) is settled by Twilio's message log: found, it is not
  sent again; not found, it is sent once.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from destinations.twilio.connector import TwilioSmsDestination
from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_FROM
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.at_most_once import FOREIGN_CLAIM_S, process_token
from syncer.delivery.engine import Engine, SyncReport
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import person, write_customers
from tests.destinations.helpers import only_emulator
from tests.destinations.twilio.test_connector import BODY, TOKEN, WED_10_LA, frozen_clock, phone, sandbox, sms_project, texts, wait_for  # noqa: F401  (frozen_clock, sandbox: fixtures; frozen_clock autouse)
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the throwaway server, as a fixture)

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=4, base_wait=0.0, max_wait=60.0, jitter=0.0)
SYNC = "buyers_sync"
SETTLED = "log_settle_s: 0\n"  # the emulator records a text at once: its log may be trusted at once
IN_THE_DAY = 'sandbox_time: "2025-06-11T10:00:00-07:00"\n'  # quiet hours for processes that get no test clock
SECOND = "Second campaign"


# --- the claim store ----------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def fresh_database(server_url: str) -> str:
    """A new database on the throwaway Postgres server: every test starts from an empty ledger."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def claim(ledger: Ledger, key: str, by: str = "p1", **extra):
    return ledger.claim_message(SYNC, key, raw_fp="fp", identifiers={"phone": "+14155550001"}, claimed_by=by, **extra)


def test_a_claim_is_won_once_and_the_loser_sees_the_row(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    first = claim(ledger, "m1", "p1")
    second = claim(ledger, "m1", "p2")
    assert first.won and not second.won and not second.held
    assert (second.claim.state, second.claim.claimed_by, second.claim.attempt) == ("claimed", "p1", 1)
    assert second.claim.identifiers == {"phone": "+14155550001"}
    assert not ledger.settle_claim(_other(second.claim), "sent")  # a claim that is no longer the row's
    assert ledger.settle_claim(first.claim, "not_sent", now=5.0)
    taken = ledger.take_claim(second.claim, claimed_by="p2", raw_fp="fp", identifiers={}, keep_since=False)
    assert taken is None  # read before it was released: another change came first
    released = claim(ledger, "m1", "p2").claim
    assert released.state == "not_sent"
    taken = ledger.take_claim(released, claimed_by="p2", raw_fp="fp2", identifiers={}, keep_since=False)
    assert taken is not None and (taken.claimed_by, taken.attempt, taken.raw_fp) == ("p2", 2, "fp2")
    assert ledger.settle_claim(taken, "sent", message_id="SM1")
    assert ledger.message_claims(SYNC)["m1"].message_id == "SM1" and ledger.message_claims(SYNC)["m1"].state == "sent"
    ledger.close()


def _other(found):
    """The same row as another process would hold it after a take-over it never saw."""
    return dataclasses.replace(found, attempt=found.attempt + 1)


def test_a_take_over_is_won_by_one_of_the_readers_of_the_row(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    won = claim(ledger, "m1").claim
    ledger.settle_claim(won, "not_sent")
    read = claim(ledger, "m1", "reader").claim  # every taker read the same released row
    takers = [Ledger(ledger_url) for _ in range(6)]
    results: list[object] = [None] * len(takers)
    start = threading.Barrier(len(takers))

    def take(i: int) -> None:
        start.wait()
        results[i] = takers[i].take_claim(read, claimed_by=f"t{i}", raw_fp="fp", identifiers={}, keep_since=False)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(takers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and ledger.message_claims(SYNC)["m1"].claimed_by == winners[0].claimed_by
    for other in takers:
        other.close()
    ledger.close()


def test_threads_racing_for_the_same_rows_claim_each_member_exactly_once(ledger_url: str) -> None:
    keys = [f"m{i}" for i in range(60)]
    Ledger(ledger_url).close()  # the schema exists before the race
    won: dict[str, list[str]] = {}
    lock = threading.Lock()
    start = threading.Barrier(6)

    def race(i: int) -> None:
        ledger = Ledger(ledger_url)
        start.wait()
        for key in keys if i % 2 else reversed(keys):
            if claim(ledger, key, f"t{i}").won:
                with lock:
                    won.setdefault(key, []).append(f"t{i}")
        ledger.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(keys) and all(len(who) == 1 for who in won.values()), won
    assert len({w[0] for w in won.values()}) > 1  # they really raced


def _claim_all(url: str, who: str, keys: list[str]) -> list[str]:
    """A process's side of the race: every key it won."""
    ledger = Ledger(url)
    try:
        return [key for key in keys if claim(ledger, key, who).won]
    finally:
        ledger.close()


def test_processes_racing_for_the_same_rows_claim_each_member_exactly_once(ledger_url: str) -> None:
    keys = [f"m{i}" for i in range(150)]
    Ledger(ledger_url).close()
    orders = [keys, keys[::-1], keys[75:] + keys[:75]]
    # an executor, not a Pool: a worker that dies fails the test (BrokenProcessPool) instead of hanging it
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_claim_all, ledger_url, f"p{i}", order) for i, order in enumerate(orders)]
        won = [future.result(timeout=300) for future in futures]
    every = [key for keys_won in won for key in keys_won]
    assert sorted(every) == sorted(keys)  # each member once, none lost
    ledger = Ledger(ledger_url)
    claims = ledger.message_claims(SYNC)
    assert {k: c.claimed_by for k, c in claims.items()} == {k: f"p{i}" for i, ks in enumerate(won) for k in ks}
    ledger.close()


# --- through the engine, against the Twilio emulator --------------------------------------------------

def run(root: Path) -> SyncReport:
    with Engine(load_project(root), policy=FAST, sleep=lambda s: None) as engine:
        reports = engine.run()
        engine.ledger.close()
    return next(r for r in reports if r.sync == SYNC)


def ledger_of(root: Path) -> Ledger:
    return Ledger(load_project(root).ledger_url())


def text_directly(sandbox: Sandbox, number: str, body: str = BODY) -> str:
    """A text that reached Twilio outside this run (the one a killed sender had in flight); its SID."""
    answer = requests.post(f"{sandbox.url_for('twilio')}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
                           data={"To": number, "From": DEFAULT_FROM, "Body": body}, auth=(DEFAULT_ACCOUNT_SID, TOKEN),
                           timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["sid"]


def dead_process() -> str:
    """``claimed_by`` of a process of this machine that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    host, namespace, _, _ = process_token().split("/")
    return f"{host}/{namespace}/{proc.stdout.strip()}/1/99"


def leave_claim(root: Path, key: str, by: str, number: str, *, now: float | None = None) -> None:
    """The claim a sender left on ``key``'s text when it stopped mid-send (nothing else recorded)."""
    ledger = ledger_of(root)
    assert ledger.claim_message(SYNC, key, raw_fp="old", identifiers={"phone": number}, claimed_by=by, now=now).won
    ledger.close()


def test_a_text_in_doubt_after_a_timeout_is_found_in_the_log_and_never_resent(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)], extra="request_timeout_s: 0.5\n" + SETTLED)
    sandbox.twilio.hold_message(1)  # Twilio takes the text but answers after the read timed out
    first = run(tmp_path)
    assert (first.added, first.deferred_reasons) == (0, {"delivery_unknown": 1, "unavailable": 2})
    sandbox.twilio.release()
    wait_for(lambda: len(sandbox.twilio.messages) == 1)
    second = run(tmp_path)
    assert (second.added, second.platform_counts.get("texts_found_in_log"), second.deferred) == (2, 1, 0)
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}
    ledger = ledger_of(tmp_path)
    claims = ledger.message_claims(SYNC)
    assert ledger.held_count(SYNC) == 3 and {c.state for c in claims.values()} == {"sent"}
    assert {c.message_id for c in claims.values()} == {m["sid"] for m in sandbox.twilio.messages}
    ledger.close()
    assert run(tmp_path).added == 0 and len(sandbox.twilio.messages) == 3


def test_a_text_in_doubt_that_never_reached_twilio_is_sent_once(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)], extra="request_timeout_s: 0.5\n" + SETTLED)
    sandbox.twilio.hold_message(1)
    assert run(tmp_path).deferred_reasons == {"delivery_unknown": 1, "unavailable": 2}
    sandbox.twilio.release(deliver=False)  # the request died on its way: Twilio never made the message
    second = run(tmp_path)
    assert (second.added, second.platform_counts.get("texts_found_in_log")) == (3, None)
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


@pytest.mark.parametrize("went_out", [True, False])
def test_a_claim_left_by_a_dead_sender_is_settled_by_the_log(tmp_path: Path, sandbox: Sandbox, went_out: bool) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)], extra=SETTLED)
    leave_claim(tmp_path, "2", dead_process(), phone(2))
    if went_out:
        sid = text_directly(sandbox, phone(2))
    report = run(tmp_path)
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}
    assert (report.added, report.platform_counts.get("texts_found_in_log")) == ((2, 1) if went_out else (3, None))
    ledger = ledger_of(tmp_path)
    settled = ledger.message_claims(SYNC)["2"]
    assert settled.state == "sent" and ledger.held_count(SYNC) == 3
    assert settled.message_id == (sid if went_out else next(m["sid"] for m in sandbox.twilio.messages if m["to"] == phone(2)))
    ledger.close()


def test_a_claim_held_by_a_running_sender_is_left_to_it(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)], extra=SETTLED)
    leave_claim(tmp_path, "2", f"{process_token()}/77", phone(2))  # this very process: it is running
    report = run(tmp_path)
    assert (report.added, report.deferred_reasons) == (2, {"claimed_by_another_run": 1})
    assert texts(sandbox) == {phone(1): 1, phone(3): 1}
    assert sandbox.twilio.request_count == 2  # its log was not read either: the text is in flight elsewhere
    ledger = ledger_of(tmp_path)
    assert ledger.settle_claim(ledger.message_claims(SYNC)["2"], "not_sent")  # its sender gives it back
    ledger.close()
    assert run(tmp_path).added == 1
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


def test_a_claim_from_another_machine_waits_until_it_is_presumed_abandoned(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(1), person(2)], extra=SETTLED)
    leave_claim(tmp_path, "1", "another-host/4026531836/4242/5151/3", phone(1))
    assert run(tmp_path).deferred_reasons == {"claimed_by_another_run": 1}
    assert texts(sandbox) == {phone(2): 1}
    ledger = ledger_of(tmp_path)
    ledger.settle_claim(ledger.message_claims(SYNC)["1"], "not_sent")
    ledger.close()
    ledger = ledger_of(tmp_path)  # the same machine takes it again, and goes quiet for more than an hour
    stale = ledger.take_claim(ledger.message_claims(SYNC)["1"], claimed_by="another-host/4026531836/4242/5151/3",
                              raw_fp="old", identifiers={"phone": phone(1)}, keep_since=False,
                              now=time.time() - FOREIGN_CLAIM_S - 60)
    assert stale is not None
    ledger.close()
    assert run(tmp_path).added == 1  # the log shows nothing since that claim: sent now
    assert texts(sandbox) == {phone(1): 1, phone(2): 1}


def test_a_sender_stopped_between_held_and_settled_does_not_cost_a_later_entry_its_text(tmp_path: Path,
                                                                                           sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(1), person(2)], extra=SETTLED)
    assert run(tmp_path).added == 2
    ledger = ledger_of(tmp_path)  # member 1 held, its claim never settled: the sender died between the two
    unsettled = ledger.take_claim(ledger.message_claims(SYNC)["1"], claimed_by=dead_process(), raw_fp="x",
                                  identifiers={"phone": phone(1)}, keep_since=True)
    assert unsettled is not None
    ledger.close()
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2), person(3)])
    assert run(tmp_path).added == 1  # the next run with texts to send settles it
    ledger = ledger_of(tmp_path)
    assert ledger.message_claims(SYNC)["1"].state == "sent"
    ledger.close()
    write_customers(tmp_path / "warehouse.duckdb", [person(1, in_segment=False), person(2), person(3)])
    run(tmp_path)
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2), person(3)])
    assert run(tmp_path).added == 1  # a new entry: a new text
    assert texts(sandbox) == {phone(1): 2, phone(2): 1, phone(3): 1}


def test_held_follows_the_texts_and_a_changed_number_is_not_texted_again(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(1), person(2), person(3)], extra=SETTLED)
    sandbox.twilio.opt_out(phone(3))
    report = run(tmp_path)
    assert (report.added, report.reasons) == (2, {"opted_out": 1})
    ledger = ledger_of(tmp_path)
    claims = ledger.message_claims(SYNC)
    assert ledger.held_count(SYNC) == 2 and {k: c.state for k, c in claims.items()} == {"1": "sent", "2": "sent", "3": "not_sent"}
    ledger.close()
    write_customers(tmp_path / "warehouse.duckdb", [person(1, phone="+1 415 555 0101"), person(2), person(3)])
    assert run(tmp_path).added == 0  # still in the segment: a refresh, never a second text
    assert texts(sandbox) == {phone(1): 1, phone(2): 1}


# --- real processes: kill -9, and two runs at once -----------------------------------------------------

def syncer(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(root), *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def with_ledger(root: Path, url: str) -> None:
    config = root / "syncer.yml"
    config.write_text(config.read_text() + f"ledger_url: {url}\n")


@pytest.mark.parametrize("in_flight", ["delivered", "lost"])
def test_kill_9_after_20_of_50_texts_then_recovery_texts_exactly_the_other_30(tmp_path: Path, sandbox: Sandbox,
                                                                             in_flight: str) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 51)], extra=SETTLED + IN_THE_DAY)
    sandbox.twilio.hold_message(21)  # the 21st text is in flight when the run dies
    proc = syncer(tmp_path, "run")
    try:
        assert sandbox.twilio.holding.wait(timeout=60), "the run never reached its 21st text"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    sandbox.twilio.release(deliver=in_flight == "delivered")
    wait_for(lambda: len(sandbox.twilio.messages) == (21 if in_flight == "delivered" else 20))
    before = {m["to"] for m in sandbox.twilio.messages}
    code, output = finish(syncer(tmp_path, "--json", "run"))
    assert code == 0, output
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 51)}  # everyone once: none lost, none twice
    recovered = [m["to"] for m in sandbox.twilio.messages if m["to"] not in before]
    assert sorted(recovered) == sorted({phone(i) for i in range(1, 51)} - before)
    ledger = ledger_of(tmp_path)
    assert ledger.held_count(SYNC) == 50 and {c.state for c in ledger.message_claims(SYNC).values()} == {"sent"}
    ledger.close()


def overlapping_runs(root: Path, sandbox: Sandbox) -> None:
    """Two ``syncer run`` on one ledger: the first holds its first text in flight while the second plans and
    applies the same syncs (first 'a_first', then 'buyers_sync'), then the first goes on."""
    (root / "syncs" / "a_first.yml").write_text(
        "segment: buyers\ndestination: dest\naudience_id: '2002'\nidentifiers: [phone]\nmode: trigger\n")
    sandbox.twilio.hold_message(1)
    first = syncer(root, "run")
    if not sandbox.twilio.holding.wait(timeout=60):
        first.kill()
        pytest.fail(f"the first run (pid {first.pid}) never sent: {finish(first)[1][-2000:]}")
    second = syncer(root, "run")
    try:
        code, output = finish(second, timeout=90)
        assert code in (0, 5), output  # 5: the first run's lease kept it off the syncs (claims are the second line)
    finally:
        sandbox.twilio.release()
        code, output = finish(first)
    assert code == 0, output


def assert_each_member_texted_once_per_campaign(sandbox: Sandbox, members: range) -> None:
    for body in (BODY, SECOND):
        counts: dict[str, int] = {}
        for message in sandbox.twilio.messages:
            if message["body"] == body:
                counts[message["to"]] = counts.get(message["to"], 0) + 1
        assert counts == {phone(i): 1 for i in members}, (body, counts)


def test_two_overlapping_runs_on_sqlite_text_each_member_once(tmp_path: Path, sandbox: Sandbox) -> None:
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 21)], extra=SETTLED + IN_THE_DAY)
    overlapping_runs(tmp_path, sandbox)
    assert_each_member_texted_once_per_campaign(sandbox, range(1, 21))


def test_two_overlapping_runs_on_postgres_text_each_member_once(tmp_path: Path, sandbox: Sandbox,
                                                                postgres_url: str) -> None:  # noqa: F811
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 21)], extra=SETTLED + IN_THE_DAY)
    with_ledger(tmp_path, fresh_database(postgres_url))
    overlapping_runs(tmp_path, sandbox)
    assert_each_member_texted_once_per_campaign(sandbox, range(1, 21))
