"""Traits on Klaviyo: custom ``properties`` in the profile import row; a cleared one unset with Update Profile."""

from __future__ import annotations

from destinations.base import Member
from tests.destinations.klaviyo.helpers import AUDIENCE, DictCache, calls


def properties(sandbox, email: str) -> dict:
    [profile] = [p for p in sandbox.klaviyo.profiles.values() if p.get("email") == email]
    return profile["properties"]


def test_traits_are_profile_properties_of_the_import(make_dest, sandbox):
    make_dest().add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"Lifetime Value": 10.5, "tier": "gold"})])
    assert properties(sandbox, "person1@example.com") == {"Lifetime Value": 10.5, "tier": "gold"}


def test_a_cached_member_with_traits_is_imported_again(make_dest, sandbox):
    cache = DictCache()
    make_dest(cache).add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold"})])
    make_dest(cache).add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "platinum"})])
    assert properties(sandbox, "person1@example.com") == {"tier": "platinum"}
    assert len(calls(sandbox, "POST", "profile-bulk-import-jobs")) == 2


def test_a_cleared_trait_is_unset_and_a_kept_one_stays(make_dest, sandbox):
    dest = make_dest()
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": "gold", "ltv": 3})])
    dest.add(AUDIENCE, [Member("k1", {"email": "person1@example.com"}, {"tier": None, "ltv": 4})])
    assert properties(sandbox, "person1@example.com") == {"ltv": 4}
    [patch] = calls(sandbox, "PATCH", "/api/profiles/")
    assert len(calls(sandbox, "PATCH")) == 1 and patch


def test_members_without_traits_send_no_properties_and_no_patch(make_dest, sandbox):
    make_dest().add(AUDIENCE, [Member("k1", {"email": "person1@example.com"})])
    assert properties(sandbox, "person1@example.com") == {}
    assert not calls(sandbox, "PATCH")
