"""Traits on Iterable: ``dataFields`` on the list subscribe's subscriber objects."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, Member, RowStatus
from destinations.iterable.config import IterableListConfig
from destinations.iterable.connector import IterableListDestination

AUDIENCE = AudienceRef(sync="vip_sync", audience_id="1001")


@pytest.fixture
def dest(sandbox, monkeypatch, opened) -> IterableListDestination:
    sandbox.iterable.create_list(1001, "vip")
    monkeypatch.setenv("ITERABLE_TEST_KEY", "sandbox-iterable-key")
    config = IterableListConfig(type="iterable_list", api_key_env="ITERABLE_TEST_KEY", endpoint=sandbox.url_for("iterable"))
    return opened(IterableListDestination(config, name="iterable_main"))


def test_traits_are_data_fields_of_the_subscriber(dest, sandbox):
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"ltv": 10.5, "tier": "gold"})])
    [subscriber] = sandbox.iterable.payloads[-1]["subscribers"]
    assert subscriber == {"email": "person1@example.com", "dataFields": {"ltv": 10.5, "tier": "gold"}}
    assert sandbox.iterable.user(email="person1@example.com")["dataFields"] == {"ltv": 10.5, "tier": "gold"}


def test_a_cleared_trait_is_null_and_others_stay(dest, sandbox):
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"ltv": 10.5, "tier": "gold"})])
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": None})])
    assert sandbox.iterable.user(email="person1@example.com")["dataFields"] == {"ltv": 10.5, "tier": None}


def test_a_value_of_another_type_than_the_field_is_rejected(dest, sandbox):
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"ltv": 10.5})])
    result = dest.add(AUDIENCE, [Member("k2", {"email": "person2@example.com"}, {"ltv": "lots"})])
    assert [(o.status, o.reason) for o in result.outcomes] == [(RowStatus.REJECTED, "iterable: invalidDataEmails")]
    assert sandbox.iterable.list_members(1001) == {"person1@example.com"}


def test_a_remove_carries_no_data_fields(dest, sandbox):
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold"})])
    dest.remove(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold"})])
    assert "dataFields" not in sandbox.iterable.payloads[-1]["subscribers"][0]
