"""The google_ads_api transport through the real google-ads SDK (gRPC, TLS and plaintext) against the
Google Ads emulator: jobs, partial failures, credentials, and what a failed call means (``classify``)."""

from __future__ import annotations

import datetime

import grpc
import pytest
from google.api_core import exceptions as core_exceptions

from destinations.base import AudienceRef
from destinations.google_customer_match import ads_api
from destinations.google_customer_match.ads_api_client import response_of
from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.google_customer_match.connector import GoogleCustomerMatchDestination
from destinations.responses import PlatformResponse
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from tests.destinations.google_customer_match.helpers import (
    ADS_TOKEN,
    AUDIENCE,
    CID,
    DEV_TOKEN,
    MADID,
    MemoryJobBook,
    member,
    sha,
    statuses,
)


def test_declares_its_sub_limits():
    assert (ads_api.MAX_OPERATIONS_PER_ADD, ads_api.MAX_IDENTIFIERS_PER_OPERATION) == (10_000, 20)


# ----- jobs ---------------------------------------------------------------------------------------

def test_a_member_with_many_identifiers_is_one_operation(ads, opened):
    destination = opened(ads.config())
    rich = member(1, email=sha("a@x.com"), phone=sha("+14155550101"), first_name=sha("bo"), last_name=sha("li"),
                  country="GB", postal_code="SW1A 1AA")
    result = destination.add(AUDIENCE, [rich])
    assert result.platform_counts == {"jobs": 1, "operations": 1, "failed_operations": 0}
    [job] = destination.jobs
    assert ads.emulator.jobs[job]["operations"] == 1
    [held] = ads.members()
    assert set(held) == {"hashed_email", "hashed_phone_number", "address"}


@pytest.mark.parametrize("key_type, kinds, held", [
    ("CRM_ID", {"external_id": "crm-77"}, {"third_party_user_id": "crm-77"}),
    ("MOBILE_ADVERTISING_ID", {"madid": MADID}, {"mobile_id": MADID}),
])
def test_crm_id_and_mobile_id_lists_take_their_own_key(ads, opened, key_type, kinds, held):
    ads.emulator.create_user_list(CID, "556", upload_key_type=key_type)
    destination = opened(ads.config())
    result = destination.add(AudienceRef("vip_google", "556"), [member(1, **kinds), member(2)])
    assert statuses(result) == {"k1": ("sent", None), "k2": ("rejected", "INCOMPATIBLE_UPLOAD_KEY_TYPE")}
    ads.emulator.finish_jobs()
    assert ads.emulator.user_list_members("556") == [held]


def test_operations_are_split_per_add_call(ads, opened, monkeypatch):
    monkeypatch.setattr(ads_api, "MAX_OPERATIONS_PER_ADD", 4)
    destination = opened(ads.config())
    result = destination.add(AUDIENCE, [member(i) for i in range(10)])
    adds = [n for method, n in ads.emulator.requests if method == "AddOfflineUserDataJobOperations"]
    assert adds == [4, 4, 2] and result.requests == 5  # create, 3 adds, run
    assert len(ads.members()) == 10


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


def test_an_identifier_of_another_upload_key_type_is_rejected_for_good_and_the_rest_lands(ads, opened):
    destination = opened(ads.config())  # the list matches by contact info
    members = [member(1), member(2, madid=MADID), member(3, email=sha("c@x.com"), external_id="crm-3"), member(4)]
    result = destination.add(AUDIENCE, members)
    assert statuses(result) == {"k1": ("sent", None), "k2": ("rejected", "INCOMPATIBLE_UPLOAD_KEY_TYPE"),
                                "k3": ("rejected", "INCOMPATIBLE_UPLOAD_KEY_TYPE"), "k4": ("sent", None)}
    assert sorted(m["hashed_email"] for m in ads.members()) == sorted([sha("person1@example.com"), sha("person4@example.com")])


@pytest.mark.parametrize("kind, code, expected", [
    ("internal_error", "INTERNAL_ERROR", "retryable"),
    ("internal_error", "TRANSIENT_ERROR", "retryable"),
    ("database_error", "CONCURRENT_MODIFICATION", "retryable"),
    ("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED", "retryable"),
    ("offline_user_data_job_error", "INVALID_SHA256_FORMAT", "rejected"),
    ("offline_user_data_job_error", "INCOMPATIBLE_UPLOAD_KEY_TYPE", "rejected"),
])
def test_a_failed_operation_is_retryable_only_when_google_says_so(ads, opened, kind, code, expected):
    destination = opened(ads.config())
    ads.emulator.fail_operations({1: (kind, code)})
    result = destination.add(AUDIENCE, [member(1), member(2), member(3)])
    assert statuses(result) == {"k1": ("sent", None), "k2": (expected, code), "k3": ("sent", None)}
    assert len(ads.members()) == 2


def test_google_ads_does_not_run_a_job_whose_operations_all_failed(ads, opened):
    destination = opened(ads.config())
    result = destination.add(AUDIENCE, [member(1, email="bad")])
    assert statuses(result) == {"k1": ("rejected", "INVALID_SHA256_FORMAT")}
    assert destination.jobs == [] and [m for m, _ in ads.emulator.requests] == ["CreateOfflineUserDataJob", "AddOfflineUserDataJobOperations"]


# ----- call failures ------------------------------------------------------------------------------

