"""The sandbox's Mailchimp emulator on its own, over raw HTTP: what the contract suite asks of it."""

from __future__ import annotations

import requests

from destinations.mailchimp.emulator import subscriber_hash
from syncer.sandbox import Sandbox

LIST = "a1b2c3d4e5"


def call(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, sandbox.url_for("mailchimp") + "/3.0" + path, json=body,
                            auth=("anyone", sandbox.mailchimp.key), timeout=10)


def test_throttle_next_answers_as_mailchimp_throttles_once(sandbox):
    assert sandbox.mailchimp.throttle_next(7.0) is None  # Mailchimp states no wait
    before = sandbox.mailchimp.request_count
    throttled = call(sandbox, "GET", "/ping")
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["title"] == "Too Many Requests" and sandbox.mailchimp.request_count == before + 1
    assert call(sandbox, "GET", "/ping").status_code == 200


def test_consent_of_reads_the_contacts_status_in_the_audience_named(sandbox):
    mc = sandbox.mailchimp
    mc.create_list(LIST)
    mc.create_list("other")
    mc.seed_member(LIST, "person1@example.com", "unsubscribed")
    mc.seed_member("other", "person1@example.com", "subscribed")
    assert mc.consent_of(f"{LIST}:tag:VIP", {"email": "Person1@Example.com"}) == "unsubscribed"
    assert mc.consent_of("other:segment:42", {"email": "person1@example.com"}) == "subscribed"
    assert mc.consent_of(f"{LIST}:tag:VIP", {"email": "nobody@example.com"}) is None
    assert mc.consent_of("nosuchlist:tag:VIP", {"email": "person1@example.com"}) is None
    assert mc.consent_of(f"{LIST}:tag:VIP", {"phone": "+14155550101"}) is None  # a contact is its email
    tag = {"tags": [{"name": "VIP", "status": "inactive"}]}
    assert call(sandbox, "POST", f"/lists/{LIST}/members/{subscriber_hash('person1@example.com')}/tags", tag).status_code == 204
    assert mc.consent_of(f"{LIST}:tag:VIP", {"email": "person1@example.com"}) == "unsubscribed"
