"""Reading a Klaviyo list back (``ListsMembers``), as ``syncer reconcile`` does."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, ListedMember, ListsMembers, Member
from syncer.errors import ConfigError
from tests.destinations.klaviyo.helpers import AUDIENCE, LIST, calls

MEMBERS_PATH = f"/api/lists/{LIST}/profiles/"


def test_list_members_pages_through_exactly_the_lists_profiles(sandbox, dest):
    klaviyo = sandbox.klaviyo
    members = [Member(f"k{i}", {"email": f"person{i}@example.com", "phone": f"+1415555{i:04d}"}) for i in range(230)]
    dest.add(AUDIENCE, members)
    klaviyo.seed_profile("elsewhere@example.com", lists=("OtherList",))  # a profile on another list only
    by_hand = klaviyo.add_to_list(LIST, email="Added.By.Hand@Example.com", external_id="crm-7")
    klaviyo.remove_from_list(LIST, "person5@example.com")
    before = len(calls(sandbox, "GET", MEMBERS_PATH))

    listed = list(dest.list_members(AUDIENCE))

    assert isinstance(dest, ListsMembers)
    assert len(calls(sandbox, "GET", MEMBERS_PATH)) - before == 3  # 230 profiles, 100 a page
    assert len(listed) == 230 and {m.platform_id for m in listed} == klaviyo.list_member_ids(LIST)
    expected = {(f"person{i}@example.com", f"+1415555{i:04d}") for i in range(230) if i != 5}
    assert {(m.identifiers["email"], m.identifiers["phone"]) for m in listed if "phone" in m.identifiers} == expected
    assert ListedMember({"email": "added.by.hand@example.com", "external_id": "crm-7"}, by_hand) in listed


def test_listed_identifiers_compare_with_what_was_sent(sandbox, dest):
    sent = Member("k1", {"email": "ann@example.com", "phone": "+14155550100", "external_id": "cust-1", "first_name": "Ann"})
    dest.add(AUDIENCE, [sent])
    [listed] = dest.list_members(AUDIENCE)
    assert listed.identifiers == {k: v for k, v in sent.identifiers.items() if k != "first_name"}  # names never identify


def test_an_empty_list_reads_back_as_nothing_with_one_call(sandbox, dest):
    assert list(dest.list_members(AUDIENCE)) == []
    assert len(calls(sandbox, "GET", MEMBERS_PATH)) == 1


def test_a_missing_list_is_a_config_error_naming_it(sandbox, dest):
    with pytest.raises(ConfigError, match="NoSuch"):
        list(dest.list_members(AudienceRef("s", "NoSuch")))