def test_without_a_job_book_a_retried_call_starts_its_job_again(ads, opened):
    destination = opened(ads.config())
    ads.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=3, method="AddOfflineUserDataJobOperations")
    with pytest.raises(RateLimited):
        destination.add(AUDIENCE, [member(1)])
    assert destination.jobs == []
    destination.add(AUDIENCE, [member(1)])
    assert [j["run"] for j in ads.emulator.jobs.values()] == [False, True]
    assert ads.members() == [{"hashed_email": sha("person1@example.com")}]


def test_with_a_job_book_a_throttled_add_is_retried_on_the_same_job(ads, opened):
    destination = opened(ads.config())
    destination.job_book = book = MemoryJobBook()
    ads.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=3, method="AddOfflineUserDataJobOperations")
    with pytest.raises(RateLimited):
        destination.add(AUDIENCE, [member(1)])
    assert book.stages == ["creating", "created", "adding", "created"]  # refused before applying: back to created
    result = destination.add(AUDIENCE, [member(1)])
    assert statuses(result) == {"k1": ("sent", None)} and result.requests == 2  # add and run: the job was reused
    [job] = ads.emulator.jobs.values()
    assert job["run"] and job["operations"] == 1 and destination.jobs == [job["resource_name"]]
    again = destination.add(AUDIENCE, [member(1)])  # the same batch once more, before any commit: nothing sent
    assert statuses(again) == {"k1": ("sent", None)} and again.requests == 0 and len(ads.emulator.jobs) == 1


def test_a_job_that_holds_some_operations_is_never_filled_again(ads, opened, monkeypatch):
    monkeypatch.setattr(ads_api, "MAX_OPERATIONS_PER_ADD", 2)
    destination = opened(ads.config())
    destination.job_book = MemoryJobBook()
    ads.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=3, method="AddOfflineUserDataJobOperations", skip=1)
    with pytest.raises(RateLimited):  # the second Add is refused: the first one's operations are in the job
        destination.add(AUDIENCE, [member(i) for i in range(4)])
    result = destination.add(AUDIENCE, [member(i) for i in range(4)])
    assert result.platform_counts["abandoned_jobs"] == 1 and all(o.status.value == "sent" for o in result.outcomes)
    first, second = ads.emulator.jobs.values()
    assert (first["run"], first["operations"]) == (False, 2) and (second["run"], second["operations"]) == (True, 4)


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


def test_missing_secrets_are_config_errors(ads, monkeypatch):
    monkeypatch.delenv("GADS_DEV")
    with pytest.raises(ConfigError, match="GADS_DEV is not set"):
        GoogleCustomerMatchDestination(ads.config())
    with pytest.raises(ConfigError, match="needs developer_token_env"):
        GoogleCustomerMatchDestination(ads.config(developer_token_env=None))


# ----- job polling ----------------------------------------------------------------------------------

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


# ----- classification -----------------------------------------------------------------------------

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
def test_google_ads_classify_table(ads, opened, kind, name, expected):
    failure = opened(ads.config()).classify(response_of(ads_exception(kind, name), "v26"))
    assert type(failure) is expected
    assert sha("x@y.com") not in (failure.detail or "") and name in (failure.detail or "")


def test_google_ads_classify_uses_the_quota_retry_delay(ads, opened):
    destination = opened(ads.config())
    throttled = response_of(ads_exception("quota_error", "RESOURCE_EXHAUSTED", grpc.StatusCode.RESOURCE_EXHAUSTED, 90), "v26")
    assert (throttled.status, throttled.headers) == (429, {"Retry-After": "90"})
    failure = destination.classify(throttled)
    assert isinstance(failure, RateLimited) and failure.retry_after == 90
    unstated = destination.classify(response_of(ads_exception("quota_error", "RESOURCE_EXHAUSTED"), "v26"))
    assert unstated.retry_after == ads_api.DEFAULT_RETRY_AFTER_S


@pytest.mark.parametrize("exception, status, expected", [
    (core_exceptions.ResourceExhausted("quota"), 429, RateLimited),
    (core_exceptions.Unauthenticated("token"), 401, ConfigError),
    (core_exceptions.PermissionDenied("denied"), 403, ConfigError),
    (core_exceptions.NotFound("gone"), 404, ConfigError),
    (core_exceptions.ServiceUnavailable("down"), 503, TransientError),
    (core_exceptions.InternalServerError("oops"), 503, TransientError),
    (core_exceptions.DeadlineExceeded("slow"), 503, TransientError),
    (core_exceptions.Aborted("raced"), 503, TransientError),
    (core_exceptions.InvalidArgument("bad"), 400, PermanentError),
    (core_exceptions.MethodNotImplemented("no such service"), 501, ConfigError),
    (KeyError("not a gRPC error"), 503, TransientError),
])
def test_a_failed_call_reads_as_its_http_equivalent(ads, opened, exception, status, expected):
    response = response_of(exception, "v26")
    assert response.status == status and response.body["errors"] == []
    failure = opened(ads.config()).classify(response)
    assert type(failure) is expected
    if expected is RateLimited:
        assert failure.retry_after == ads_api.DEFAULT_RETRY_AFTER_S  # no QuotaErrorDetails: Google's usual wait


def test_a_permission_denied_status_names_login_customer_id(ads, opened):
    failure = opened(ads.config()).classify(PlatformResponse(403, {"grpc_status": "PERMISSION_DENIED", "errors": []}))
    assert isinstance(failure, ConfigError) and "set login_customer_id" in failure.message
