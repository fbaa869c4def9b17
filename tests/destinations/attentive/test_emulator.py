"""The Attentive emulator's own promises: what the connector tests and the contract suite rely on."""

from __future__ import annotations

import pytest
import requests

from syncer.sandbox import Sandbox
from tests.destinations.helpers import only_emulator

KEY = "attentive-test-key"
PHONE = "+14155550005"


@pytest.fixture
def sandbox(monkeypatch):
    only_emulator(monkeypatch, "attentive")
    monkeypatch.setenv("SANDBOX_ATTENTIVE_KEY", KEY)
    sb = Sandbox(port=0).start()
    yield sb
    sb.stop()


def call(sandbox: Sandbox, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sandbox.url_for('attentive')}{path}", headers={"Authorization": f"Bearer {KEY}"},
                            timeout=5, **kwargs)


def test_a_subscribe_call_is_recorded_as_a_text(sandbox):
    """The connector tests' "no text sent" check can fail: a subscribe call is seen as a text sent."""
    response = call(sandbox, "POST", "/v1/subscriptions", json={"user": {"phone": PHONE}, "signUpSourceId": "123"})
    assert response.status_code == 202
    assert [t["call"] for t in sandbox.attentive.texts_sent] == ["subscribe"]
    assert sandbox.attentive.person(phone=PHONE)["subscriptions"] == [{"type": "MARKETING", "channel": "TEXT"}]


def test_consent_is_the_persons_subscriptions_and_attributes_do_not_touch_it(sandbox):
    emulator = sandbox.attentive
    assert emulator.consent_of("vip", {"phone": PHONE}) is None  # nobody yet
    emulator.add_subscriber(phone=PHONE, subscriptions=[("MARKETING", "TEXT"), ("TRANSACTIONAL", "TEXT")])
    before = emulator.consent_of("vip", {"phone": PHONE, "email": "p@example.com"})
    assert before == [("MARKETING", "TEXT"), ("TRANSACTIONAL", "TEXT")]
    assert call(sandbox, "POST", "/v1/attributes/custom", json={"user": {"phone": PHONE}, "properties": {"vip": "false"}}).ok
    assert emulator.consent_of("other", {"phone": PHONE}) == before
    call(sandbox, "POST", "/v1/subscriptions/unsubscribe", json={"user": {"phone": PHONE}})
    assert emulator.consent_of("vip", {"phone": PHONE}) == []


def test_a_throttle_answers_as_the_rate_limit_does_and_states_one_second(sandbox):
    assert sandbox.attentive.throttle_next(7.0) == 1.0
    throttled = call(sandbox, "GET", "/v1/me")
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert throttled.headers["x-ratelimit-remaining"] == "0"
    assert call(sandbox, "GET", "/v1/me").status_code == 200  # only the next one
    assert sandbox.attentive.request_count == 2


def set_attributes(sandbox: Sandbox, user: dict, **properties: str) -> None:
    response = call(sandbox, "POST", "/v1/attributes/custom", json={"user": user, "properties": properties})
    assert response.status_code == 200, response.text


def test_identifiers_written_together_are_linked_for_good(sandbox):
    """A person holds several emails; a later write adds one and no call takes one off."""
    set_attributes(sandbox, {"phone": PHONE, "email": "old@example.com"}, vip="true")
    set_attributes(sandbox, {"phone": PHONE, "email": "new@example.com"}, vip="false")
    person = sandbox.attentive.person(phone=PHONE)
    assert person["emails"] == ["old@example.com", "new@example.com"] and len(sandbox.attentive.people) == 1
    by_old = call(sandbox, "GET", "/v1/attributes/custom", params={"email": "old@example.com"})
    assert by_old.json() == [{"name": "vip", "value": "false"}]  # the same person as the phone's


def test_a_write_naming_two_people_bridges_them_into_one(sandbox):
    set_attributes(sandbox, {"phone": PHONE}, vip="true", tier="gold")
    set_attributes(sandbox, {"email": "lee@example.com"}, vip="false", city="Oslo")
    assert len(sandbox.attentive.people) == 2
    set_attributes(sandbox, {"phone": PHONE, "email": "lee@example.com"}, seen="yes")
    [person] = sandbox.attentive.people
    assert (person["phones"], person["emails"]) == ([PHONE], ["lee@example.com"])
    assert person["attributes"] == {"vip": "true", "tier": "gold", "city": "Oslo", "seen": "yes"}  # the phone's wins


def test_each_identifier_alone_keeps_its_own_person(sandbox):
    set_attributes(sandbox, {"phone": PHONE}, vip="true")
    set_attributes(sandbox, {"email": "lee@example.com"}, vip="true")
    assert sandbox.attentive.holders("vip", "true") == {PHONE, "lee@example.com"}
    assert sandbox.attentive.person(phone=PHONE)["emails"] == []


def test_a_state_saved_with_one_phone_and_email_per_person_still_loads(sandbox):
    sandbox.attentive.load_state({"people": [{"phone": PHONE, "email": "lee@example.com", "subscriptions": [],
                                              "attributes": {"vip": "true"}}]})
    assert sandbox.attentive.person(email="lee@example.com")["phones"] == [PHONE]
    assert sandbox.attentive.to_state()["people"][0]["emails"] == ["lee@example.com"]
