"""Traits on Mailchimp: merge fields, on the batch subscribe of a new contact and a PATCH of an existing one's
merge fields (its status untouched); the audience must have the merge field."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, Member, RowStatus
from destinations.mailchimp.config import MailchimpAudienceConfig
from destinations.mailchimp.connector import MailchimpAudienceDestination

LIST = "a1b2c3d4e5"
TAG = AudienceRef("vip_mc", f"{LIST}:tag:VIP")


@pytest.fixture
def dest(sandbox, monkeypatch, opened) -> MailchimpAudienceDestination:
    sandbox.mailchimp.create_list(LIST, name="Customers", merge_fields=("FNAME", "LNAME", "TIER", "LTV"))
    monkeypatch.setenv("MAILCHIMP_KEY", sandbox.mailchimp.key)
    config = MailchimpAudienceConfig(type="mailchimp_audience", api_key_env="MAILCHIMP_KEY", endpoint=sandbox.url_for("mailchimp"))
    return opened(MailchimpAudienceDestination(config, name="mailchimp_main"))


def merge_fields(sandbox, email: str) -> dict:
    [member] = [m for m in sandbox.mailchimp.lists[LIST]["members"].values() if m["email_address"] == email]
    return member["merge_fields"]


def test_a_new_contact_gets_its_traits_as_merge_fields(dest, sandbox):
    dest.add(TAG, [Member("k1", {"email": "person1@example.com", "first_name": "Ann"}, {"TIER": "gold", "LTV": 10.5})])
    assert merge_fields(sandbox, "person1@example.com") == {"FNAME": "Ann", "TIER": "gold", "LTV": 10.5}
    assert sandbox.mailchimp.tag_members(LIST, "VIP") == {"person1@example.com"}


def test_an_existing_contact_gets_its_traits_and_keeps_its_status(dest, sandbox):
    sandbox.mailchimp.seed_member(LIST, "person1@example.com", status="unsubscribed")
    dest.add(TAG, [Member("k1", {"email": "person1@example.com"}, {"TIER": "gold"})])
    assert merge_fields(sandbox, "person1@example.com") == {"TIER": "gold"}
    assert sandbox.mailchimp.subscription_status("person1@example.com", LIST) == "unsubscribed"
    [patch] = [b for b in sandbox.mailchimp.bodies if b[0] == "PATCH"]
    assert patch[2] == {"merge_fields": {"TIER": "gold"}}


def test_a_cleared_trait_is_the_empty_string(dest, sandbox):
    dest.add(TAG, [Member("k1", {"email": "person1@example.com"}, {"TIER": "gold", "LTV": 3})])
    dest.add(TAG, [Member("k1", {"email": "person1@example.com"}, {"TIER": None, "LTV": 3})])
    assert merge_fields(sandbox, "person1@example.com") == {"TIER": "", "LTV": 3}


def test_a_merge_field_the_audience_lacks_rejects_the_member(dest, sandbox):
    result = dest.add(TAG, [Member("k1", {"email": "person1@example.com"}, {"NOPE": "x"}),
                            Member("k2", {"email": "person2@example.com"}, {"TIER": "gold"})])
    assert [(o.status, o.reason) for o in result.outcomes] == [
        (RowStatus.REJECTED, "mailchimp_invalid_merge_fields"), (RowStatus.SENT, None)]
    sandbox.mailchimp.seed_member(LIST, "person3@example.com")
    [outcome] = dest.add(TAG, [Member("k3", {"email": "person3@example.com"}, {"NOPE": "x"})]).outcomes
    assert (outcome.status, outcome.reason) == (RowStatus.REJECTED, "mailchimp_invalid_merge_fields")
    assert sandbox.mailchimp.tag_members(LIST, "VIP") == {"person2@example.com"}
