"""AttentiveDestination against the Attentive emulator over real HTTP on loopback, alone and through the engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from destinations.attentive.config import CAPABILITIES, AttentiveConfig
from destinations.attentive.connector import AttentiveDestination
from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.registry import SPECS
from destinations.responses import PlatformResponse
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from syncer.sandbox import server as sandbox_server
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import only_emulator, read_consent_as_sms

KEY = "attentive-test-key"
AUDIENCE = AudienceRef(sync="vip_sync", audience_id="vip")
FAST = RetryPolicy(attempts=4, base_wait=0.0, max_wait=60.0, jitter=0.0)


def phone(i: int) -> str:
    return f"+1415555{i:04d}"


def member(i: int, **identifiers: str) -> Member:
    return Member(f"k{i}", identifiers or {"phone": phone(i), "email": f"person{i}@example.com"})


@pytest.fixture
def sandbox(monkeypatch):
    only_emulator(monkeypatch, "attentive")
    monkeypatch.setenv("SANDBOX_ATTENTIVE_KEY", KEY)
    sb = Sandbox(port=0).start()
    yield sb
    sb.stop()


def config(sandbox: Sandbox, **overrides) -> AttentiveConfig:
    fields = {"type": "attentive", "api_key_env": "ATTENTIVE_KEY", "endpoint": sandbox.url_for("attentive")} | overrides
    return AttentiveConfig(**fields)


@pytest.fixture
def dest(sandbox, monkeypatch, opened):
    monkeypatch.setenv("ATTENTIVE_KEY", KEY)
    return opened(AttentiveDestination(config(sandbox), name="attentive_vip"))


def paths(sandbox: Sandbox) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in sandbox.attentive.requests}


def test_declares_an_sms_destination_that_can_remove_and_is_registered():
    caps = AttentiveDestination.capabilities
    assert issubclass(AttentiveDestination, Destination) and AttentiveDestination.kind == "attentive"
    assert (caps.channel, caps.can_remove, caps.at_most_once, caps.platform) == ("sms", True, False, "plain")
    assert caps.identifiers == {"phone", "email"}
    assert SPECS["attentive"].connector == "destinations.attentive.connector:AttentiveDestination"
    assert SPECS["attentive"].capabilities is CAPABILITIES is caps  # readable without importing the connector
    assert sandbox_server.EMULATORS["attentive"] == "destinations.attentive.emulator:AttentiveEmulator"


def test_adds_and_removes_land_as_attributes_and_never_touch_subscriptions(sandbox, dest):
    sandbox.attentive.add_subscriber(phone=phone(1), subscriptions=[("MARKETING", "TEXT")])
    members = [member(1), member(2), Member("k3", {"email": "person3@example.com"})]

    result = dest.add(AUDIENCE, members)
    assert result.outcomes == tuple(RowOutcome(f"k{i}", RowStatus.SENT) for i in (1, 2, 3))
    assert result.requests == 5  # a call per identifier
    emails = {f"person{i}@example.com" for i in (1, 2)}
    assert sandbox.attentive.holders("vip", "true") == {phone(1), phone(2), "person3@example.com"} | emails

    removed = dest.remove(AUDIENCE, members[:2])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 2
    assert sandbox.attentive.holders("vip", "true") == {"person3@example.com"}
    assert sandbox.attentive.holders("vip", "false") == {phone(1), phone(2)} | emails

    # consent state is untouched: the subscriber stays subscribed, new people are created unsubscribed
    assert sandbox.attentive.person(phone=phone(1))["subscriptions"] == [{"type": "MARKETING", "channel": "TEXT"}]
    assert sandbox.attentive.person(phone=phone(2))["subscriptions"] == []
    assert sandbox.attentive.texts_sent == []
    assert paths(sandbox) == {("POST", "/v1/attributes/custom")}


@pytest.mark.parametrize("bad", ["4155550123", "+1 415 555 0123", "+1-415-555-0123", "+0415555012", "+1415555012345678"])
def test_phones_not_in_strict_e164_are_rejected_per_row_and_never_sent(sandbox, dest, bad):
    members = [member(1), Member("bad", {"phone": bad, "email": "bad@example.com"}), member(2)]
    result = dest.add(AUDIENCE, members)
    assert result.outcomes == (RowOutcome("k1", RowStatus.SENT), RowOutcome("bad", RowStatus.REJECTED, "invalid_phone"),
                               RowOutcome("k2", RowStatus.SENT))
    assert sandbox.attentive.request_count == 4 and sandbox.attentive.person(email="bad@example.com") is None


def test_an_email_without_at_is_rejected_per_row_and_never_sent(sandbox, dest):
    result = dest.add(AUDIENCE, [Member("bad", {"phone": phone(3), "email": "person3.example.com"})])
    assert result.outcomes == (RowOutcome("bad", RowStatus.REJECTED, "invalid_email"),)
    assert sandbox.attentive.request_count == 0 and sandbox.attentive.people == []


def test_a_changed_email_leaves_the_old_address_out_of_the_audience(sandbox, dest):
    """What the engine sends when a member's email changes: a remove with the old identifiers, then an add
    with the new ones. Sent together, the phone would tie each email to its profile for good."""
    old, new = member(1), Member("k1", {"phone": phone(1), "email": "moved1@example.com"})
    dest.add(AUDIENCE, [old])
    dest.remove(AUDIENCE, [old])
    dest.add(AUDIENCE, [new])
    attribute = sandbox.attentive.attribute
    assert attribute("vip", phone=phone(1)) == "true"
    assert attribute("vip", email="moved1@example.com") == "true"
    assert attribute("vip", email="person1@example.com") == "false"
    assert all(not (p["phones"] and p["emails"]) for p in sandbox.attentive.people)  # nothing linked by us


def test_members_sharing_an_email_stay_two_people(sandbox, dest):
    """A household email sent with each phone would bridge the two people into one on Attentive."""
    household = [member(i, phone=phone(i), email="lee.household@example.com") for i in (1, 2)]
    dest.add(AUDIENCE, household)
    assert [sandbox.attentive.person(phone=phone(i))["phones"] for i in (1, 2)] == [[phone(1)], [phone(2)]]
    dest.remove(AUDIENCE, household[:1])
    assert sandbox.attentive.attribute("vip", phone=phone(2)) == "true"


def test_an_email_attentive_linked_to_the_phone_stays_with_that_person(sandbox, dest):
    """The limit no connector can pass: a sign-up with both identifiers linked them, and no Attentive call
    unlinks an email, so the phone's profile, in the audience again, still holds the old address."""
    sandbox.attentive.add_subscriber(phone=phone(1), email="person1@example.com")
    old, new = member(1), Member("k1", {"phone": phone(1), "email": "moved1@example.com"})
    dest.add(AUDIENCE, [old])
    dest.remove(AUDIENCE, [old])
    dest.add(AUDIENCE, [new])
    signed_up = sandbox.attentive.person(phone=phone(1))
    assert (signed_up["emails"], signed_up["attributes"]["vip"]) == (["person1@example.com"], "true")
    assert sandbox.attentive.attribute("vip", email="moved1@example.com") == "true"


