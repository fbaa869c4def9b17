"""GoogleCustomerMatchDestination over both transports (the google-ads SDK over gRPC, ``requests`` to the
Data Manager API) against their emulators on loopback: what holds whichever transport a destination names.

The contract suite (``tests/destinations/test_contract.py``) covers the data_manager transport's empty
batches, oversized batches, rows without identifiers, throttling, credentials and the shared status table.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import destinations.google_customer_match as package
from destinations.base import AudienceRef, Destination, RowOutcome, RowStatus, RunsJobs
from destinations.google_customer_match.config import capabilities_for
from destinations.google_customer_match.connector import GoogleCustomerMatchDestination
from destinations.registry import build_destination
from syncer.errors import ConfigError, RateLimited, TransientError
from tests.destinations.google_customer_match.helpers import AUDIENCE, CID, canon, member, sha, statuses

# ----- interface ----------------------------------------------------------------------------------

def test_is_a_destination_with_declared_limits(ads, dm):
    assert issubclass(GoogleCustomerMatchDestination, Destination)
    assert package.SPEC.connector.endswith(":GoogleCustomerMatchDestination")
    assert package.SPEC.capabilities is capabilities_for  # read without importing the connector or the SDK
    caps = GoogleCustomerMatchDestination.capabilities
    assert (GoogleCustomerMatchDestination.kind, caps.platform, caps.max_batch, caps.channel, caps.consent_marker) == (
        "google_customer_match", "google", 10_000, "ads", True)
    assert caps.identifiers == {"email", "phone", "first_name", "last_name", "country", "postal_code", "madid", "external_id"}
    dm_caps = capabilities_for(dm.config())
    assert dm_caps.platform == "google_data_manager" and "external_id" not in dm_caps.identifiers
    assert capabilities_for(ads.config()) is caps
    # the kinds Google recognises one person by, per transport (the Data Manager API takes no CRM id)
    assert caps.match_keys == {"email", "phone", "madid", "external_id"} and dm_caps.match_keys == {"email", "phone", "madid"}


def test_the_instance_carries_its_transports_capabilities_and_runs_jobs(dm, opened):
    destination = opened(dm.config())
    assert destination.capabilities.platform == "google_data_manager"
    assert destination.name == "google_vip"
    assert isinstance(destination, RunsJobs) and destination.jobs == []


# ----- adds and removes ---------------------------------------------------------------------------

def test_adds_and_removes_land(target, opened):
    destination = opened(target.config())
    full = member(0, email=sha("ann@example.com"), phone=sha("+14155550100"), first_name=sha("ann"),
                  last_name=sha("lee"), country="US", postal_code="94045")
    members = [full, member(1), member(2, phone=sha("+14155550102"))]
    added = destination.add(AUDIENCE, members)
    assert added.outcomes == tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members)
    address = {"hashed_first_name": sha("ann"), "hashed_last_name": sha("lee"), "country_code": "US", "postal_code": "94045"}
    expected = [{"hashed_email": sha("ann@example.com"), "hashed_phone_number": sha("+14155550100"), "address": address},
                {"hashed_email": sha("person1@example.com")}, {"hashed_phone_number": sha("+14155550102")}]
    assert canon(target.members()) == canon(expected)

    removed = destination.remove(AUDIENCE, members[:2])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT, RowStatus.SENT]
    assert target.members() == [{"hashed_phone_number": sha("+14155550102")}]


def test_a_batch_of_10000_is_one_call(target, opened):
    destination = opened(target.config())
    result = destination.add(AUDIENCE, [member(i) for i in range(10_000)])
    assert all(o.status is RowStatus.SENT for o in result.outcomes)
    assert result.requests == (3 if target.transport == "google_ads_api" else 1)
    assert len(target.members()) == 10_000


# ----- consent and rows ---------------------------------------------------------------------------

def test_denied_members_are_never_added_but_are_still_removed(target, opened):
    destination = opened(target.config())
    before = target.calls
    only_denied = destination.add(AUDIENCE, [member(1, "denied")])
    assert statuses(only_denied) == {"k1": ("rejected", "consent_denied")} and only_denied.requests == 0
    assert target.calls == before
    mixed = destination.add(AUDIENCE, [member(1, "denied"), member(2, "granted")])
    assert statuses(mixed) == {"k1": ("rejected", "consent_denied"), "k2": ("sent", None)}
    assert target.members() == [{"hashed_email": sha("person2@example.com")}]
    gone = destination.remove(AUDIENCE, [member(2, "denied")])  # consent withdrawn: the member must leave
    assert statuses(gone) == {"k2": ("sent", None)}
    assert target.members() == []


def test_members_without_a_usable_identifier_are_rejected_unsent(target, opened):
    destination = opened(target.config())
    partial_address = member(1, first_name=sha("ann"), country="US")  # an address needs all four parts
    result = destination.add(AUDIENCE, [partial_address, member(2)])
    assert statuses(result) == {"k1": ("rejected", "no_supported_identifier"), "k2": ("sent", None)}


# ----- call failures ------------------------------------------------------------------------------

@pytest.mark.parametrize("asked", [42, 7])
def test_throttling_raises_rate_limited_with_googles_wait(target, opened, asked):
    destination = opened(target.config())
    target.throttle(asked)
    with pytest.raises(RateLimited) as caught:
        destination.add(AUDIENCE, [member(1)])
    assert caught.value.retry_after == asked
    assert "throttled" in caught.value.message and sha("person1@example.com") not in str(caught.value.detail)
    assert statuses(destination.add(AUDIENCE, [member(1)])) == {"k1": ("sent", None)}  # the retry goes through


def test_temporary_failures_are_transient(target, opened):
    destination = opened(target.config())
    target.fail_transiently()
    with pytest.raises(TransientError) as caught:
        destination.add(AUDIENCE, [member(1)])
    assert not isinstance(caught.value, RateLimited)


def test_an_unknown_user_list_is_a_config_error(target, opened):
    with pytest.raises(ConfigError, match="audience_id"):
        opened(target.config()).add(AudienceRef("vip_google", "404"), [member(1)])


def test_check_verifies_credentials_and_the_user_list(target, opened, monkeypatch):
    destination = opened(target.config())
    destination.check()
    destination.check(AUDIENCE)
    with pytest.raises(ConfigError, match="audience_id"):
        destination.check(AudienceRef("vip_google", "404"))
    monkeypatch.setenv("GADS_TOKEN", "wrong")
    monkeypatch.setenv("DM_TOKEN", "wrong")
    with pytest.raises(ConfigError, match="TOKEN"):
        opened(target.config()).check()


# ----- job polling ----------------------------------------------------------------------------------

def test_poll_jobs_reports_final_status_and_match_rate_range_without_waiting(target, opened):
    destination = opened(target.config())
    destination.add(AUDIENCE, [member(i, "granted") for i in range(50)])
    [name] = destination.jobs
    started = time.perf_counter()
    first = destination.poll_jobs()
    assert first[name]["status"] in ("RUNNING", "PROCESSING") and first[name]["status"] not in destination.final_statuses
    second = destination.poll_jobs([name, "customers/1234567890/offlineUserDataJobs/999" if target.transport == "google_ads_api"
                                    else "00000000-0000-0000-0000-000000000000"])
    assert time.perf_counter() - started < 2.0  # polling reads a status; it never waits for a job
    final = second[name]
    assert final["status"] == "SUCCESS" and final["status"] in destination.final_statuses and final["failure_reason"] is None
    assert final["match_rate_range"].startswith("MATCH_RANGE_" if target.transport == "google_ads_api" else "MATCH_RATE_RANGE_")
    assert [v["status"] for k, v in second.items() if k != name] == ["NOT_FOUND"]
    assert destination.poll_jobs([]) == {}


# ----- through the engine ---------------------------------------------------------------------------

def test_the_engine_syncs_a_segment_into_a_user_list(target, tmp_path: Path, monkeypatch):
    from syncer.delivery.apply import RetryPolicy
    from syncer.delivery.engine import Engine
    from syncer.project.project import load_project
    from tests.conftest import person, write_customers, write_project

    write_customers(tmp_path / "warehouse.duckdb", [person(i, ads_consent=None if i > 20 else True) for i in range(1, 26)]
                    + [person(26, ads_consent=False)])
    extra = "developer_token_env: GADS_DEV\n" if target.transport == "google_ads_api" else "customer_match_terms_accepted: true\n"
    token = "GADS_TOKEN" if target.transport == "google_ads_api" else "DM_TOKEN"
    endpoint = target.emulator.endpoint if target.transport == "google_ads_api" else target.url
    write_project(tmp_path, identifiers="[email, phone]", destination=(
        f"type: google_customer_match\ncustomer_id: \"{CID}\"\ntransport: {target.transport}\naccess_token_env: {token}\n"
        f"endpoint: {endpoint}\n{extra}").replace('"1001"', '"555"'))
    (tmp_path / "syncs" / "buyers_sync.yml").write_text((tmp_path / "syncs" / "buyers_sync.yml").read_text().replace('"1001"', '"555"'))
    engine = Engine(load_project(tmp_path), policy=RetryPolicy(attempts=2, base_wait=0.0, jitter=0.0), sleep=lambda s: None)
    try:
        [report] = engine.run()
        assert (report.status, report.added, report.removed) == ("ok", 25, 0)  # the member without ads consent never goes
        held = target.members()
        assert sorted(m["hashed_email"] for m in held) == sorted(sha(f"person{i}@example.com") for i in range(1, 26))
        assert all("hashed_phone_number" in m for m in held)
        if target.transport == "google_ads_api":  # the engine's consent marker picks the job
            jobs = [(j["consent"].get("ad_user_data", "unset"), j["operations"]) for j in target.emulator.jobs.values()]
            assert jobs == [("GRANTED", 20), ("unset", 5)]
        else:
            consents = [m.get("consent", {}).get("adUserData") for m in target.emulator.bodies[-1]["audienceMembers"]]
            assert sorted(consents, key=str) == sorted(["CONSENT_GRANTED"] * 20 + [None] * 5, key=str)
        write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 21)])
        [again] = engine.run()
        assert (again.added, again.removed) == (0, 5)
        assert len(target.members()) == 20
    finally:
        engine.close()


def test_build_destination_names_the_instance(ads):
    destination = build_destination("google_vip_file", ads.config())
    try:
        assert isinstance(destination, GoogleCustomerMatchDestination) and destination.name == "google_vip_file"
    finally:
        destination.close()
