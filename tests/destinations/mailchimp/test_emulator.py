"""The sandbox's Mailchimp emulator on its own, over raw HTTP: what the contract suite asks of it, and the addresses it refuses."""

from __future__ import annotations

import pytest
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


# Mailchimp's published rules (destinations.mailchimp.email_rules): an ASCII local part, any IDN domain.
TAKEN = [
    "test@ñoñó1234.com",  # Mailchimp's own example of an international domain it allows
    "ann@bücher.de",
    "ann@пример.рф",  # an IDN top-level label
    "ann@xn--e1afmkfd.xn--p1ai",  # the same domain as A-labels: digits and hyphens in the top-level label
    "ann.lee@example.c0m",  # no published rule on top-level labels
    "o'brien+vip_1@example.com",
]
REFUSED = [
    "direcciónelectrónica@domain.com",  # Mailchimp's own example of a blocked prefix
    "jörg@example.com",
    "john@aol",  # its syntax-error examples: no dot in the domain
    "john@aolcom",
    "john smith@example.com",  # a space anywhere
    "john@example.com ",
    "a,b@example.com",  # special characters before the @
    '"john"@example.com',
    "<john@example.com>",
    "@example.com",
    "john@",
    "john@@example.com",
    "john@example..com",
]


def subscribe(sandbox: Sandbox, email: str) -> dict:
    answer = call(sandbox, "POST", f"/lists/{LIST}", {"members": [{"email_address": email, "status": "transactional"}]})
    assert answer.status_code == 200
    return answer.json()


@pytest.mark.parametrize("email", TAKEN)
def test_the_batch_subscribe_takes_every_address_mailchimp_documents_it_takes(sandbox, email):
    sandbox.mailchimp.create_list(LIST)
    body = subscribe(sandbox, email)
    assert (body["total_created"], body["errors"]) == (1, [])
    assert sandbox.mailchimp.list_members(LIST) == {email: "transactional"}


@pytest.mark.parametrize("email", REFUSED)
def test_the_batch_subscribe_refuses_an_address_as_mailchimp_does(sandbox, email):
    sandbox.mailchimp.create_list(LIST)
    body = subscribe(sandbox, email)
    assert (body["total_created"], body["error_count"]) == (0, 1)
    [error] = body["errors"]
    assert error["email_address"] == email and error["field"] == "email_address" and error["error_code"] == "ERROR_GENERIC"
    assert error["error"] == f"{email} looks fake or invalid, please enter a real email address."
    assert sandbox.mailchimp.list_members(LIST) == {}


def test_adding_one_contact_answers_a_refused_address_with_mailchimps_400(sandbox):
    sandbox.mailchimp.create_list(LIST)
    refused = call(sandbox, "POST", f"/lists/{LIST}/members", {"email_address": "jörg@example.com", "status": "subscribed"})
    assert refused.status_code == 400 and refused.headers["Content-Type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["status"], problem["title"]) == (400, "Invalid Resource")
    assert problem["detail"] == "jörg@example.com looks fake or invalid, please enter a real email address."

    taken = call(sandbox, "POST", f"/lists/{LIST}/members", {"email_address": "ann@bücher.de", "status": "subscribed"})
    assert taken.status_code == 200
    assert (taken.json()["email_address"], taken.json()["id"]) == ("ann@bücher.de", subscriber_hash("ann@bücher.de"))
    again = call(sandbox, "POST", f"/lists/{LIST}/members", {"email_address": "ann@bücher.de", "status": "unsubscribed"})
    assert (again.status_code, again.json()["title"]) == (400, "Member Exists")
    assert sandbox.mailchimp.list_members(LIST) == {"ann@bücher.de": "subscribed"}
