"""The sandbox's Klaviyo emulator on its own, over raw HTTP: what the contract suite asks of it."""

from __future__ import annotations

import requests

from syncer.sandbox import Sandbox

LIST = "LsT001"


def call(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> requests.Response:
    headers = {"Authorization": f"Klaviyo-API-Key {sandbox.klaviyo.key}", "revision": "2026-07-15",
               "Content-Type": "application/vnd.api+json"}
    return requests.request(method, sandbox.url_for("klaviyo") + path, json=body, headers=headers, timeout=10)


def test_throttle_next_answers_as_klaviyo_throttles_once(sandbox):
    assert sandbox.klaviyo.throttle_next(6.2) == 7.0  # Klaviyo states whole seconds
    throttled = call(sandbox, "GET", "/api/profiles/")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    [error] = throttled.json()["errors"]
    assert error["code"] == "throttled" and error["detail"] == "Request was throttled. Expected available in 7 seconds."
    assert call(sandbox, "GET", "/api/profiles/").status_code == 200


def test_consent_of_reads_the_profile_identifiers_match_whatever_the_list(sandbox):
    klaviyo = sandbox.klaviyo
    klaviyo.seed_profile("person1@example.com", external_id="cust-1", email_consent="SUBSCRIBED")
    klaviyo.seed_profile(phone_number="+14155550102", sms_consent="UNSUBSCRIBED", lists=(LIST,))
    assert klaviyo.consent_of(LIST, {"email": "Person1@Example.com"}) == {"email": "SUBSCRIBED", "sms": "NEVER_SUBSCRIBED"}
    assert klaviyo.consent_of("other", {"external_id": "cust-1"}) == {"email": "SUBSCRIBED", "sms": "NEVER_SUBSCRIBED"}
    assert klaviyo.consent_of(LIST, {"phone": "+14155550102"}) == {"email": "NEVER_SUBSCRIBED", "sms": "UNSUBSCRIBED"}
    assert klaviyo.consent_of(LIST, {"email": "nobody@example.com"}) is None
    body = {"data": {"type": "profile-subscription-bulk-delete-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "person1@example.com"}}]}}}}
    assert call(sandbox, "POST", "/api/profile-subscription-bulk-delete-jobs/", body).status_code == 202
    assert klaviyo.consent_of(LIST, {"email": "person1@example.com"})["email"] == "UNSUBSCRIBED"
