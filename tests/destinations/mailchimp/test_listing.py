"""Reading a Mailchimp tag or static segment back (``list_members``) against the strict emulator, and the
hand edits a test makes to it (what ``syncer reconcile`` compares with the ledger)."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, ListedMember, ListsMembers
from destinations.mailchimp.connector import MailchimpAudienceDestination
from destinations.mailchimp.emulator_listing import MAX_COUNT
from syncer.errors import ConfigError
from tests.destinations.helpers import by_email
from tests.destinations.mailchimp.test_connector import LIST, SEGMENT, STATIC, TAG, config


@pytest.fixture
def sandbox(sandbox):
    sandbox.mailchimp.create_list(LIST, name="Customers")
    sandbox.mailchimp.create_segment(LIST, "vip static", segment_id=SEGMENT)
    return sandbox


@pytest.fixture
def dest(sandbox, monkeypatch, opened) -> MailchimpAudienceDestination:
    monkeypatch.setenv("MAILCHIMP_KEY", sandbox.mailchimp.key)
    return opened(MailchimpAudienceDestination(config(sandbox.url_for("mailchimp")), name="mailchimp_main"))


def emails(listed) -> set[str]:
    return {m.identifiers["email"] for m in listed}


@pytest.mark.parametrize("audience", [TAG, STATIC], ids=["tag", "segment"])
def test_lists_every_member_a_sync_added_whatever_their_status(sandbox, dest, audience):
    assert isinstance(dest, ListsMembers)
    sandbox.mailchimp.seed_member(LIST, "unsubscribed@example.com", "unsubscribed")
    sandbox.mailchimp.seed_member(LIST, "cleaned@example.com", "cleaned")
    members = [by_email(i, _consent="granted" if i % 2 else "unknown") for i in range(1, 6)]  # some new as transactional
    dest.add(audience, members + [by_email(0, email="unsubscribed@example.com"), by_email(9, email="cleaned@example.com")])
    listed = list(dest.list_members(audience))
    assert emails(listed) == {f"person{i}@example.com" for i in range(1, 6)} | {"unsubscribed@example.com", "cleaned@example.com"}
    assert all(set(m.identifiers) == {"email"} and m.platform_id for m in listed)


def test_pages_of_a_thousand_until_every_member_is_read(sandbox, dest):
    for i in range(2_345):
        sandbox.mailchimp.seed_member(LIST, f"p{i}@example.com", tags=("VIP buyers",))
    before = sandbox.mailchimp.request_count
    listed = list(dest.list_members(TAG))
    assert len(emails(listed)) == 2_345
    assert sandbox.mailchimp.request_count - before == 1 + 3  # the tag's id, then three pages


def test_a_tag_nobody_ever_carried_lists_nobody_and_a_prefix_is_not_the_tag(sandbox, dest):
    assert list(dest.list_members(TAG)) == []
    sandbox.mailchimp.seed_member(LIST, "other@example.com", tags=("VIP buyers 2024",))  # shares the prefix only
    assert list(dest.list_members(TAG)) == []


def test_emails_come_back_as_we_send_them(sandbox, dest):
    sandbox.mailchimp.add_to_list(TAG.audience_id, email="Someone.Else@Example.com")
    assert [m.identifiers for m in dest.list_members(TAG)] == [{"email": "someone.else@example.com"}]


def test_hand_edits_change_what_is_listed(sandbox, dest):
    dest.add(TAG, [by_email(i) for i in range(1, 4)])
    [before] = [m for m in dest.list_members(TAG) if m.identifiers["email"] == "person3@example.com"]
    mc = sandbox.mailchimp
    mc.remove_from_list(TAG.audience_id, "person1@example.com")
    mc.add_to_list(TAG.audience_id, email="walk-in@example.com")
    mc.change_email("person3@example.com", "person3.new@example.com")
    listed = list(dest.list_members(TAG))
    assert emails(listed) == {"person2@example.com", "walk-in@example.com", "person3.new@example.com"}
    assert ListedMember({"email": "person3.new@example.com"}, before.platform_id) in listed  # same contact, new email
    assert mc.list_members(LIST)["person1@example.com"] == "transactional"  # off the tag, still on the list


def test_the_emulator_holds_mailchimps_paging_rules(sandbox, dest):
    base = f"{sandbox.url_for('mailchimp')}/3.0/lists/{LIST}/segments/{SEGMENT}/members"
    session = dest._session
    assert session.get(base, params={"count": MAX_COUNT + 1}).status_code == 400
    assert session.get(base, params={"offset": -1}).status_code == 400
    sandbox.mailchimp.seed_member(LIST, "t@example.com", "transactional")
    sandbox.mailchimp.add_to_list(STATIC.audience_id, email="t@example.com")
    assert session.get(base).json()["total_items"] == 0  # transactional contacts only when asked for
    assert session.get(base, params={"include_transactional": "true"}).json()["total_items"] == 1


def test_an_unknown_list_is_a_config_error(dest):
    with pytest.raises(ConfigError):
        list(dest.list_members(AudienceRef("s", "nosuchlist:tag:vip")))
