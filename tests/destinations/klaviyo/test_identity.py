"""Klaviyo's identity model through the connector: one profile per email, per phone number and per external id.

A member whose email changes reaches the connector as a remove of its old identifiers then an add of the
new ones (``syncer.planning.classify``); the list must end up with the new email's profile, never the old
one back. Members sharing an identifier are one profile there. These run through ``Destination.add`` and
``remove`` as the engine calls them, and once through the engine itself.
"""

from __future__ import annotations

from pathlib import Path

from destinations.base import Member, RowStatus
from syncer.delivery.engine import Engine
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.klaviyo.helpers import AUDIENCE, LIST, DictCache, calls

OLD, NEW, PHONE = "old.address@example.com", "new.address@example.com", "+14155550123"


def test_a_changed_email_puts_the_new_profile_on_the_list_not_the_old_one(sandbox, make_dest):
    klaviyo, cache = sandbox.klaviyo, DictCache()
    make_dest(cache).add(AUDIENCE, [Member("k1", {"email": OLD})])
    old_profile = klaviyo.profile_id(OLD)

    dest = make_dest(cache)  # the next run: only the ledger remembers
    removed = dest.remove(AUDIENCE, [Member("k1", {"email": OLD})])
    added = dest.add(AUDIENCE, [Member("k1", {"email": NEW})])

    assert [o.status for o in removed.outcomes + added.outcomes] == [RowStatus.SENT, RowStatus.SENT]
    assert klaviyo.list_members(LIST) == {NEW}
    assert klaviyo.list_member_ids(LIST) == {klaviyo.profile_id(NEW)} and old_profile not in klaviyo.list_member_ids(LIST)
    assert removed.platform_counts["ids_cached"] == 1  # the old profile came from the cache: no lookup
    assert cache.profile_of("k1") == klaviyo.profile_id(NEW)


def test_a_changed_email_with_the_same_phone_keeps_the_one_profile_with_the_new_email(sandbox, make_dest):
    klaviyo, cache = sandbox.klaviyo, DictCache()
    make_dest(cache).add(AUDIENCE, [Member("k1", {"email": OLD, "phone": PHONE})])
    profile = klaviyo.profile_id(OLD)

    dest = make_dest(cache)
    dest.remove(AUDIENCE, [Member("k1", {"email": OLD, "phone": PHONE})])
    dest.add(AUDIENCE, [Member("k1", {"email": NEW, "phone": PHONE})])

    # Klaviyo matched the phone and moved that profile to the new email: one person, listed once
    assert klaviyo.members(LIST) == [{"id": profile, "email": NEW, "phone_number": PHONE}]
    assert klaviyo.profile_id(OLD) is None


def test_an_add_of_the_new_email_before_the_remove_of_the_old_still_ends_with_the_new_profile(sandbox, make_dest):
    klaviyo, cache = sandbox.klaviyo, DictCache()
    make_dest(cache).add(AUDIENCE, [Member("k1", {"email": OLD})])

    dest = make_dest(cache)  # a retried remove can land after the add
    dest.add(AUDIENCE, [Member("k1", {"email": NEW})])
    dest.remove(AUDIENCE, [Member("k1", {"email": OLD})])

    assert klaviyo.list_members(LIST) == {NEW}


def test_two_members_sharing_a_phone_are_one_profile(sandbox, make_dest):
    klaviyo, cache = sandbox.klaviyo, DictCache()
    first, second = Member("k1", {"email": "ann@example.com", "phone": PHONE}), Member("k2", {"email": "bob@example.com", "phone": PHONE})
    dest = make_dest(cache)
    dest.add(AUDIENCE, [first])
    result = dest.add(AUDIENCE, [second])

    assert [o.status for o in result.outcomes] == [RowStatus.SENT]
    [listed] = klaviyo.members(LIST)
    assert cache.profile_of("k1") == cache.profile_of("k2") == listed["id"]
    assert len(klaviyo.profiles) == 1

    dest.remove(AUDIENCE, [second])  # the profile leaves, and with it every member resolved to it
    assert klaviyo.members(LIST) == []


def test_members_sharing_a_phone_in_one_batch_are_one_profile_sent_once(sandbox, dest):
    members = [Member("k1", {"email": "ann@example.com", "phone": PHONE}), Member("k2", {"email": "bob@example.com", "phone": PHONE})]
    result = dest.add(AUDIENCE, members)
    assert [o.status for o in result.outcomes] == [RowStatus.SENT] * 2
    assert len(sandbox.klaviyo.members(LIST)) == 1
    assert calls(sandbox, "POST", "relationships")[-1][2] == 1  # one profile id in the call, not two


def test_identifiers_naming_two_profiles_join_as_the_email_profile(sandbox, dest):
    klaviyo = sandbox.klaviyo
    by_email = klaviyo.seed_profile("ann@example.com")
    by_phone = klaviyo.seed_profile(phone_number=PHONE)

    result = dest.add(AUDIENCE, [Member("k1", {"email": "ann@example.com", "phone": PHONE})])

    assert [(o.status, o.reason) for o in result.outcomes] == [(RowStatus.SENT, None)]
    assert klaviyo.list_member_ids(LIST) == {by_email} and by_phone not in klaviyo.list_member_ids(LIST)
    assert result.platform_counts["profiles_looked_up"] == 1
    assert klaviyo.profiles[by_email]["phone_number"] is None  # Klaviyo keeps each phone on one profile


def test_an_id_cached_without_its_identifiers_is_resolved_again(sandbox, make_dest):
    klaviyo, cache = sandbox.klaviyo, DictCache()
    stale = klaviyo.seed_profile(OLD)
    cache.ids["k1"] = stale  # an entry cached before identifiers were kept with it: it cannot be trusted
    result = make_dest(cache).add(AUDIENCE, [Member("k1", {"email": NEW})])
    assert result.platform_counts["profiles_imported"] == 1
    assert klaviyo.list_members(LIST) == {NEW}


def test_engine_follows_a_changed_email(tmp_path: Path, sandbox, monkeypatch):
    monkeypatch.setenv("KLAVIYO_KEY", sandbox.klaviyo.key)
    sandbox.klaviyo.create_list("1001")
    write_project(tmp_path, sync_extra="send_unknown_consent: true\n", identifiers="[email, phone]", destination=f"""\
        type: klaviyo_list
        api_key_env: KLAVIYO_KEY
        endpoint: {sandbox.url_for("klaviyo")}
        import_poll_interval_s: 0.01
        """)
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 4)])
    [report] = Engine(load_project(tmp_path)).run()
    assert (report.status, report.added) == ("ok", 3), report.reason

    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2, email="moved2@example.com"),
                                                     person(3, email="moved3@example.com", phone="+1 415 555 0999")])
    [report] = Engine(load_project(tmp_path)).run()

    assert (report.status, report.removed, report.added) == ("ok", 2, 2), report.reason
    listed = {m.get("email") for m in sandbox.klaviyo.members("1001")}
    assert listed == {"person1@example.com", "moved2@example.com", "moved3@example.com"}
