"""TwilioSmsDestination: at most one text per segment entry, never in quiet hours, never after STOP.

Most tests run the whole engine (diff, ledger, at-most-once apply) against the Twilio emulator over real
HTTP, with the connector's clock frozen through ``TwilioSmsDestination.clock``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from destinations.base import AudienceRef, Member, RowOutcome, RowStatus
from destinations.registry import SPECS, build_destination
from destinations.responses import PlatformResponse
from destinations.twilio.config import CAPABILITIES, TwilioSmsConfig
from destinations.twilio.connector import (
    DeliveryUnknown,
    RecipientRefused,
    TwilioSmsDestination,
    opt_out_key,
    record_opt_in,
    record_opt_out,
)
from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_FROM
from destinations.twilio.quiet_hours import in_quiet_hours
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.engine import Engine, SyncReport
from syncer.errors import ConfigError, RateLimited, TransientError
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from syncer.sandbox import server as sandbox_server
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import only_emulator, read_consent_as_sms

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "twilio-test-token"
BODY = "Your cart misses you. Reply STOP to opt out."
FAST = RetryPolicy(attempts=4, base_wait=0.0, max_wait=60.0, jitter=0.0)
LA, CHICAGO = ZoneInfo("America/Los_Angeles"), ZoneInfo("America/Chicago")
WED_10_LA = datetime(2025, 6, 11, 10, 0, tzinfo=LA)
WED_22_LA = datetime(2025, 6, 11, 22, 0, tzinfo=LA)
AUDIENCE = AudienceRef("cart", "1001")


def phone(i: int, area: str = "415") -> str:
    return f"+1{area}555{i:04d}"


@pytest.fixture(autouse=True)
def frozen_clock():
    TwilioSmsDestination.clock = lambda: WED_10_LA
    yield
    TwilioSmsDestination.clock = None


@pytest.fixture
def sandbox(monkeypatch):
    only_emulator(monkeypatch, "twilio")
    monkeypatch.setenv("SANDBOX_TWILIO_KEY", TOKEN)
    monkeypatch.setenv("TWILIO_SID", DEFAULT_ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)
    sb = Sandbox(port=0).start()
    yield sb
    sb.twilio.release()
    sb.stop()


def destination_yaml(sandbox: Sandbox, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        type: twilio_sms
        account_sid_env: TWILIO_SID
        auth_token_env: TWILIO_TOKEN
        from_number: "{DEFAULT_FROM}"
        messages:
          "1001": "{BODY}"
          "2002": "Second campaign"
        endpoint: {sandbox.url_for('twilio')}
        """) + textwrap.dedent(extra)


def sms_project(root: Path, sandbox: Sandbox, rows: list[tuple], extra: str = "") -> Path:
    """The conftest project as a trigger sync on phones, its consent column read as SMS consent."""
    write_customers(root / "warehouse.duckdb", rows)
    write_project(root, destination=destination_yaml(sandbox, extra), sync_extra="mode: trigger\n", identifiers="[phone]")
    read_consent_as_sms(root)
    return root


def run(root: Path, sleeps: list[float] | None = None) -> SyncReport:
    engine = Engine(load_project(root), policy=FAST, sleep=(sleeps if sleeps is not None else []).append)
    try:
        [report] = engine.run()
        return report
    finally:
        engine.close()
        engine.ledger.close()


def run_second_campaign(root: Path) -> SyncReport:
    """Add a second trigger sync on the same destination (message "2002") and run only that one."""
    (root / "syncs" / "second.yml").write_text(
        "segment: buyers\ndestination: dest\naudience_id: '2002'\nidentifiers: [phone]\nmode: trigger\n")
    engine = Engine(load_project(root), policy=FAST, sleep=lambda s: None)
    try:
        [report] = engine.run(["second"])
        return report
    finally:
        engine.close()