def test_a_member_without_phone_or_email_is_rejected(sandbox, dest):
    result = dest.add(AUDIENCE, [Member("k9", {})])
    assert result.outcomes == (RowOutcome("k9", RowStatus.REJECTED, "no_identifier"),)
    assert sandbox.attentive.request_count == 0


def test_a_value_the_platform_refuses_rejects_that_row_only(sandbox, dest):
    sandbox.attentive.define_property("vip", ["Yes", "No"])  # created in the Attentive UI
    result = dest.add(AUDIENCE, [member(1)])
    assert result.outcomes == (RowOutcome("k1", RowStatus.REJECTED, "attentive_invalid_request"),)
    yes_no = AttentiveDestination(config(sandbox, member_value="Yes", removed_value="No"))
    assert yes_no.add(AUDIENCE, [member(1)]).outcomes == (RowOutcome("k1", RowStatus.SENT),)
    assert sandbox.attentive.attribute("vip", phone=phone(1)) == "Yes"


def test_requests_are_paced_under_the_rate_limit(sandbox, monkeypatch):
    monkeypatch.setenv("ATTENTIVE_KEY", KEY)
    sandbox.attentive.rate_limit = 25  # per second, sliding window
    dest = AttentiveDestination(config(sandbox, requests_per_second=20, concurrency=4))
    started = time.monotonic()
    result = dest.add(AUDIENCE, [member(i) for i in range(40)])  # a 429 would raise
    elapsed = time.monotonic() - started
    assert all(o.status is RowStatus.SENT for o in result.outcomes)
    assert elapsed >= 39 / 20 * 0.95  # 20 per second, however many threads


def test_without_pacing_the_emulator_throttles_and_the_connector_raises_rate_limited(sandbox, monkeypatch):
    monkeypatch.setenv("ATTENTIVE_KEY", KEY)
    sandbox.attentive.rate_limit = 5
    dest = AttentiveDestination(config(sandbox, requests_per_second=1000, concurrency=1))
    with pytest.raises(RateLimited) as caught:
        dest.add(AUDIENCE, [member(i) for i in range(10)])
    assert caught.value.retry_after == 1.0  # no Retry-After from Attentive: its limit is per second


