"""GoogleCustomerMatchDestination through the real google-ads SDK (gRPC, TLS and plaintext) and through
``requests`` (Data Manager), against the sandbox emulators on loopback."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from pathlib import Path

import grpc
import pytest

import destinations.google_customer_match as package
from destinations.base import (
    AudienceRef,
    BatchResult,
    Destination,
    Member,
    RowOutcome,
    RowStatus,
)
from destinations.google_customer_match import ads_api
from destinations.google_customer_match._common import Context
from destinations.google_customer_match.ads_api_emulator import (
    GoogleAdsEmulator,
    tls_material,
)
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.google_customer_match.data_manager import PER_MINUTE_WAIT_S
from destinations.google_customer_match.data_manager import classify as dm_classify
from destinations.google_customer_match.destination import (
    GoogleCustomerMatchDestination,
)
from destinations.registry import build_destination
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.sandbox import Sandbox

ADS_TOKEN, DEV_TOKEN, DM_TOKEN = "ads-token", "dev-token", "dm-token"
CID = "1234567890"
AUDIENCE = AudienceRef(sync="vip_google", audience_id="555")
MADID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(i: int, consent: str | None = None, **kinds: str) -> Member:
    ids = kinds or {"email": sha(f"person{i}@example.com")}
    if consent is not None:
        ids = {**ids, "_consent": consent}
    return Member(f"k{i}", ids)


def canon(members: list[dict]) -> list[str]:
    return sorted(json.dumps(m, sort_keys=True) for m in members)


def statuses(result: BatchResult) -> dict[str, tuple[str, str | None]]:
    return {o.member_key: (o.status.value, o.reason) for o in result.outcomes}


# ----- fixtures: one emulator per transport, reset per test ----------------------------------------

@pytest.fixture(scope="module")
def ads_server():
    emulator = GoogleAdsEmulator(ADS_TOKEN, DEV_TOKEN, tls=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def sandbox():
    sb = Sandbox(port=0).start()
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("GADS_TOKEN", ADS_TOKEN)
    monkeypatch.setenv("GADS_DEV", DEV_TOKEN)
    monkeypatch.setenv("DM_TOKEN", DM_TOKEN)
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", tls_material()[0])  # gRPC reads it at the first TLS channel


class AdsTarget:
    transport = "google_ads_api"

    def __init__(self, emulator: GoogleAdsEmulator) -> None:
        self.emulator = emulator
        emulator.reset()
        emulator.latency = 0.0
        emulator.create_user_list(CID, "555")

    def config(self, **overrides) -> GoogleCustomerMatchConfig:
        fields = {"type": "google_customer_match", "customer_id": "123-456-7890", "transport": self.transport,
                  "access_token_env": "GADS_TOKEN", "developer_token_env": "GADS_DEV", "endpoint": self.emulator.endpoint}
        return GoogleCustomerMatchConfig(**(fields | overrides))

    def members(self) -> list[dict]:
        self.emulator.finish_jobs()  # jobs take hours on Google; the emulator completes them on demand
        return self.emulator.user_list_members("555")

    @property
    def calls(self) -> int:
        return len(self.emulator.requests)

    def throttle(self, seconds: float | None) -> None:
        self.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=seconds)

    def fail_transiently(self) -> None:
        self.emulator.inject("INTERNAL")


class DmTarget:
    transport = "data_manager"

    def __init__(self, sb: Sandbox) -> None:
        self.emulator = sb.datamanager
        self.url = sb.url_for("datamanager")
        self.emulator.reset()
        self.emulator.latency = 0.0
        self.emulator.key = DM_TOKEN
        self.emulator.create_user_list(CID, "555")

    def config(self, **overrides) -> GoogleCustomerMatchConfig:
        fields = {"type": "google_customer_match", "customer_id": "123-456-7890", "transport": self.transport,
                  "access_token_env": "DM_TOKEN", "endpoint": self.url, "customer_match_terms_accepted": True}
        return GoogleCustomerMatchConfig(**(fields | overrides))

    def members(self) -> list[dict]:
        return self.emulator.members("555")

    @property
    def calls(self) -> int:
        return self.emulator.request_count

    def throttle(self, seconds: float | None) -> None:
        self.emulator.inject_http(429, retry_after=seconds)

    def fail_transiently(self) -> None:
        self.emulator.inject_http(503)


@pytest.fixture
def ads(ads_server) -> AdsTarget:
    return AdsTarget(ads_server)


@pytest.fixture
def dm(sandbox) -> DmTarget:
    return DmTarget(sandbox)


@pytest.fixture(params=["google_ads_api", "data_manager"])
def target(request, ads_server, sandbox):
    return AdsTarget(ads_server) if request.param == "google_ads_api" else DmTarget(sandbox)


@pytest.fixture
def opened():
    made: list[GoogleCustomerMatchDestination] = []

    def make(config: GoogleCustomerMatchConfig, name: str = "google_vip") -> GoogleCustomerMatchDestination:
        destination = GoogleCustomerMatchDestination(config, name=name)
        made.append(destination)
        return destination

    yield make
    for destination in made:
        destination.close()


# ----- interface ----------------------------------------------------------------------------------

def test_is_a_destination_with_declared_limits(ads, dm):
    assert issubclass(GoogleCustomerMatchDestination, Destination)
    assert package.SPEC.connector.endswith(":GoogleCustomerMatchDestination")
    caps = GoogleCustomerMatchDestination.capabilities
    assert (GoogleCustomerMatchDestination.kind, caps.platform, caps.max_batch, caps.channel, caps.consent_marker) == (
        "google_customer_match", "google", 10_000, "ads", True)
    assert caps.identifiers == {"email", "phone", "first_name", "last_name", "country", "postal_code", "madid", "external_id"}
    dm_caps = GoogleCustomerMatchDestination.capabilities_for(dm.config())
    assert dm_caps.platform == "google_data_manager" and "external_id" not in dm_caps.identifiers
    assert GoogleCustomerMatchDestination.capabilities_for(ads.config()) is caps
    assert (ads_api.MAX_OPERATIONS_PER_ADD, ads_api.MAX_IDENTIFIERS_PER_OPERATION) == (10_000, 20)


def test_the_instance_carries_its_transports_capabilities(dm, opened):
    destination = opened(dm.config())
    assert destination.capabilities.platform == "google_data_manager"
    assert destination.name == "google_vip"


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


def test_a_member_with_many_identifiers_is_one_operation(ads, opened):
    destination = opened(ads.config())
    rich = member(1, email=sha("a@x.com"), phone=sha("+14155550101"), first_name=sha("bo"), last_name=sha("li"),
                  country="GB", postal_code="SW1A 1AA", madid=MADID, external_id="crm-77")
    result = destination.add(AUDIENCE, [rich])
    assert result.platform_counts == {"jobs": 1, "operations": 1, "failed_operations": 0}
    [job] = destination.jobs
    assert ads.emulator.jobs[job]["operations"] == 1
    [held] = ads.members()
    assert set(held) == {"hashed_email", "hashed_phone_number", "address", "mobile_id", "third_party_user_id"}


def test_data_manager_sends_contact_info_and_mobile_ids_in_separate_requests(dm, opened):
    destination = opened(dm.config())
    result = destination.add(AUDIENCE, [member(1, email=sha("a@x.com"), madid=MADID), member(2, madid=MADID.replace("6d", "7e"))])
    assert result.requests == 2 and [o.status for o in result.outcomes] == [RowStatus.SENT] * 2
    contact, mobile = dm.emulator.bodies[-2:]
    assert contact["audienceMembers"] == [{"userData": {"userIdentifiers": [{"emailAddress": sha("a@x.com")}]}}]
    assert contact["encoding"] == "HEX" and contact["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    assert mobile["audienceMembers"] == [{"mobileData": {"mobileIds": [MADID.replace("6d", "7e")]}}]
    assert contact["destinations"] == [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID}, "productDestinationId": "555"}]


def test_operations_are_split_per_add_call(ads, opened, monkeypatch):
    monkeypatch.setattr(ads_api, "MAX_OPERATIONS_PER_ADD", 4)
    destination = opened(ads.config())
    result = destination.add(AUDIENCE, [member(i) for i in range(10)])
    adds = [n for method, n in ads.emulator.requests if method == "AddOfflineUserDataJobOperations"]
    assert adds == [4, 4, 2] and result.requests == 5  # create, 3 adds, run
    assert len(ads.members()) == 10


def test_a_batch_of_10000_is_one_call_and_a_larger_one_is_refused_unsent(target, opened):
    destination = opened(target.config())
    result = destination.add(AUDIENCE, [member(i) for i in range(10_000)])
    assert all(o.status is RowStatus.SENT for o in result.outcomes)
    assert result.requests == (3 if target.transport == "google_ads_api" else 1)
    assert len(target.members()) == 10_000
    before = target.calls
    with pytest.raises(PermanentError, match="10001 members"):
        destination.add(AUDIENCE, [member(i) for i in range(10_001)])
    assert target.calls == before


# ----- jobs and consent -------------------------------------------------------------------------

def test_creates_removes_and_consent_groups_go_in_separate_jobs(ads, opened):
    destination = opened(ads.config())
    members = [member(1, "granted"), member(2, "unknown"), member(3), member(4, "granted")]
    destination.add(AUDIENCE, members)
    destination.remove(AUDIENCE, [member(1, "granted"), member(2)])
    jobs = [ads.emulator.jobs[name] for name in destination.jobs]
    assert [(j["operation"], j["operations"], j["consent"]) for j in jobs] == [
        ("create", 2, {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}),
        ("create", 2, {}),  # unknown consent (and no marker): consent left unset
        ("remove", 2, {}),
    ]
    assert all(j["run"] for j in jobs)
    assert sorted(m["hashed_email"] for m in ads.members()) == sorted([sha("person3@example.com"), sha("person4@example.com")])


def test_data_manager_puts_consent_on_each_granted_member(dm, opened):
    destination = opened(dm.config())
    destination.add(AUDIENCE, [member(1, "granted"), member(2, "unknown"), member(3)])
    destination.remove(AUDIENCE, [member(1, "granted")])
    ingest, remove = dm.emulator.bodies[-2:]
    assert [m.get("consent") for m in ingest["audienceMembers"]] == [
        {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}, None, None]
    assert "consent" not in remove["audienceMembers"][0] and "termsOfService" not in remove


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


# ----- row failures -------------------------------------------------------------------------------

def test_google_ads_partial_failures_map_back_to_member_keys(ads, opened):
    destination = opened(ads.config())
    members = [member(i, "granted" if i % 2 else "unknown") for i in range(8)]
    members[2] = member(2, "unknown", email="NOT-A-HASH")
    members[5] = member(5, "granted", email=sha("e5@x.com"), first_name=sha("a"), last_name=sha("b"), country="USA", postal_code="1")
    members[7] = member(7, "granted", email=sha("e7@x.com").upper())
    result = destination.add(AUDIENCE, members)
    assert {k: v for k, v in statuses(result).items() if v[0] != "sent"} == {
        "k2": ("rejected", "INVALID_SHA256_FORMAT"), "k5": ("rejected", "INVALID_COUNTRY_CODE"),
        "k7": ("rejected", "INVALID_SHA256_FORMAT")}
    assert result.platform_counts == {"jobs": 2, "operations": 5, "failed_operations": 3}
    assert sorted(m["hashed_email"] for m in ads.members()) == sorted(sha(f"person{i}@example.com") for i in (0, 1, 3, 4, 6))


def test_google_ads_does_not_run_a_job_whose_operations_all_failed(ads, opened):
    destination = opened(ads.config())
    result = destination.add(AUDIENCE, [member(1, email="bad")])
    assert statuses(result) == {"k1": ("rejected", "INVALID_SHA256_FORMAT")}
    assert destination.jobs == [] and [m for m, _ in ads.emulator.requests] == ["CreateOfflineUserDataJob", "AddOfflineUserDataJobOperations"]


def test_data_manager_fast_fail_rejects_the_named_members_and_sends_the_rest(dm, opened):
    destination = opened(dm.config())
    members = [member(i) for i in range(6)]
    members[1] = member(1, email="ab" * 16)  # hex, but not 32 bytes
    members[4] = member(4, email="not hex!")
    result = destination.add(AUDIENCE, members)
    assert {k: v for k, v in statuses(result).items() if v[0] != "sent"} == {
        "k1": ("rejected", "INVALID_SHA256_FORMAT"), "k4": ("rejected", "INVALID_HEX_ENCODING")}
    assert result.requests == 2 and result.platform_counts["rejected_members"] == 2
    assert sorted(m["hashed_email"] for m in dm.members()) == sorted(sha(f"person{i}@example.com") for i in (0, 2, 3, 5))


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


def test_data_manager_throttling_without_a_wait_waits_out_the_minute(dm, opened):
    destination = opened(dm.config())
    dm.throttle(None)
    with pytest.raises(RateLimited) as caught:
        destination.add(AUDIENCE, [member(1)])
    assert caught.value.retry_after == PER_MINUTE_WAIT_S == 60.0


def test_temporary_failures_are_transient(target, opened):
    destination = opened(target.config())
    target.fail_transiently()
    with pytest.raises(TransientError) as caught:
        destination.add(AUDIENCE, [member(1)])
    assert not isinstance(caught.value, RateLimited)


def test_a_throttled_add_call_abandons_its_job_and_the_retry_lands(ads, opened):
    destination = opened(ads.config())
    ads.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=3, method="AddOfflineUserDataJobOperations")
    with pytest.raises(RateLimited):
        destination.add(AUDIENCE, [member(1)])
    assert destination.jobs == []
    destination.add(AUDIENCE, [member(1)])
    assert [j["run"] for j in ads.emulator.jobs.values()] == [False, True]
    assert ads.members() == [{"hashed_email": sha("person1@example.com")}]


def test_google_ads_auth_errors_say_what_to_fix(ads, opened, monkeypatch):
    monkeypatch.setenv("GADS_TOKEN", "expired")
    with pytest.raises(ConfigError) as caught:
        opened(ads.config()).add(AUDIENCE, [member(1)])
    assert str(caught.value) == ("Google Ads rejected the OAuth access token of destination 'google_vip' (OAUTH_TOKEN_INVALID):"
                                 " export a fresh token with the https://www.googleapis.com/auth/adwords scope as GADS_TOKEN")
    monkeypatch.setenv("GADS_TOKEN", ADS_TOKEN)
    monkeypatch.setenv("GADS_DEV", "wrong")
    with pytest.raises(ConfigError, match="developer token of destination 'google_vip'.*as GADS_DEV"):
        opened(ads.config()).add(AUDIENCE, [member(1)])


def test_google_ads_manager_access_needs_login_customer_id(ads, opened):
    ads.emulator.link_manager("999-999-9999", CID)
    with pytest.raises(ConfigError) as caught:
        opened(ads.config()).add(AUDIENCE, [member(1)])
    assert str(caught.value) == ("The Google account behind GADS_TOKEN has no access to Google Ads customer 1234567890"
                                 " (destination 'google_vip'); if access goes through a manager account, set"
                                 " login_customer_id to that manager's id")
    with pytest.raises(ConfigError, match="login_customer_id 1111111111 is not a manager of customer 1234567890"):
        opened(ads.config(login_customer_id="1111111111")).add(AUDIENCE, [member(1)])
    result = opened(ads.config(login_customer_id="999-999-9999")).add(AUDIENCE, [member(1)])
    assert statuses(result) == {"k1": ("sent", None)}


def test_data_manager_auth_errors_say_what_to_fix(dm, opened, monkeypatch):
    monkeypatch.setenv("DM_TOKEN", "expired")
    with pytest.raises(ConfigError) as caught:
        opened(dm.config()).add(AUDIENCE, [member(1)])
    assert str(caught.value) == ("Google Data Manager rejected the access token of destination 'google_vip': export a fresh"
                                 " OAuth token with the https://www.googleapis.com/auth/datamanager scope as DM_TOKEN")
    monkeypatch.setenv("DM_TOKEN", DM_TOKEN)
    dm.emulator.link_manager("9999999999", CID)
    with pytest.raises(ConfigError, match="if access goes through a manager account, set login_customer_id"):
        opened(dm.config()).add(AUDIENCE, [member(1)])
    assert statuses(opened(dm.config(login_customer_id="9999999999")).add(AUDIENCE, [member(1)])) == {"k1": ("sent", None)}


def test_data_manager_needs_the_customer_match_terms(dm, opened):
    with pytest.raises(ConfigError, match="set customer_match_terms_accepted: true in destination 'google_vip'"):
        opened(dm.config(customer_match_terms_accepted=False)).add(AUDIENCE, [member(1)])
    assert dm.members() == []


def test_an_unknown_user_list_is_a_config_error(target, opened):
    with pytest.raises(ConfigError, match="audience_id"):
        opened(target.config()).add(AudienceRef("vip_google", "404"), [member(1)])


def test_missing_secrets_are_config_errors(ads, monkeypatch):
    monkeypatch.delenv("GADS_DEV")
    with pytest.raises(ConfigError, match="GADS_DEV is not set"):
        GoogleCustomerMatchDestination(ads.config())
    with pytest.raises(ConfigError, match="needs developer_token_env"):
        GoogleCustomerMatchDestination(ads.config(developer_token_env=None))


def test_empty_batch_makes_no_call(target, opened):
    destination = opened(target.config())
    before = target.calls
    assert destination.add(AUDIENCE, []) == BatchResult("add", (), requests=0)
    assert destination.remove(AUDIENCE, []).requests == 0
    assert target.calls == before and destination.jobs == []


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


def test_poll_jobs_reports_a_failed_job(ads, opened):
    destination = opened(ads.config())
    destination.add(AUDIENCE, [member(1)])
    ads.emulator.fail_next_job()
    ads.emulator.finish_jobs()
    [report] = destination.poll_jobs().values()
    assert report == {"status": "FAILED", "failure_reason": "UNKNOWN", "match_rate_range": report["match_rate_range"]}
    calls = len(ads.emulator.requests)
    assert destination.poll_jobs(["not-a-job' OR 1=1"]) == {
        "not-a-job' OR 1=1": {"status": "NOT_FOUND", "failure_reason": None, "match_rate_range": None}}
    assert len(ads.emulator.requests) == calls  # never put into a GAQL query


# ----- the plaintext sandbox endpoint --------------------------------------------------------------

def test_a_plaintext_endpoint_uses_an_insecure_channel_with_the_bearer_token(opened, monkeypatch):
    emulator = GoogleAdsEmulator(ADS_TOKEN, DEV_TOKEN, tls=False).start()
    try:
        emulator.create_user_list(CID, "555")
        config = GoogleCustomerMatchConfig(type="google_customer_match", customer_id=CID, transport="google_ads_api",
                                           access_token_env="GADS_TOKEN", developer_token_env="GADS_DEV",
                                           endpoint=emulator.endpoint, login_customer_id=CID)
        assert config.endpoint.startswith("http://")
        destination = opened(config)
        assert statuses(destination.add(AUDIENCE, [member(1), member(2)])) == {"k1": ("sent", None), "k2": ("sent", None)}
        destination.remove(AUDIENCE, [member(1)])
        emulator.finish_jobs()
        assert emulator.user_list_members("555") == [{"hashed_email": sha("person2@example.com")}]
        monkeypatch.setenv("GADS_TOKEN", "wrong")
        with pytest.raises(ConfigError, match="OAUTH_TOKEN_INVALID"):
            opened(config).add(AUDIENCE, [member(3)])
    finally:
        emulator.stop()


# ----- classification tables --------------------------------------------------------------------

CTX = Context("google_vip", CID, None, "GADS_TOKEN", "GADS_DEV", "https://example.invalid", "data_manager")


def dm_error(status: int, state: str, reasons: list[str] = (), violations: list[dict] = (), metadata: dict | None = None) -> dict:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": r, "domain": "datamanager.googleapis.com",
                **({"metadata": metadata} if metadata else {})} for r in reasons]
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": list(violations)})
    return {"error": {"code": status, "message": "m", "status": state, "details": details}}


@pytest.mark.parametrize("status, body, headers, expected, wait", [
    (200, {"requestId": "r"}, {}, None, None),
    (200, "<html>ok</html>", {}, TransientError, None),
    (429, dm_error(429, "RESOURCE_EXHAUSTED"), {"Retry-After": "12"}, RateLimited, 12.0),
    (429, dm_error(429, "RESOURCE_EXHAUSTED"), {}, RateLimited, 60.0),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"}]}}, {}, RateLimited, 33.0),
    (401, dm_error(401, "UNAUTHENTICATED"), {}, ConfigError, None),
    (403, dm_error(403, "PERMISSION_DENIED"), {}, ConfigError, None),
    (400, dm_error(400, "INVALID_ARGUMENT", ["TERMS_AND_CONDITIONS_NOT_SIGNED"]), {}, ConfigError, None),
    (400, dm_error(400, "INVALID_ARGUMENT", ["INVALID_ARGUMENT"], [{"field": "destinations[0].product_destination_id",
                                                                     "reason": "INVALID_USER_LIST_ID"}]), {}, ConfigError, None),
    (400, dm_error(400, "INVALID_ARGUMENT", ["INVALID_ARGUMENT"], [{"field": "audience_members", "reason": "TOO_MANY_AUDIENCE_MEMBERS"}]),
     {}, PermanentError, None),
    (404, "<html>Not Found</html>", {}, ConfigError, None),
    (500, dm_error(500, "INTERNAL"), {}, TransientError, None),
    (503, "upstream connect error", {}, TransientError, None),
    (418, {}, {}, TransientError, None),
])
def test_data_manager_classify_table(status, body, headers, expected, wait):
    failure = dm_classify(status, body, headers, CTX)
    assert type(failure) is expected if expected else failure is None
    if wait is not None:
        assert failure.retry_after == wait


def test_data_manager_daily_quota_waits_until_pacific_midnight():
    body = dm_error(429, "RESOURCE_EXHAUSTED", ["RESOURCE_EXHAUSTED"], metadata={"quota_limit": "IngestionMutateRequestsPerDayPerProject"})
    failure = dm_classify(429, body, {}, CTX)
    assert isinstance(failure, RateLimited) and 0 < failure.retry_after <= 24 * 3600 + 3600


class _Call:
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def ads_exception(kind: str, name: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT, retry_delay: int | None = None):
    from google.ads.googleads.errors import GoogleAdsException
    from google.ads.googleads.v26.errors.types import errors

    error = errors.GoogleAdsError(message=f"{name} for {sha('x@y.com')}")
    setattr(error.error_code, kind, getattr(type(getattr(error.error_code, kind)), name))
    if retry_delay is not None:
        error.details.quota_error_details.retry_delay = datetime.timedelta(seconds=retry_delay)  # proto-plus marshals Duration
    return GoogleAdsException(_Call(code), _Call(code), errors.GoogleAdsFailure(errors=[error]), "req-1")


@pytest.mark.parametrize("kind, name, expected", [
    ("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED", RateLimited),
    ("quota_error", "ACCESS_PROHIBITED", ConfigError),
    ("authentication_error", "OAUTH_TOKEN_EXPIRED", ConfigError),
    ("authentication_error", "CUSTOMER_NOT_FOUND", ConfigError),
    ("authorization_error", "DEVELOPER_TOKEN_NOT_APPROVED", ConfigError),
    ("authorization_error", "USER_PERMISSION_DENIED", ConfigError),
    ("internal_error", "TRANSIENT_ERROR", TransientError),
    ("database_error", "CONCURRENT_MODIFICATION", TransientError),
    ("offline_user_data_job_error", "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS", ConfigError),
    ("offline_user_data_job_error", "INVALID_USER_LIST_ID", ConfigError),
    ("offline_user_data_job_error", "JOB_ALREADY_STARTED", PermanentError),
    ("request_error", "TOO_MANY_MUTATE_OPERATIONS", PermanentError),
    ("ad_error", "APPROXIMATELY_TOO_LONG", TransientError),  # unknown here: adds and removes are idempotent
])
def test_google_ads_classify_table(kind, name, expected):
    failure = ads_api.classify(ads_exception(kind, name), CTX)
    assert type(failure) is expected
    assert sha("x@y.com") not in (failure.detail or "") and name in (failure.detail or "")


def test_google_ads_classify_uses_the_quota_retry_delay():
    failure = ads_api.classify(ads_exception("quota_error", "RESOURCE_EXHAUSTED", grpc.StatusCode.RESOURCE_EXHAUSTED, 90), CTX)
    assert isinstance(failure, RateLimited) and failure.retry_after == 90
    assert ads_api.classify(ads_exception("quota_error", "RESOURCE_EXHAUSTED"), CTX).retry_after == ads_api.DEFAULT_RETRY_AFTER_S


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