def texts(sandbox: Sandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in sandbox.twilio.messages:
        counts[message["to"]] = counts.get(message["to"], 0) + 1
    return counts


# --- declared shape --------------------------------------------------------------------------------

def test_declares_an_at_most_once_sms_trigger_destination():
    caps = TwilioSmsDestination.capabilities
    assert (caps.channel, caps.can_remove, caps.at_most_once, caps.platform) == ("sms", False, True, "plain")
    assert caps.identifiers == {"phone"} and caps.max_batch == 50 and caps.consent_marker
    assert SPECS["twilio_sms"].connector == "destinations.twilio.connector:TwilioSmsDestination"
    assert SPECS["twilio_sms"].capabilities is CAPABILITIES is caps  # readable without importing the connector
    assert sandbox_server.EMULATORS["twilio"] == "destinations.twilio.emulator:TwilioEmulator"


def test_config_needs_a_sender_and_sane_bodies():
    base = {"type": "twilio_sms", "account_sid_env": "A", "auth_token_env": "B", "messages": {"x": "hi"}}
    with pytest.raises(ValueError, match="from_number"):
        TwilioSmsConfig(**base)
    with pytest.raises(ValueError, match="1600"):
        TwilioSmsConfig(**base | {"from_number": DEFAULT_FROM, "messages": {"x": "a" * 1601}})


def test_sandbox_time_is_refused_for_twilios_own_api(monkeypatch):
    base = {"type": "twilio_sms", "account_sid_env": "TWILIO_SID", "auth_token_env": "TWILIO_TOKEN",
            "from_number": DEFAULT_FROM, "messages": {"1001": BODY}, "sandbox_time": "2025-06-11T10:00:00-07:00"}
    for endpoint in (None, "https://api.twilio.com"):
        with pytest.raises(ValueError, match="sandbox_time"):
            TwilioSmsConfig(**base | {"endpoint": endpoint})
    with pytest.raises(ValueError, match="timezone"):  # a time without an offset says nothing about quiet hours
        TwilioSmsConfig(**base | {"endpoint": "http://127.0.0.1:8510/twilio", "sandbox_time": "2025-06-11T10:00:00"})
    # an endpoint that names Twilio only once its variables are expanded is refused when the connector is built
    monkeypatch.setenv("TWILIO_URL", "https://api.twilio.com")
    monkeypatch.setenv("TWILIO_SID", DEFAULT_ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="sandbox_time"):
        build_destination("dest", TwilioSmsConfig(**base | {"endpoint": "${TWILIO_URL}"}))


# --- through the engine ----------------------------------------------------------------------------

def test_each_member_is_texted_once_and_reruns_send_nothing(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)] + [person(4, ads_consent=None), person(5, ads_consent=False)])
    report = run(tmp_path)
    assert (report.status, report.added) == ("ok", 3)
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}  # no consent, no text
    assert {m["body"] for m in sandbox.twilio.messages} == {BODY}
    for _ in range(2):
        assert run(tmp_path).added == 0
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)} and sandbox.twilio.request_count == 3


def test_unknown_consent_is_never_texted_even_when_the_sync_lets_it_through(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(1), person(2, ads_consent=None)])
    with (tmp_path / "syncs" / "buyers_sync.yml").open("a") as sync:
        sync.write("send_unknown_consent: true\n")
    report = run(tmp_path)
    assert (report.added, report.reasons) == (1, {"no_consent": 1})
    assert texts(sandbox) == {phone(1): 1} and sandbox.twilio.attempted == [phone(1)]