def test_429_carries_the_retry_after_the_platform_asked_for(sandbox, dest):
    sandbox.attentive.inject_http(429, times=1, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        dest.add(AUDIENCE, [member(1)])
    assert caught.value.retry_after == 7.0


def test_server_errors_are_transient(sandbox, dest):
    sandbox.attentive.inject_http(503, times=1)
    with pytest.raises(TransientError):
        dest.add(AUDIENCE, [member(1)])


def test_a_wrong_key_is_a_config_error_naming_the_env_var(sandbox, monkeypatch):
    monkeypatch.setenv("ATTENTIVE_KEY", "wrong")
    dest = AttentiveDestination(config(sandbox))
    for call in (dest.check, lambda: dest.add(AUDIENCE, [member(1)])):
        with pytest.raises(ConfigError) as caught:
            call()
        assert "ATTENTIVE_KEY" in caught.value.message and "wrong" not in caught.value.message
    assert sandbox.attentive.people == []


def test_a_key_without_the_attributes_scope_is_a_config_error(sandbox, dest):
    sandbox.attentive.scopes = {"subscriptions:write"}
    with pytest.raises(ConfigError, match="attributes:write"):
        dest.add(AUDIENCE, [member(1)])


def test_a_missing_env_var_fails_at_construction(sandbox, monkeypatch):
    monkeypatch.delenv("ATTENTIVE_KEY", raising=False)
    with pytest.raises(ConfigError, match="ATTENTIVE_KEY"):
        AttentiveDestination(config(sandbox))


@pytest.mark.parametrize(("status", "headers", "expected", "wait"), [
    (400, {}, PermanentError, None),     # refuses that request's one member: a row reject (see above)
    (403, {}, ConfigError, None),        # the attributes:write scope
    (404, {}, ConfigError, None),        # a wrong endpoint
    (429, {}, RateLimited, 1.0),         # no Retry-After: the limit is per second
    (418, {}, TransientError, None),     # unknown: setting an attribute is idempotent, so retry
])
def test_classify_where_attentive_differs_from_the_shared_table(dest, status, headers, expected, wait):
    failure = dest.classify(PlatformResponse(status, {"errors": [{"message": "x +14155550123 a@b.co"}]}, headers))
    assert type(failure) is expected
    assert getattr(failure, "retry_after", None) == wait
    assert "+1415" not in (failure.detail or "") and "a@b.co" not in (failure.detail or "")
    if status == 403:
        assert "attributes:write" in failure.message and "ATTENTIVE_KEY" in failure.message
    if status == 404:
        assert "endpoint" in failure.message


def test_a_refused_key_check_is_a_config_error(dest, sandbox):
    sandbox.attentive.inject_http(400, times=1)
    with pytest.raises(ConfigError, match="key check"):
        dest.check()


# --- through the engine ----------------------------------------------------------------------------

def sms_project(root: Path, destination: str, sync_extra: str = "", identifiers: str = "[phone, email]") -> Path:
    """The conftest project with the segment's consent column read as SMS consent."""
    write_project(root, destination=destination, sync_extra=sync_extra, identifiers=identifiers)
    read_consent_as_sms(root)
    return root


def held(ids) -> set[str]:
    """The phones and emails of conftest ``person(i)``, each its own person on Attentive."""
    return {f"+1415555{i:04d}" for i in ids} | {f"person{i}@example.com" for i in ids}


def test_engine_mirrors_membership_honours_429_and_sends_no_subscribe(tmp_path, sandbox, monkeypatch):
    monkeypatch.setenv("ATTENTIVE_KEY", KEY)
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)] + [person(6, ads_consent=False)])
    sms_project(tmp_path, f"""\
        type: attentive
        api_key_env: ATTENTIVE_KEY
        endpoint: {sandbox.url_for('attentive')}
        """)
    sandbox.attentive.inject_http(429, times=1, retry_after=3)
    sleeps: list[float] = []
    engine = Engine(load_project(tmp_path), policy=FAST, sleep=sleeps.append)
    [report] = engine.run()
    assert (report.status, report.added) == ("ok", 5)
    assert sleeps == [3.0]  # the wait Attentive asked for
    assert sandbox.attentive.holders("1001", "true") == held(range(1, 6))  # not the one who refused

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 4)])
    [report] = Engine(load_project(tmp_path), policy=FAST, sleep=sleeps.append).run()
    assert (report.status, report.added, report.removed) == ("ok", 0, 2)
    assert sandbox.attentive.holders("1001", "false") == held([4, 5])
    assert sandbox.attentive.texts_sent == []
    assert all(p["subscriptions"] == [] for p in sandbox.attentive.people)
    engine.close()
