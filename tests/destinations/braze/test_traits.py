"""Traits on Braze: custom attributes in the same /users/track attributes object as the membership one."""

from __future__ import annotations

import pytest

from destinations.base import AudienceRef, Member, RowStatus
from destinations.braze.config import BrazeConfig
from destinations.braze.connector import BrazeDestination
from syncer.errors import ConfigError

AUDIENCE = AudienceRef(sync="vip_sync", audience_id="in_vip_audience")


@pytest.fixture
def dest(sandbox, monkeypatch, opened) -> BrazeDestination:
    monkeypatch.setenv("BRAZE_TEST_KEY", "sandbox-braze-key")
    config = BrazeConfig(type="braze", api_key_env="BRAZE_TEST_KEY", endpoint=sandbox.url_for("braze"))
    return opened(BrazeDestination(config, name="braze_main"))


def test_traits_are_custom_attributes_beside_the_membership(dest, sandbox):
    member = Member("k1", {"email": "person1@example.com"}, {"ltv": 10.5, "tier": "gold"})
    dest.add(AUDIENCE, [member])
    [obj] = sandbox.braze.payloads[-1]["attributes"]
    assert obj == {"email": "person1@example.com", "in_vip_audience": True, "ltv": 10.5, "tier": "gold"}
    assert sandbox.braze.attribute_values("tier") == {"person1@example.com": "gold"}


def test_a_cleared_trait_is_sent_as_null_and_removed(dest, sandbox):
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold"})])
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": None})])
    assert sandbox.braze.attribute_values("tier") == {}
    assert sandbox.braze.attribute_members("in_vip_audience") == {"person1@example.com"}


def test_a_remove_carries_no_traits(dest, sandbox):
    dest.remove(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold"})])
    [obj] = sandbox.braze.payloads[-1]["attributes"]
    assert "tier" not in obj


def test_a_trait_named_like_a_profile_field_is_refused_before_any_request(dest, sandbox):
    with pytest.raises(ConfigError, match="trait 'email_subscribe'"):
        dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"email_subscribe": "opted_in"})])
    assert not sandbox.braze.payloads


def test_a_string_over_255_characters_is_refused_for_that_member_only(dest, sandbox):
    result = dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"note": "x" * 256}),
                                 Member("k2", {"email": "person2@example.com"}, {"note": "ok"})])
    assert [o.status for o in result.outcomes] == [RowStatus.REJECTED, RowStatus.SENT]
    assert sandbox.braze.attribute_values("note") == {"person2@example.com": "ok"}