def test_throttling_after_a_send_waits_as_asked_and_nobody_gets_two(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    sandbox.twilio.fail_message(2, status=429, code=20429, retry_after=5)
    sleeps: list[float] = []
    report = run(tmp_path, sleeps)  # one text per call: the throttled one is retried after the wait asked
    assert (report.added, report.deferred, sleeps) == (3, 0, [5.0])
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


def test_a_throttle_longer_than_a_run_waits_after_a_send_leaves_the_rest_and_nobody_gets_two(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    sandbox.twilio.fail_message(2, status=429, code=20429, retry_after=300)  # FAST blocks for 60 s at most
    report = run(tmp_path)
    assert (report.added, report.deferred, report.reasons, report.deferred_reasons) == (1, 2, {}, {"throttled": 2})
    assert texts(sandbox) == {phone(1): 1}
    report = run(tmp_path)  # the next run sends what was held back, and only that
    assert report.added == 2
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


def test_throttling_before_any_send_is_retried_in_the_run_with_the_wait_asked(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    sandbox.twilio.fail_message(1, status=429, code=20429, retry_after=4)
    sleeps: list[float] = []
    report = run(tmp_path, sleeps)
    assert (report.added, sleeps) == (3, [4.0])
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


def test_a_timeout_is_never_resent_while_twilios_log_cannot_tell(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)], extra="request_timeout_s: 0.5\n")
    sandbox.twilio.hold_message(1)  # Twilio takes the request but answers too late
    report = run(tmp_path)
    assert (report.added, report.deferred) == (0, 3)
    assert (report.reasons, report.deferred_reasons) == ({}, {"delivery_unknown": 1, "unavailable": 2})
    sandbox.twilio.release()
    wait_for(lambda: len(sandbox.twilio.messages) == 1)  # the text did go out
    report = run(tmp_path)  # within log_settle_s of the claim: the text in doubt waits, the others go
    assert (report.added, report.deferred_reasons) == (2, {"delivery_unknown": 1})
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}
    assert sandbox.twilio.request_count == 3  # the log was not even read


