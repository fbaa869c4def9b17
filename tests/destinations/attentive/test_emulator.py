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
