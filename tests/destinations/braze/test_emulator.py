"""The sandbox's Braze emulator on its own, over raw HTTP: the strictness and state the connector tests rely on."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from syncer.sandbox import Sandbox

KEY = "sandbox-braze-key"
GROUP = "5c4a2b7e-0000-4000-8000-00000000beef"


def track(sandbox: Sandbox, body: dict, key: str = KEY) -> requests.Response:
    return requests.post(sandbox.url_for("braze") + "/users/track", json=body,
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_the_emulator_refuses_more_than_75_objects(sandbox):
    too_many = {"attributes": [{"email": f"p{i}@example.com", "x": True} for i in range(76)]}
    response = track(sandbox, too_many)
    assert response.status_code == 400 and response.json()["message"] == "Max Input Length Exceeded"
    assert sandbox.braze.users == {}


def test_throttle_next_answers_as_braze_throttles_once(sandbox):
    assert sandbox.braze.throttle_next(7.0) == 7.0
    assert track(sandbox, {"attributes": [{"email": "p@example.com", "x": True}]}, key="wrong").status_code == 401
    throttled = track(sandbox, {"attributes": [{"email": "p@example.com", "x": True}]})
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert 6.0 <= int(throttled.headers["X-RateLimit-Reset"]) - time.time() <= 8.0
    assert sandbox.braze.users == {}
    assert track(sandbox, {"attributes": [{"email": "p@example.com", "x": True}]}).status_code == 201


def test_consent_of_reads_the_profile_identifiers_resolve_to(sandbox):
    braze = sandbox.braze
    braze.create_subscription_group(GROUP)
    braze.add_user(external_id="u-1", email="person1@example.com", email_subscribe="unsubscribed",
                   subscription_groups={GROUP: "subscribed"})
    braze.add_user(phone="+14155550102", email_subscribe="opted_in")
    held = {"email_subscribe": "unsubscribed", "subscription_groups": {GROUP: "subscribed"}}
    assert braze.consent_of("in_vip", {"email": "Person1@example.com"}) == held
    assert braze.consent_of("in_other", {"external_id": "u-1", "phone": "+14155550102"}) == held  # external_id first
    assert braze.consent_of("in_vip", {"phone": "+14155550102"}) == {"email_subscribe": "opted_in", "subscription_groups": {}}
    assert braze.consent_of("in_vip", {"email": "nobody@example.com"}) is None
    track(sandbox, {"attributes": [{"email": "person1@example.com", "email_subscribe": "subscribed"}]})
    assert braze.consent_of("in_vip", {"email": "person1@example.com"})["email_subscribe"] == "subscribed"


def test_emulator_state_survives_a_save_and_load(tmp_path: Path, sandbox):
    braze = sandbox.braze
    braze.create_subscription_group(GROUP)
    braze.add_user(email="person1@example.com", email_subscribe="opted_in", subscription_groups={GROUP: "subscribed"})
    track(sandbox, {"attributes": [{"email": "person1@example.com", "in_vip_audience": True},
                                   {"external_id": "u-9", "in_vip_audience": True}]})
    sandbox.save(tmp_path / "state.json")
    restored = Sandbox(port=0, state_file=tmp_path / "state.json")
    assert restored.braze.attribute_members("in_vip_audience") == {"person1@example.com", "u-9"}
    assert restored.braze.subscription_states() == braze.subscription_states()