@pytest.mark.parametrize("in_flight", [1, 2])
def test_kill_9_mid_batch_never_texts_anyone_twice(tmp_path, sandbox, in_flight):
    """Kill the engine while send number ``in_flight`` is held inside Twilio, then let that send land."""
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 5)])
    sandbox.twilio.hold_message(in_flight)
    script = tmp_path / "run_engine.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from datetime import datetime
        from zoneinfo import ZoneInfo
        from destinations.twilio.connector import TwilioSmsDestination
        from syncer.delivery.engine import Engine
        from syncer.project.project import load_project
        TwilioSmsDestination.clock = lambda: datetime(2025, 6, 11, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
        Engine(load_project(sys.argv[1]), sleep=lambda s: None).run()
        """))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert sandbox.twilio.holding.wait(timeout=20), "the engine never reached the held send"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    sandbox.twilio.release()
    wait_for(lambda: len(sandbox.twilio.messages) == in_flight)  # the in-flight text reached the person
    for _ in range(2):
        run(tmp_path)
    counts = texts(sandbox)
    assert all(n == 1 for n in counts.values()), counts
    assert {phone(i) for i in range(1, in_flight + 1)} <= set(counts)


def test_leaving_then_re_entering_texts_again(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(1), person(2)])
    run(tmp_path)
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2, in_segment=False)])
    assert run(tmp_path).added == 0
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2)])
    report = run(tmp_path)
    assert report.added == 1
    assert texts(sandbox) == {phone(1): 1, phone(2): 2}


def test_never_in_quiet_hours_and_the_next_run_sends(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    TwilioSmsDestination.clock = lambda: WED_22_LA
    report = run(tmp_path)
    assert (report.added, report.deferred, report.reasons, report.deferred_reasons) == (0, 3, {}, {"quiet_hours": 3})
    assert sandbox.twilio.request_count == 0
    TwilioSmsDestination.clock = lambda: WED_10_LA
    assert run(tmp_path).added == 3
    assert texts(sandbox) == {phone(i): 1 for i in range(1, 4)}


def test_texas_waits_until_sunday_noon_while_california_is_texted(tmp_path, sandbox):
    rows = [person(1), person(2, phone="+1 512 555 0002"), person(3, phone="+1 915 555 0003")]  # CA, Austin, El Paso
    sms_project(tmp_path, sandbox, rows)
    TwilioSmsDestination.clock = lambda: datetime(2025, 6, 15, 10, 0, tzinfo=CHICAGO)  # Sunday; 08:00 in California
    report = run(tmp_path)
    assert (report.added, report.reasons, report.deferred_reasons) == (1, {}, {"quiet_hours": 2})
    assert texts(sandbox) == {phone(1): 1}
    TwilioSmsDestination.clock = lambda: datetime(2025, 6, 15, 12, 30, tzinfo=CHICAGO)  # 11:30 in El Paso
    assert run(tmp_path).added == 1
    TwilioSmsDestination.clock = lambda: datetime(2025, 6, 15, 13, 0, tzinfo=CHICAGO)
    assert run(tmp_path).added == 1
    assert texts(sandbox) == {phone(1): 1, "+15125550002": 1, "+19155550003": 1}


def test_an_opted_out_number_is_rejected_remembered_and_never_tried_again(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    sandbox.twilio.opt_out(phone(2))  # they texted STOP to the sender
    report = run(tmp_path)
    assert (report.added, report.rejected, report.reasons) == (2, 1, {"opted_out": 1})
    assert sandbox.twilio.attempted == [phone(1), phone(2), phone(3)]
    ledger = Ledger(load_project(tmp_path).ledger_url())
    assert ledger.id_cache("dest").get_many([opt_out_key(phone(2))]) == {opt_out_key(phone(2)): "opted_out"}
    ledger.close()
    # a second campaign on the same account: the opted-out number is not even attempted
    report = run_second_campaign(tmp_path)
    assert (report.added, report.reasons) == (2, {"opted_out": 1})
    assert sandbox.twilio.attempted[3:] == [phone(1), phone(3)]


def test_a_recorded_stop_is_honoured_without_asking_twilio_and_start_lifts_it(tmp_path, sandbox):
    sms_project(tmp_path, sandbox, [person(1), person(2)])
    ledger = Ledger(load_project(tmp_path).ledger_url())
    record_opt_out(ledger, "dest", "+1 (415) 555-0001")  # as an inbound-STOP webhook handler would
    report = run(tmp_path)
    assert (report.added, report.reasons) == (1, {"opted_out": 1})
    assert sandbox.twilio.attempted == [phone(2)]
    record_opt_in(ledger, "dest", phone(1))
    ledger.close()
    report = run_second_campaign(tmp_path)
    assert report.added == 2


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- the connector alone -----------------------------------------------------------------------------

@pytest.fixture
def dest(sandbox, opened):
    config = TwilioSmsConfig(type="twilio_sms", account_sid_env="TWILIO_SID", auth_token_env="TWILIO_TOKEN",
                             from_number=DEFAULT_FROM, messages={"1001": BODY}, endpoint=sandbox.url_for("twilio"))
    return opened(TwilioSmsDestination(config, name="dest", now=lambda: WED_10_LA))


def members(*numbers: int) -> list[Member]:
    return [Member(f"k{i}", {"phone": phone(i)}) for i in numbers]


def test_a_remove_makes_no_call_and_answers_sent(sandbox, dest):
    result = dest.remove(AUDIENCE, members(1, 2))
    assert (result.outcomes, result.requests) == ((RowOutcome("k1", RowStatus.SENT), RowOutcome("k2", RowStatus.SENT)), 0)
    assert sandbox.twilio.request_count == 0


def test_sandbox_time_decides_quiet_hours_when_no_clock_is_given(sandbox, opened):
    TwilioSmsDestination.clock = None  # the autouse frozen clock would win
    config = TwilioSmsConfig(type="twilio_sms", account_sid_env="TWILIO_SID", auth_token_env="TWILIO_TOKEN",
                             from_number=DEFAULT_FROM, messages={"1001": BODY}, endpoint=sandbox.url_for("twilio"),
                             sandbox_time=WED_22_LA)
    night = opened(TwilioSmsDestination(config))
    assert night.add(AUDIENCE, members(1)).outcomes == (RowOutcome("k1", RowStatus.RETRYABLE, "quiet_hours"),)
    day = opened(TwilioSmsDestination(config.model_copy(update={"sandbox_time": WED_10_LA})))
    assert day.add(AUDIENCE, members(1)).outcomes == (RowOutcome("k1", RowStatus.SENT),)
    assert sandbox.twilio.request_count == 1


def test_rows_are_screened_locally_before_any_send(sandbox, dest):
    batch = [Member("a", {"phone": phone(1), "_consent": "unknown"}), Member("b", {"phone": "4155550002"}),
             Member("c", {"phone": "+1 415 555 0003"}), Member("d", {}), Member("e", {"phone": phone(5), "_consent": "granted"})]
    result = dest.add(AUDIENCE, batch)
    assert result.outcomes == (RowOutcome("a", RowStatus.REJECTED, "no_consent"), RowOutcome("b", RowStatus.REJECTED, "invalid_phone"),
                               RowOutcome("c", RowStatus.REJECTED, "invalid_phone"), RowOutcome("d", RowStatus.REJECTED, "no_phone"),
                               RowOutcome("e", RowStatus.SENT))
    assert sandbox.twilio.attempted == [phone(5)]


def test_unknown_errors_reject_the_row_and_the_batch_goes_on(sandbox, dest):
    sandbox.twilio.fail_message(1, status=400, code=21699)
    result = dest.add(AUDIENCE, members(1, 2))
    assert result.outcomes == (RowOutcome("k1", RowStatus.REJECTED, "twilio_21699"), RowOutcome("k2", RowStatus.SENT))


def test_an_ambiguous_server_error_is_sent_delivery_unknown_and_halts_the_batch(sandbox, dest):
    sandbox.twilio.fail_message(2, status=500, code=20500)
    result = dest.add(AUDIENCE, members(1, 2, 3))
    assert result.outcomes == (RowOutcome("k1", RowStatus.SENT), RowOutcome("k2", RowStatus.SENT, "delivery_unknown"),
                               RowOutcome("k3", RowStatus.RETRYABLE, "twilio_unavailable"))


def test_whole_call_failures_raise_only_before_anything_went_out(sandbox, dest):
    sandbox.twilio.inject_http(503, times=1)
    with pytest.raises(TransientError):
        dest.add(AUDIENCE, members(1, 2))
    sandbox.twilio.fail_message(1, status=429, code=20429, retry_after=9)
    with pytest.raises(RateLimited) as caught:
        dest.add(AUDIENCE, members(3, 4))
    assert caught.value.retry_after == 9.0
    sandbox.twilio.fail_message(2, status=503, code=20500)
    result = dest.add(AUDIENCE, members(5, 6, 7))
    assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.RETRYABLE, RowStatus.RETRYABLE]
    assert texts(sandbox) == {phone(5): 1}


# --- the message log: did a text in doubt go out? -------------------------------------------------------

@pytest.fixture
def reader(sandbox, opened):
    """The connector with ``log_settle_s: 0``: the log is trusted at once (the emulator records sends at once)."""
    config = TwilioSmsConfig(type="twilio_sms", account_sid_env="TWILIO_SID", auth_token_env="TWILIO_TOKEN",
                             from_number=DEFAULT_FROM, messages={"1001": BODY, "2002": "Second campaign"},
                             endpoint=sandbox.url_for("twilio"), log_settle_s=0)
    return opened(TwilioSmsDestination(config, name="dest", now=lambda: WED_10_LA))


def test_a_sent_text_is_found_in_the_log_by_its_sid(sandbox, reader):
    claimed = time.time()
    assert reader.add(AUDIENCE, members(1)).outcomes == (RowOutcome("k1", RowStatus.SENT),)
    sid = reader.last_message_ids["k1"]
    assert sid.startswith("SM") and reader.find_sent(AUDIENCE, members(1)[0], claimed) == sid
    assert reader.find_sent(AUDIENCE, members(2)[0], claimed) is None  # another number
    assert reader.find_sent(AudienceRef("cart", "2002"), members(1)[0], claimed) is None  # another campaign's body
    assert reader.find_sent(AUDIENCE, Member("k9", {}), claimed) is None  # no number: nothing went out
    sandbox.twilio.messages[0]["at"] -= 7200  # created two hours before the claim: an earlier entry's text
    assert reader.find_sent(AUDIENCE, members(1)[0], claimed) is None
    gets = [r for r in sandbox.twilio.requests if r[0] == "GET"]
    assert len(gets) == 4  # the number-less member made no request


def test_a_text_still_queued_is_found_though_it_has_no_date_sent(sandbox, reader):
    sandbox.twilio.deliver_later = True  # Twilio took it; date_sent comes when it is sent
    claimed = time.time()
    reader.add(AUDIENCE, members(1))
    assert reader.find_sent(AUDIENCE, members(1)[0], claimed) == reader.last_message_ids["k1"]


def test_the_log_is_read_page_by_page(sandbox, reader, monkeypatch):
    from destinations.twilio import message_log

    monkeypatch.setattr(message_log, "LOG_PAGE_SIZE", 3)
    claimed = time.time()
    reader.add(AUDIENCE, members(1))
    ours = reader.last_message_ids["k1"]
    for _ in range(7):  # newer texts of another campaign to the same number come first
        reader.add(AudienceRef("cart", "2002"), members(1))
    before = sandbox.twilio.request_count
    assert reader.find_sent(AUDIENCE, members(1)[0], claimed) == ours
    assert sandbox.twilio.request_count - before == 3  # 3 + 3 + 2 messages, ours on the third page


def test_the_log_is_not_trusted_before_it_settles(sandbox, dest):
    with pytest.raises(TransientError, match="log_settle_s|is read 120 s") as caught:
        dest.find_sent(AUDIENCE, members(1)[0], time.time())
    assert 0 < caught.value.retry_after <= 120 and sandbox.twilio.request_count == 0


def test_an_unreadable_log_cannot_tell(sandbox, reader, monkeypatch):
    sandbox.twilio.inject_http(500, times=1)
    with pytest.raises(TransientError, match="message log") as caught:
        reader.find_sent(AUDIENCE, members(1)[0], time.time())
    assert "+1415" not in caught.value.message and "+1415" not in (caught.value.detail or "")
    monkeypatch.setenv("TWILIO_TOKEN", "wrong")
    config = reader.config
    with pytest.raises(ConfigError, match="TWILIO_TOKEN"):
        TwilioSmsDestination(config, name="dest").find_sent(AUDIENCE, members(1)[0], time.time())


def test_bad_credentials_are_a_config_error_naming_the_env_vars(sandbox, monkeypatch):
    monkeypatch.setenv("TWILIO_TOKEN", "wrong")
    config = TwilioSmsConfig(type="twilio_sms", account_sid_env="TWILIO_SID", auth_token_env="TWILIO_TOKEN",
                             from_number=DEFAULT_FROM, messages={"1001": BODY}, endpoint=sandbox.url_for("twilio"))
    dest = TwilioSmsDestination(config, now=lambda: WED_10_LA)
    for call in (dest.check, lambda: dest.add(AUDIENCE, members(1))):
        with pytest.raises(ConfigError) as caught:
            call()
        assert "TWILIO_TOKEN" in caught.value.message and "wrong" not in caught.value.message
    assert sandbox.twilio.messages == []


def test_a_sender_the_account_does_not_own_is_a_config_error(sandbox, dest):
    sandbox.twilio.numbers = {"+15005550001"}
    with pytest.raises(ConfigError, match="from_number"):
        dest.add(AUDIENCE, members(1))


def test_an_unreachable_endpoint_raises_transient(monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("TWILIO_SID", DEFAULT_ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)
    config = TwilioSmsConfig(type="twilio_sms", account_sid_env="TWILIO_SID", auth_token_env="TWILIO_TOKEN",
                             from_number=DEFAULT_FROM, messages={"1001": BODY}, endpoint=f"http://127.0.0.1:{port}/twilio")
    with pytest.raises(TransientError, match="nothing was sent"):
        TwilioSmsDestination(config, now=lambda: WED_10_LA).add(AUDIENCE, members(1))


def test_a_missing_message_is_a_config_error_before_any_send(sandbox, dest):
    with pytest.raises(ConfigError, match="messages"):
        dest.add(AudienceRef("other", "9999"), members(1))
    assert sandbox.twilio.request_count == 0


def test_an_account_that_is_not_readable_fails_the_check(sandbox, dest):
    sandbox.twilio.inject_http(500, times=1)
    with pytest.raises(ConfigError, match="not active or not readable"):
        dest.check()


@pytest.mark.parametrize(("status", "code", "expected", "reason"), [
    (201, None, None, None),
    (400, 21610, RecipientRefused, "opted_out"),
    (400, 21211, RecipientRefused, "invalid_phone"),
    (400, 21614, RecipientRefused, "not_mobile"),
    (400, 21699, RecipientRefused, "twilio_21699"),     # unknown: a text is not idempotent, never retried
    (418, None, RecipientRefused, "http_418"),
    (400, 20429, RateLimited, None),                    # throttled by code on HTTP 400
    (401, 20003, ConfigError, None),
    (400, 21606, ConfigError, None),                    # a sender the account does not own
    (404, 20404, ConfigError, None),
    (503, 20500, TransientError, None),                 # not taken: nothing was sent
    (500, 20500, DeliveryUnknown, None),                # may have gone out: never resent
    (502, None, DeliveryUnknown, None),
    (504, None, DeliveryUnknown, None),
])
def test_classify_where_twilio_differs_from_the_shared_table(dest, status, code, expected, reason):
    failure = dest.classify(PlatformResponse(status, {"code": code, "message": "m", "status": status} if code else None))
    assert (type(failure) if failure is not None else None) is expected
    if expected is RecipientRefused:
        assert failure.reason == reason
    if expected is ConfigError and status == 401:
        assert "TWILIO_SID" in failure.message and "TWILIO_TOKEN" in failure.message


# --- quiet hours ---------------------------------------------------------------------------------------

def at(day: int, hour: int, minute: int = 0, zone: str = "America/New_York") -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=ZoneInfo(zone))  # June 2025: the 9th is a Monday


@pytest.mark.parametrize(("number", "moment", "quiet"), [
    ("+12125550100", at(9, 7, 59), True),     # New York: federal 08-21
    ("+12125550100", at(9, 8, 0), False),
    ("+12125550100", at(9, 20, 59), False),
    ("+12125550100", at(9, 21, 0), True),
    ("+13055550100", at(9, 19, 59), False),   # Florida: 08-20
    ("+13055550100", at(9, 20, 0), True),
    ("+12015550100", at(9, 20, 30), True),    # New Jersey: 08-20
    ("+14055550100", at(9, 20, 30, "America/Chicago"), True),  # Oklahoma
    ("+12035550100", at(9, 8, 30), True),     # Connecticut: 09-20
    ("+12035550100", at(9, 9, 0), False),
    ("+15125550100", at(14, 9, 30, "America/Chicago"), False),  # Texas Saturday: 09-21
    ("+15125550100", at(15, 11, 59, "America/Chicago"), True),  # Texas Sunday: from noon
    ("+15125550100", at(15, 12, 0, "America/Chicago"), False),
    ("+19155550100", at(15, 12, 30, "America/Chicago"), True),  # El Paso is on Mountain time: 11:30 there
    ("+14015550100", at(9, 17, 30), False),   # Rhode Island weekday: 09-18
    ("+14015550100", at(9, 18, 0), True),
    ("+14015550100", at(14, 17, 30), True),   # Rhode Island weekend: 10-17
    ("+14015550100", at(14, 9, 30), True),
    ("+14155550100", at(9, 23, 30), False),   # 20:30 in California
    ("+442071838750", at(9, 21, 30, "Europe/London"), True),  # any country: its own local time
    ("+18005550100", at(9, 12, 0, "America/Chicago"), True),   # toll-free spans Guam to Newfoundland: strictest
])
def test_quiet_hours_table(number, moment, quiet):
    assert in_quiet_hours(number, moment) is quiet
