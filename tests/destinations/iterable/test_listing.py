"""Reading an Iterable static list back (``list_members``) against the strict emulator, and the hand edits a
test makes to it (what ``syncer reconcile`` compares with the ledger)."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, ListedMember, ListsMembers, Member
from syncer.errors import ConfigError
from tests.destinations.helpers import by_email
from tests.destinations.iterable.test_connector import AUDIENCE, KEY, LIST_ID, config


@pytest.fixture
def sandbox(sandbox):
    sandbox.iterable.create_list(LIST_ID, "vip")
    return sandbox


@pytest.fixture
def dest(sandbox, monkeypatch, opened):
    from destinations.iterable.connector import IterableListDestination

    monkeypatch.setenv("ITERABLE_TEST_KEY", KEY)
    return opened(IterableListDestination(config(sandbox.url_for("iterable")), name="iterable_main"))


def test_lists_every_user_of_the_list_by_email_or_user_id(sandbox, dest):
    assert isinstance(dest, ListsMembers)
    dest.add(AUDIENCE, [by_email(1), Member("k2", {"email": "Person2@Example.com"}), Member("k3", {"external_id": "u-3"})])
    listed = list(dest.list_members(AUDIENCE))
    assert sorted(listed, key=repr) == sorted([ListedMember({"email": "person1@example.com"}),
                                               ListedMember({"email": "person2@example.com"}),
                                               ListedMember({"external_id": "u-3"})], key=repr)


def test_a_large_list_comes_in_one_answer(sandbox, dest):
    for start in range(0, 5_000, 1_000):
        dest.add(AUDIENCE, [by_email(i) for i in range(start, start + 1_000)])
    before = sandbox.iterable.request_count
    assert len(list(dest.list_members(AUDIENCE))) == 5_000
    assert sandbox.iterable.request_count - before == 1


def test_hand_edits_change_what_is_listed(sandbox, dest):
    dest.add(AUDIENCE, [by_email(i) for i in range(1, 4)])
    it = sandbox.iterable
    it.remove_from_list(AUDIENCE.audience_id, "person1@example.com")
    it.add_to_list(AUDIENCE.audience_id, email="walk-in@example.com")
    it.change_email("person3@example.com", "person3.new@example.com")
    assert {m.identifiers["email"] for m in dest.list_members(AUDIENCE)} == {
        "person2@example.com", "walk-in@example.com", "person3.new@example.com"}
    assert it.user(email="person1@example.com") is not None  # off the list, still a user


def test_an_unknown_list_is_a_config_error_and_the_emulator_wants_a_list_id(sandbox, dest):
    with pytest.raises(ConfigError, match="list 999"):
        list(dest.list_members(AudienceRef("s", "999")))
    answer = dest._session.get(sandbox.url_for("iterable") + "/api/lists/getUsers")
    assert answer.status_code == 400 and answer.json()["code"] == "BadParams"
