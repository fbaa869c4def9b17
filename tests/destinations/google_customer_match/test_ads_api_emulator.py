"""The Google Ads gRPC emulator driven through the client users run: the google-ads SDK over gRPC, TLS and
plaintext."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.interceptors import ExceptionInterceptor, MetadataInterceptor
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.ads.googleads.v26.services.services.google_ads_service import GoogleAdsServiceClient
from google.ads.googleads.v26.services.services.google_ads_service.transports import GoogleAdsServiceGrpcTransport
from google.ads.googleads.v26.services.services.offline_user_data_job_service import OfflineUserDataJobServiceClient
from google.ads.googleads.v26.services.services.offline_user_data_job_service.transports import OfflineUserDataJobServiceGrpcTransport
from google.api_core import exceptions as core_exceptions
from google.oauth2.credentials import Credentials

from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator, start_google_ads_emulator, tls_material
from tests.destinations.google_customer_match.helpers import CID, sha

TOKEN, DEV = "test-ads-token", "test-dev-token"
FAILURE_KEY = "google.ads.googleads.v26.errors.googleadsfailure-bin"


@pytest.fixture(scope="module")
def tls_emulator():
    emulator = GoogleAdsEmulator(TOKEN, DEV, tls=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emu(tls_emulator, monkeypatch):
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", tls_material()[0])  # read when the first TLS channel is built
    tls_emulator.reset()
    tls_emulator.latency = 0.0
    tls_emulator.create_user_list(CID, "555")
    return tls_emulator


def sdk(emulator: GoogleAdsEmulator, token: str = TOKEN, dev: str = DEV, login: str | None = None) -> GoogleAdsClient:
    return GoogleAdsClient(credentials=Credentials(token=token), developer_token=dev, endpoint=emulator.endpoint,
                           login_customer_id=login, use_proto_plus=True)


class Ads:
    """The two services a Customer Match client uses, plus request builders."""

    def __init__(self, client: GoogleAdsClient) -> None:
        self.client = client
        self.jobs = client.get_service("OfflineUserDataJobService", version="v26")
        self.search = client.get_service("GoogleAdsService", version="v26")

    def create(self, user_list: str = f"customers/{CID}/userLists/555", consent: bool = False, customer: str = CID) -> str:
        job = self.client.get_type("OfflineUserDataJob", version="v26")
        job.type_ = self.client.enums.OfflineUserDataJobTypeEnum.CUSTOMER_MATCH_USER_LIST
        job.customer_match_user_list_metadata.user_list = user_list
        if consent:
            job.customer_match_user_list_metadata.consent.ad_user_data = self.client.enums.ConsentStatusEnum.GRANTED
        return self.jobs.create_offline_user_data_job(customer_id=customer, job=job).resource_name

    def add(self, job: str, operations: list, partial: bool = True):
        request = self.client.get_type("AddOfflineUserDataJobOperationsRequest", version="v26")
        request.resource_name = job
        request.enable_partial_failure = partial
        request.operations.extend(operations)
        return self.jobs.add_offline_user_data_job_operations(request=request)

    def op(self, kind: str = "create", emails: tuple[str, ...] = ("a@x.com",), raw: str | None = None, **address: str):
        operation = self.client.get_type("OfflineUserDataJobOperation", version="v26")
        data = getattr(operation, kind)
        for email in emails:
            identifier = self.client.get_type("UserIdentifier", version="v26")
            identifier.hashed_email = raw if raw is not None else sha(email)
            data.user_identifiers.append(identifier)
        if address:
            identifier = self.client.get_type("UserIdentifier", version="v26")
            for key, value in address.items():
                setattr(identifier.address_info, key, value)
            data.user_identifiers.append(identifier)
        return operation

    def status(self, job: str) -> tuple[str, str]:
        query = ("SELECT offline_user_data_job.status, offline_user_data_job.operation_metadata.match_rate_range"
                 f" FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '{job}'")
        (row,) = list(self.search.search(customer_id=job.split("/")[1], query=query))
        return row.offline_user_data_job.status.name, row.offline_user_data_job.operation_metadata.match_rate_range.name


def failure_codes(exc: GoogleAdsException) -> list[str]:
    return [getattr(e.error_code, e.error_code._pb.WhichOneof("error_code")).name for e in exc.failure.errors]


def partial_failures(response) -> dict[int, str]:
    found = {}
    for detail in response.partial_failure_error.details:
        failure = ads_errors.GoogleAdsFailure.deserialize(detail.value)
        for error in failure.errors:
            index = error.location.field_path_elements[0].index
            found[index] = getattr(error.error_code, error.error_code._pb.WhichOneof("error_code")).name
    return found


def test_a_job_runs_through_the_sdk_over_tls_and_lands_when_it_succeeds(emu):
    assert emu.tls and emu.tls_cert_path and emu.endpoint.startswith("localhost:")
    ads = Ads(sdk(emu))
    job = ads.create(consent=True)
    response = ads.add(job, [ads.op(emails=("a@x.com",)), ads.op(emails=("b@x.com", "b2@x.com"))])
    assert response.partial_failure_error.code == 0
    operation = ads.jobs.run_offline_user_data_job(resource_name=job)
    assert emu.jobs[job]["status"] == "PENDING" and emu.jobs[job]["consent"] == {"ad_user_data": "GRANTED"}
    assert emu.user_list_members("555") == []  # nothing lands before the job has run
    status, estimate = ads.status(job)
    assert status == "RUNNING" and estimate.startswith("MATCH_RANGE_")
    assert operation.done()  # GetOperation reads the job like a Search: RUNNING -> SUCCESS
    assert operation.metadata.match_rate_range.name == estimate
    assert ads.status(job) == ("SUCCESS", estimate)
    assert sorted(emu.user_list_members("555"), key=str) == sorted(
        [{"hashed_email": sha("a@x.com")}, {"hashed_email": (sha("b2@x.com"), sha("b@x.com"))}], key=str)


def test_the_plaintext_recipe_works_and_carries_the_metadata(monkeypatch):
    emulator = GoogleAdsEmulator(TOKEN, DEV, tls=False).start()
    try:
        emulator.create_user_list(CID, "555")
        assert emulator.tls_cert_path is None and emulator.endpoint.startswith("http://127.0.0.1:")

        channel = grpc.intercept_channel(grpc.insecure_channel(emulator.address), MetadataInterceptor(DEV, None, None),
                                         ExceptionInterceptor("v26", use_proto_plus=True))
        client = OfflineUserDataJobServiceClient(transport=OfflineUserDataJobServiceGrpcTransport(channel=channel))
        with pytest.raises(GoogleAdsException) as caught:  # the bare recipe sends no OAuth header: refused
            client.create_offline_user_data_job(customer_id=CID, job={"type_": 4, "customer_match_user_list_metadata": {
                "user_list": f"customers/{CID}/userLists/555"}})
        assert failure_codes(caught.value) == ["OAUTH_TOKEN_HEADER_INVALID"]
        search = GoogleAdsServiceClient(transport=GoogleAdsServiceGrpcTransport(channel=channel))
        with pytest.raises(GoogleAdsException):
            list(search.search(customer_id=CID, query="SELECT customer.id FROM customer"))
        channel.close()
    finally:
        emulator.stop()


def test_credentials_are_checked(emu):
    with pytest.raises(GoogleAdsException) as caught:
        Ads(sdk(emu, token="wrong")).create()
    assert failure_codes(caught.value) == ["OAUTH_TOKEN_INVALID"]
    assert caught.value.error.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(GoogleAdsException) as caught:
        Ads(sdk(emu, dev="wrong")).create()
    assert failure_codes(caught.value) == ["DEVELOPER_TOKEN_INVALID"]


def test_a_managed_customer_needs_its_manager_as_login_customer_id(emu):
    emu.link_manager("9999999999", CID)
    with pytest.raises(GoogleAdsException) as caught:
        Ads(sdk(emu)).create()
    assert failure_codes(caught.value) == ["USER_PERMISSION_DENIED"]
    assert "login-customer-id" in caught.value.failure.errors[0].message
    with pytest.raises(GoogleAdsException):
        Ads(sdk(emu, login="1111111111")).create()
    assert Ads(sdk(emu, login="9999999999")).create().startswith(f"customers/{CID}/offlineUserDataJobs/")


def test_create_checks_the_user_list_and_consent(emu):
    ads = Ads(sdk(emu))
    with pytest.raises(GoogleAdsException) as caught:
        ads.create(user_list=f"customers/{CID}/userLists/404")
    assert failure_codes(caught.value) == ["INVALID_USER_LIST_ID"]
    job = ads.client.get_type("OfflineUserDataJob", version="v26")
    job.type_ = ads.client.enums.OfflineUserDataJobTypeEnum.CUSTOMER_MATCH_USER_LIST
    job.customer_match_user_list_metadata.user_list = f"customers/{CID}/userLists/555"
    job.customer_match_user_list_metadata.consent.ad_user_data = ads.client.enums.ConsentStatusEnum.DENIED
    with pytest.raises(GoogleAdsException) as caught:
        ads.jobs.create_offline_user_data_job(customer_id=CID, job=job)
    assert failure_codes(caught.value) == ["CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"]


def test_more_than_10000_operations_fail_the_whole_call(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    assert ads.add(job, [ads.op(emails=(f"p{i}@x.com",)) for i in range(10_000)]).partial_failure_error.code == 0
    with pytest.raises(GoogleAdsException) as caught:
        ads.add(job, [ads.op(emails=(f"q{i}@x.com",)) for i in range(10_001)])
    assert failure_codes(caught.value) == ["TOO_MANY_MUTATE_OPERATIONS"]
    assert emu.jobs[job]["operations"] == 10_000


def test_operation_errors_come_back_as_partial_failures_at_their_index(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    operations = [
        ads.op(emails=("ok@x.com",)),
        ads.op(raw="NOT-A-HASH"),
        ads.op(emails=tuple(f"m{i}@x.com" for i in range(21))),
        ads.op(emails=(), hashed_first_name=sha("ann"), hashed_last_name=sha("lee"), country_code="usa", postal_code="94045"),
        ads.op("remove", emails=("r@x.com",)),
        ads.op(emails=tuple(f"n{i}@x.com" for i in range(20))),
    ]
    response = ads.add(job, operations)
    assert partial_failures(response) == {1: "INVALID_SHA256_FORMAT", 2: "TOO_MANY_USER_IDENTIFIERS",
                                          3: "INVALID_COUNTRY_CODE", 4: "CONFLICTING_OPERATION"}
    assert emu.jobs[job]["operations"] == 2 and emu.jobs[job]["operation"] == "create"


def test_without_partial_failure_one_bad_operation_fails_the_call_and_stages_nothing(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    with pytest.raises(GoogleAdsException) as caught:
        ads.add(job, [ads.op(emails=("ok@x.com",)), ads.op(raw="bad")], partial=False)
    assert failure_codes(caught.value) == ["INVALID_SHA256_FORMAT"]
    assert caught.value.failure.errors[0].location.field_path_elements[0].index == 1
    assert emu.jobs[job]["operations"] == 0


def test_a_run_job_takes_no_more_operations(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    ads.add(job, [ads.op()])
    ads.jobs.run_offline_user_data_job(resource_name=job)
    for call in (lambda: ads.add(job, [ads.op(emails=("late@x.com",))]),
                 lambda: ads.jobs.run_offline_user_data_job(resource_name=job)):
        with pytest.raises(GoogleAdsException) as caught:
            call()
        assert failure_codes(caught.value) == ["JOB_ALREADY_STARTED"]


def test_jobs_of_a_list_complete_in_run_order(emu):
    ads = Ads(sdk(emu))
    first, second = ads.create(), ads.create()
    ads.add(first, [ads.op(emails=("a@x.com",)), ads.op(emails=("b@x.com",))])
    ads.add(second, [ads.op("remove", emails=("a@x.com",))])
    ads.jobs.run_offline_user_data_job(resource_name=first)
    ads.jobs.run_offline_user_data_job(resource_name=second)
    ads.status(second)
    assert ads.status(second)[0] == "SUCCESS"
    assert emu.jobs[first]["status"] == "SUCCESS"  # the earlier job completed first
    assert emu.user_list_members("555") == [{"hashed_email": sha("b@x.com")}]


def test_a_failed_job_changes_nothing(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    ads.add(job, [ads.op()])
    ads.jobs.run_offline_user_data_job(resource_name=job)
    emu.fail_next_job()
    emu.finish_jobs()
    assert emu.jobs[job]["status"] == "FAILED" and emu.jobs[job]["failure_reason"] == "UNKNOWN"
    assert emu.user_list_members("555") == []


def test_resource_exhausted_carries_the_retry_delay_in_the_trailing_failure(emu):
    ads = Ads(sdk(emu))
    emu.inject("RESOURCE_EXHAUSTED", retry_delay=42, method="CreateOfflineUserDataJob")
    with pytest.raises(core_exceptions.ResourceExhausted) as caught:  # the SDK does not wrap it
        ads.create()
    metadata = dict(caught.value.response.trailing_metadata())
    failure = ads_errors.GoogleAdsFailure.deserialize(metadata[FAILURE_KEY])
    assert failure.errors[0].error_code.quota_error.name == "RESOURCE_EXHAUSTED"
    assert failure.errors[0].details.quota_error_details.retry_delay.seconds == 42
    assert ads.create()  # one injected fault only


@pytest.mark.parametrize("code, exception", [
    ("INTERNAL", core_exceptions.InternalServerError),
    ("UNAVAILABLE", core_exceptions.ServiceUnavailable),
    ("DEADLINE_EXCEEDED", core_exceptions.DeadlineExceeded),
])
def test_transient_faults_surface_as_api_core_errors(emu, code, exception):
    emu.inject(code, times=2)
    ads = Ads(sdk(emu))
    for _ in range(2):
        with pytest.raises(exception):
            ads.create()
    assert ads.create()


def test_latency_delays_every_answer(emu):
    emu.latency = 0.2
    start = time.perf_counter()
    Ads(sdk(emu)).create()
    assert time.perf_counter() - start >= 0.2


def test_search_refuses_what_it_does_not_serve(emu):
    ads = Ads(sdk(emu))
    with pytest.raises(GoogleAdsException) as caught:
        list(ads.search.search(customer_id=CID, query="SELECT campaign.id FROM campaign"))
    assert failure_codes(caught.value) == ["BAD_RESOURCE_TYPE_IN_FROM_CLAUSE"]
    with pytest.raises(GoogleAdsException) as caught:
        list(ads.search.search(customer_id=CID, query="SELECT offline_user_data_job.nope FROM offline_user_data_job"))
    assert failure_codes(caught.value) == ["UNRECOGNIZED_FIELD"]
    rows = list(ads.search.search(customer_id=CID, query="SELECT user_list.id FROM user_list WHERE user_list.id = 555"))
    assert [r.user_list.resource_name for r in rows] == [f"customers/{CID}/userLists/555"]


SIZE_QUERY = ("SELECT user_list.size_for_search, user_list.size_for_display, user_list.size_range_for_search,"
              " user_list.size_range_for_display FROM user_list WHERE user_list.id = 556")


def size_row(ads: Ads):
    (row,) = list(ads.search.search(customer_id=CID, query=SIZE_QUERY))
    return row.user_list


@pytest.mark.parametrize("people, expected_range", [(0, "LESS_THAN_FIVE_HUNDRED"), (499, "LESS_THAN_FIVE_HUNDRED"),
                                                    (500, "LESS_THAN_ONE_THOUSAND"), (1_000, "ONE_THOUSAND_TO_TEN_THOUSAND")])
def test_a_user_list_size_is_its_matched_people_once_a_job_ran(emu, monkeypatch, people, expected_range):
    monkeypatch.setattr(emu, "match_rate", 1.0)  # every person matched, so the size is the people sent
    emu.create_user_list(CID, "556")
    ads = Ads(sdk(emu))
    before = size_row(ads)  # "null if the number of users has not yet been determined"
    assert ("size_for_search" in before, "size_for_display" in before) == (False, False)
    assert (before.size_range_for_search.name, before.size_range_for_display.name) == ("UNKNOWN", "UNKNOWN")
    job = ads.create(user_list=f"customers/{CID}/userLists/556")
    if people:
        ads.add(job, [ads.op(emails=(f"p{i}@x.com",)) for i in range(people)])
    ads.jobs.run_offline_user_data_job(resource_name=job)
    assert "size_for_search" not in size_row(ads)  # run, not yet finished: the size waits for the job
    emu.finish_jobs()
    after = size_row(ads)
    assert (after.size_for_search, after.size_for_display) == (people, people) == (emu.user_list_size("556"),) * 2
    assert (after.size_range_for_search.name, after.size_range_for_display.name) == (expected_range, expected_range)


def test_a_user_list_size_counts_matched_people_only(emu):
    ads = Ads(sdk(emu))
    job = ads.create()
    ads.add(job, [ads.op(emails=(f"p{i}@x.com",)) for i in range(200)])
    ads.jobs.run_offline_user_data_job(resource_name=job)
    emu.finish_jobs()
    (row,) = list(ads.search.search(customer_id=CID, query=SIZE_QUERY.replace("556", "555")))
    assert row.user_list.size_for_search == emu.user_list_size("555") and 100 < row.user_list.size_for_search < 180


@pytest.mark.parametrize("query", [
    "SELECT user_list.size_for_youtube FROM user_list",  # a size the API does not have
    "SELECT user_list.match_rate_percentage FROM user_list",  # one the emulator does not serve
    "SELECT size_for_search FROM user_list",
    "SELECT user_list.id FROM user_list WHERE user_list.size_for_search = 5",  # a filter it does not serve
])
def test_user_list_fields_it_does_not_serve_are_refused(emu, query):
    with pytest.raises(GoogleAdsException) as caught:
        list(Ads(sdk(emu)).search.search(customer_id=CID, query=query))
    assert failure_codes(caught.value) == ["UNRECOGNIZED_FIELD"]


def test_start_google_ads_emulator_exports_the_certificate(monkeypatch):
    monkeypatch.delenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", raising=False)
    emulator = start_google_ads_emulator(tls=True, access_token=TOKEN, developer_token=DEV)
    try:
        assert os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] == emulator.tls_cert_path
        assert open(emulator.tls_cert_path).read().startswith("-----BEGIN CERTIFICATE-----")
    finally:
        emulator.stop()


# ----- upload key types, persons, external ids and faults ------------------------------------------

def identifier_op(ads: Ads, kind: str = "create", **values: str):
    """One operation with one UserIdentifier per keyword (hashed_email=..., mobile_id=..., third_party_user_id=...)."""
    operation = ads.client.get_type("OfflineUserDataJobOperation", version="v26")
    for field_name, value in values.items():
        identifier = ads.client.get_type("UserIdentifier", version="v26")
        setattr(identifier, field_name, value)
        getattr(operation, kind).user_identifiers.append(identifier)
    return operation


@pytest.mark.parametrize("key_type, fits", [
    ("CONTACT_INFO", {"hashed_email": sha("a@x.com")}),
    ("CRM_ID", {"third_party_user_id": "crm-1"}),
    ("MOBILE_ADVERTISING_ID", {"mobile_id": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}),
])
def test_an_operation_of_another_upload_key_type_fails_on_its_own(emu, key_type, fits):
    list_name = emu.create_user_list(CID, "556", upload_key_type=key_type)
    ads = Ads(sdk(emu))
    job = ads.create(user_list=list_name)
    others = [{"hashed_email": sha("b@x.com")}, {"third_party_user_id": "crm-2"}, {"mobile_id": "7e92078a-8246-4ba4-ae5b-76104861e7dc"}]
    others = [o for o in others if set(o) != set(fits)]
    mixed = {**fits, **others[0]}  # one identifier of the list's type, one of another: the whole operation fails
    response = ads.add(job, [identifier_op(ads, **fits), identifier_op(ads, **others[0]), identifier_op(ads, **others[1]),
                             identifier_op(ads, **mixed)])
    assert partial_failures(response) == {1: "INCOMPATIBLE_UPLOAD_KEY_TYPE", 2: "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                                          3: "INCOMPATIBLE_UPLOAD_KEY_TYPE"}
    assert emu.jobs[job]["operations"] == 1
    rows = list(ads.search.search(customer_id=CID, query="SELECT user_list.crm_based_user_list.upload_key_type FROM user_list"
                                                         " WHERE user_list.id = 556"))
    assert rows[0].user_list.crm_based_user_list.upload_key_type.name == key_type
    with pytest.raises(ValueError):
        emu.create_user_list(CID, "557", upload_key_type="EMAIL")


def test_an_add_links_identifiers_into_one_person_and_a_remove_drops_every_person_any_identifier_matches(emu):
    ads = Ads(sdk(emu))
    first = ads.create()
    ads.add(first, [identifier_op(ads, hashed_email=sha("a@x.com"), hashed_phone_number=sha("+14155550100")),
                    identifier_op(ads, hashed_email=sha("b@x.com")), identifier_op(ads, hashed_email=sha("c@x.com"))])
    ads.jobs.run_offline_user_data_job(resource_name=first)
    emu.finish_jobs()
    linked = ads.create()  # b's phone is a's: Google now sees one person
    ads.add(linked, [identifier_op(ads, hashed_email=sha("b@x.com"), hashed_phone_number=sha("+14155550100"))])
    ads.jobs.run_offline_user_data_job(resource_name=linked)
    emu.finish_jobs()
    assert sorted(emu.user_list_members("555"), key=str) == sorted([
        {"hashed_email": (sha("a@x.com"), sha("b@x.com")), "hashed_phone_number": sha("+14155550100")},
        {"hashed_email": sha("c@x.com")}], key=str)
    removal = ads.create()  # one identifier of the person is enough to remove the person
    ads.add(removal, [identifier_op(ads, "remove", hashed_email=sha("a@x.com"), hashed_phone_number=sha("+19999999999"))])
    ads.jobs.run_offline_user_data_job(resource_name=removal)
    emu.finish_jobs()
    assert emu.user_list_members("555") == [{"hashed_email": sha("c@x.com")}]


def test_an_external_id_names_one_job_and_finds_it(emu):
    ads = Ads(sdk(emu))
    job = ads.client.get_type("OfflineUserDataJob", version="v26")
    job.type_ = ads.client.enums.OfflineUserDataJobTypeEnum.CUSTOMER_MATCH_USER_LIST
    job.external_id = 4242
    job.customer_match_user_list_metadata.user_list = f"customers/{CID}/userLists/555"
    name = ads.jobs.create_offline_user_data_job(customer_id=CID, job=job).resource_name
    with pytest.raises(GoogleAdsException) as caught:
        ads.jobs.create_offline_user_data_job(customer_id=CID, job=job)
    assert failure_codes(caught.value) == ["EXTERNAL_UPDATE_ID_ALREADY_EXISTS"]
    query = ("SELECT offline_user_data_job.resource_name, offline_user_data_job.external_id FROM offline_user_data_job"
             " WHERE offline_user_data_job.external_id = 4242")
    [row] = list(ads.search.search(customer_id=CID, query=query))
    assert (row.offline_user_data_job.resource_name, row.offline_user_data_job.external_id) == (name, 4242)
    assert len(emu.jobs) == 1


def test_a_fault_can_skip_calls_and_strike_after_the_call_was_applied(emu):
    ads = Ads(sdk(emu))
    emu.inject("DEADLINE_EXCEEDED", method="CreateOfflineUserDataJob", skip=1, after=True)
    ads.create()  # the first call passes
    with pytest.raises(core_exceptions.DeadlineExceeded):
        ads.create()  # applied, then the answer is lost
    assert len(emu.jobs) == 2
    job = ads.create()
    emu.inject("INTERNAL", method="RunOfflineUserDataJob", after=True)
    with pytest.raises(core_exceptions.InternalServerError):
        ads.jobs.run_offline_user_data_job(resource_name=job)
    with pytest.raises(GoogleAdsException) as caught:
        ads.jobs.run_offline_user_data_job(resource_name=job)
    assert failure_codes(caught.value) == ["JOB_ALREADY_STARTED"]
    assert emu.jobs[job]["run"] and emu.jobs[job]["run_calls"] == 2
