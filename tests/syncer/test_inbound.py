"""`syncer serve`: Twilio's inbound STOP webhooks and signed event posts, through the real ASGI server.

Every request goes through uvicorn on a loopback port (a socket bound before the server starts, so no test
waits for it) with ``requests``. Twilio's signatures are computed here the way Twilio documents them, not with
the code under test; the event signatures likewise. The app's clock is fake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import uvicorn
from click.testing import CliRunner

from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_FROM
from destinations.twilio.opt_outs import opt_out_key
from syncer.cli.main import cli
from syncer.inbound import create_app, event_signature, twilio_signature
from syncer.ledger.inbound import InboundEvent, PostedEvent, events_after, record_events
from syncer.ledger.store import Ledger
from syncer.project.project import InvalidProjectError, load_project
from tests.conftest import person
from tests.destinations.twilio.test_connector import TOKEN, frozen_clock, phone, run, sandbox, sms_project  # noqa: F401  (frozen_clock, sandbox: fixtures)
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the throwaway server, as a fixture)

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_796_000_000.0  # the app's fake clock
SECRET = "event-secret-for-tests"
SERVE = "serve:\n  event_secret_env: SYNCER_EVENT_SECRET\n"


# --- helpers: the project, the server, signing as the senders do ----------------------------------------

@pytest.fixture
def project_dir(tmp_path: Path, sandbox, monkeypatch) -> Path:  # noqa: F811
    monkeypatch.setenv("SYNCER_EVENT_SECRET", SECRET)
    sms_project(tmp_path, sandbox, [person(1), person(2)])
    with (tmp_path / "syncer.yml").open("a") as f:
        f.write(SERVE)
    return tmp_path


@contextmanager
def serving(root: Path, clock=lambda: NOW):
    """The app of the project at ``root`` under uvicorn in a thread; yields its base URL."""
    app = create_app(load_project(root), clock=clock)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def twilio_sign(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's documented recipe: the full URL, then each POST parameter sorted by name as name+value,
    HMAC-SHA1 with the Auth Token, base64."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def inbound(body: str, sender: str = phone(1), **extra: str) -> dict[str, str]:
    """A reply as Twilio posts it to the incoming-message webhook."""
    return {"AccountSid": DEFAULT_ACCOUNT_SID, "MessageSid": "SM" + "1" * 32, "From": sender, "To": DEFAULT_FROM,
            "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01", **extra}


def post_twilio(base: str, params: dict[str, str], *, token: str = TOKEN, signed_url: str | None = None,
                signature: str | None = None) -> requests.Response:
    url = f"{base}/twilio/inbound"
    header = signature if signature is not None else twilio_sign(token, signed_url or url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": header}, timeout=30)


def sign_events(body: bytes, t: float, secret: str = SECRET) -> str:
    return f"t={int(t)},v1=" + hmac.new(secret.encode(), f"{int(t)}.".encode() + body, hashlib.sha256).hexdigest()


def post_events(base: str, document, *, t: float = NOW, secret: str = SECRET) -> requests.Response:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return requests.post(f"{base}/events", data=body, timeout=30,
                         headers={"Content-Type": "application/json", "X-Syncer-Signature": sign_events(body, t, secret)})


def opt_out_state(root: Path, number: str) -> str | None:
    ledger = Ledger(load_project(root).ledger_url())
    try:
        return ledger.id_cache("dest").get_many([opt_out_key(number)]).get(opt_out_key(number))
    finally:
        ledger.close()


def stored_events(root: Path) -> list[InboundEvent]:
    ledger = Ledger(load_project(root).ledger_url())
    try:
        return events_after(ledger, None, 100)
    finally:
        ledger.close()


# --- signatures ------------------------------------------------------------------------------------------

def test_twilio_signature_matches_twilios_published_example():
    # the example of Twilio's security docs, as twilio-python's RequestValidator tests it
    params = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"), ("To", "+18005551212"),
              ("Caller", "+14158675309")]
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_event_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"events": []}'
    assert event_signature(SECRET, body, 1_700_000_000) == sign_events(body, 1_700_000_000)


# --- Twilio's inbound webhook ------------------------------------------------------------------------------

def test_a_signed_stop_opts_the_phone_out_and_the_next_sync_never_asks_twilio(project_dir: Path, sandbox):  # noqa: F811
    with serving(project_dir) as base:
        answer = post_twilio(base, inbound("  Stop "))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert opt_out_state(project_dir, phone(1)) == "opted_out"
    report = run(project_dir)
    assert (report.added, report.rejected, report.reasons) == (1, 1, {"opted_out": 1})
    assert sandbox.twilio.attempted == [phone(2)]  # the opted-out phone never reached Twilio


def test_a_badly_signed_stop_is_refused_and_logged_without_the_phone(project_dir: Path, caplog):
    caplog.set_level(logging.INFO, logger="syncer.inbound")
    params = inbound("STOP")
    forged = twilio_sign("not-the-auth-token", "http://127.0.0.1/twilio/inbound", params)
    with serving(project_dir) as base:
        bad = post_twilio(base, params, signature=forged)
        unsigned = requests.post(f"{base}/twilio/inbound", data=params, timeout=30)
        tampered = post_twilio(base, params, signature=twilio_sign(TOKEN, f"{base}/twilio/inbound", inbound("STOP", phone(2))))
    assert (bad.status_code, unsigned.status_code, tampered.status_code) == (403, 403, 403)
    assert opt_out_state(project_dir, phone(1)) is None
    refusals = [r.getMessage() for r in caplog.records if r.name == "syncer.inbound"]
    assert len(refusals) == 3 and all("refused POST /twilio/inbound (403)" in line for line in refusals)
    assert all("127.0.0.1" in line for line in refusals)
    digits = phone(1)[2:]
    for line in refusals:
        assert digits not in line and "STOP" not in line and forged not in line


@pytest.mark.parametrize("body, expected", [
    ("STOP", "opted_out"), ("stopall", "opted_out"), ("Unsubscribe", "opted_out"), ("cancel", "opted_out"),
    ("END", "opted_out"), ("quit", "opted_out"), ("REVOKE", "opted_out"), ("optout", "opted_out"),
    ("STOP PLEASE", None), ("opt out", None), ("thanks!", None),
])
def test_twilios_opt_out_keywords_and_only_them(project_dir: Path, body: str, expected: str | None):
    with serving(project_dir) as base:
        assert post_twilio(base, inbound(body)).status_code == 200
        counts = requests.get(f"{base}/health", timeout=30).json()["counts"]
    assert opt_out_state(project_dir, phone(1)) == expected
    assert counts == ({"twilio_opt_out": 1} if expected else {"twilio_other": 1})


def test_start_opts_back_in_and_advanced_opt_out_verdicts_count(project_dir: Path):
    with serving(project_dir) as base:
        post_twilio(base, inbound("STOP"))
        post_twilio(base, inbound("Yes"))
        assert opt_out_state(project_dir, phone(1)) == "opted_in"
        # a Messaging Service's own keyword ("ARRET") comes with OptOutType=STOP
        post_twilio(base, inbound("ARRET", OptOutType="STOP"))
        assert opt_out_state(project_dir, phone(1)) == "opted_out"


def test_a_reply_to_an_account_we_do_not_hold_is_refused(project_dir: Path):
    with serving(project_dir) as base:
        params = inbound("STOP", AccountSid="AC" + "9" * 32)
        assert post_twilio(base, params).status_code == 403
    assert opt_out_state(project_dir, phone(1)) is None


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(project_dir: Path):
    text = (project_dir / "syncer.yml").read_text().replace(SERVE, SERVE + "  public_url: https://hooks.example.com/syncer\n")
    (project_dir / "syncer.yml").write_text(text)
    with serving(project_dir) as base:
        local = post_twilio(base, inbound("STOP"))  # signed for the URL this server sees: not what Twilio called
        public = post_twilio(base, inbound("STOP"), signed_url="https://hooks.example.com/syncer/twilio/inbound")
        with_port = post_twilio(base, inbound("STOP"), signed_url="https://hooks.example.com:443/syncer/twilio/inbound")
    assert (local.status_code, public.status_code, with_port.status_code) == (403, 200, 200)


# --- event posts -------------------------------------------------------------------------------------------

EVENTS = {"events": [
    {"member_key": "1", "type": "cart_abandoned", "occurred_at": "2026-12-07T21:00:00Z", "id": "evt-1"},
    {"member_key": "2", "type": "tier_reached", "occurred_at": 1_796_000_000},
]}


def test_signed_events_are_stored_once_even_when_posted_twice(project_dir: Path):
    with serving(project_dir) as base:
        first = post_events(base, EVENTS)
        again = post_events(base, {"events": EVENTS["events"][:1]})
    assert (first.status_code, first.json()) == (202, {"accepted": 2, "duplicates": 0})
    assert (again.status_code, again.json()) == (202, {"accepted": 0, "duplicates": 1})
    stored = stored_events(project_dir)
    assert [(e.member_key, e.type, e.occurred_at) for e in stored] == [
        ("1", "cart_abandoned", datetime(2026, 12, 7, 21, tzinfo=timezone.utc).timestamp()), ("2", "tier_reached", 1_796_000_000.0)]


@pytest.mark.parametrize("t", [NOW - 301, NOW + 301])
def test_a_stale_or_future_signature_is_refused(project_dir: Path, t: float, caplog):
    caplog.set_level(logging.INFO, logger="syncer.inbound")
    with serving(project_dir) as base:
        answer = post_events(base, EVENTS, t=t)
        fresh = post_events(base, EVENTS, t=NOW - 299)
    assert (answer.status_code, fresh.status_code) == (403, 202)
    assert len(stored_events(project_dir)) == 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "syncer.inbound" and "refused" in r.getMessage()]
    assert "tolerance" in line and "v1=" not in line and "cart_abandoned" not in line


def test_a_wrong_secret_or_no_signature_is_refused(project_dir: Path):
    with serving(project_dir) as base:
        wrong = post_events(base, EVENTS, secret="another-secret")
        unsigned = requests.post(f"{base}/events", json=EVENTS, timeout=30)
    assert (wrong.status_code, unsigned.status_code) == (403, 403)
    assert stored_events(project_dir) == []


@pytest.mark.parametrize("document, field", [
    ({"events": [EVENTS["events"][0], {"member_key": "ann@example.com", "type": "x", "occurred_at": "yesterday"}]},
     "events[1].occurred_at"),
    ({"events": [{"member_key": "ann@example.com", "type": "x", "occurred_at": "2026-12-07T21:00:00"}]},
     "events[0].occurred_at"),
    ({"events": [{"type": "x", "occurred_at": 1}]}, "events[0].member_key"),
    ({"events": [{"member_key": "ann@example.com", "type": "", "occurred_at": 1}]}, "events[0].type"),
    ({"events": [{"member_key": "ann@example.com", "type": "x", "occurred_at": 1, "email": "ann@example.com"}]},
     "events[0]"),
    ({"rows": []}, "'events' list"),
    (b"not json", "not JSON"),
])
def test_a_malformed_body_is_400_naming_the_field_without_echoing_values(project_dir: Path, document, field: str):
    with serving(project_dir) as base:
        answer = post_events(base, document)
    assert answer.status_code == 400
    assert field in answer.json()["error"] and "ann@example.com" not in answer.text
    assert stored_events(project_dir) == []


# --- the ledger API the real-time worker reads -------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    from tests.syncer.test_at_most_once import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


def test_events_after_reads_in_id_order_past_a_cursor(ledger_url: str):
    ledger = Ledger(ledger_url)
    posted = [PostedEvent("m1", "cart", 1.0, "a"), PostedEvent("m2", "cart", 2.0), PostedEvent("m3", "cart", 3.0, "a"),
              PostedEvent("m4", "tier", 4.0, "b")]
    assert record_events(ledger, posted) == (3, 1)  # "a" twice in one post: stored once
    assert record_events(ledger, [PostedEvent("m1", "cart", 1.0, "a"), PostedEvent("m5", "cart", 5.0)]) == (1, 1)
    everything = events_after(ledger, None, 100)
    assert [(e.member_key, e.type, e.occurred_at) for e in everything] == [
        ("m1", "cart", 1.0), ("m2", "cart", 2.0), ("m4", "tier", 4.0), ("m5", "cart", 5.0)]
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    assert events_after(ledger, everything[1].id, 1) == [everything[2]]
    assert events_after(ledger, everything[-1].id, 100) == []
    ledger.close()


# --- config and the command ---------------------------------------------------------------------------------

def test_serve_names_only_twilio_destinations(project_dir: Path):
    (project_dir / "destinations" / "meta.yml").write_text(
        "type: meta_audience\nad_account_id: '123'\naccess_token_env: META_TOKEN\n")
    for names, expected in ((["dest", "twillio"], "unknown destination 'twillio'"), (["meta"], "is meta_audience, not twilio_sms")):
        text = (project_dir / "syncer.yml").read_text().split("serve:")[0]
        (project_dir / "syncer.yml").write_text(text + SERVE + f"  twilio_destinations: {json.dumps(names)}\n")
        with pytest.raises(InvalidProjectError) as caught:
            load_project(project_dir)
        assert any(expected in p.message and p.field.startswith("serve.twilio_destinations") for p in caught.value.problems)


def test_a_missing_secret_is_one_line_and_exit_2(project_dir: Path, monkeypatch):
    monkeypatch.delenv("SYNCER_EVENT_SECRET")
    result = CliRunner().invoke(cli, ["-p", str(project_dir), "serve", "--port", "0"])
    assert result.exit_code == 2
    assert "SYNCER_EVENT_SECRET is not set" in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_syncer_serve_listens_and_stops_cleanly_on_sigterm(project_dir: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(project_dir), "serve", "--port", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first + process.stderr.read()
        base = first.split()[2]
        routes = [process.stdout.readline().split()[:2] for _ in range(3)]
        assert routes == [["GET", "/health"], ["POST", "/twilio/inbound"], ["POST", "/events"]]
        assert requests.get(f"{base}/health", timeout=30).json()["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped" in out
