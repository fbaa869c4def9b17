"""A strict gRPC emulator of the Google Ads API Customer Match services, for the official ``google-ads`` SDK.

It serves, with grpc generic handlers (the SDK ships no servicer classes)::

    google.ads.googleads.v26.services.OfflineUserDataJobService
        CreateOfflineUserDataJob          -> {resource_name}; the job is PENDING
        AddOfflineUserDataJobOperations   stage operations; partial failure when enabled
        RunOfflineUserDataJob             -> google.longrunning.Operation (not done)
    google.longrunning.Operations
        GetOperation                      the operation Run returned (done once the job finished)
    google.ads.googleads.v26.services.GoogleAdsService
        Search                            GAQL, three shapes only: FROM offline_user_data_job (status
                                          polling), FROM user_list (existence, upload key type, size),
                                          FROM customer (credential checks)

Start it in a test or a demo::

    emulator = start_google_ads_emulator(tls=True)      # sets GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
    list_name = emulator.create_user_list("1234567890", "555")
    ... destination config: endpoint=emulator.endpoint, customer_id 1234567890, audience_id 555 ...
    emulator.user_list_members(list_name); emulator.jobs; emulator.stop()

TLS: ``GoogleAdsClient.get_service`` only builds TLS channels, so the emulator serves TLS with a
self-signed certificate (SAN ``localhost`` and ``127.0.0.1``) made at run time with ``cryptography``.
gRPC reads ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` once per process, when the first TLS channel is built,
so every emulator in one process shares one certificate (``tls_cert_path``); set the variable before any
TLS channel exists (``start_google_ads_emulator`` does). ``tls=False`` serves plaintext, for clients
built on an insecure channel (a connector endpoint ``http://127.0.0.1:PORT``).

Strictness:

- Every call carries ``authorization: Bearer <access_token>`` and ``developer-token``, else
  UNAUTHENTICATED with ``AuthenticationError`` (OAUTH_TOKEN_INVALID, DEVELOPER_TOKEN_INVALID). A
  customer linked under a manager (``link_manager``) needs ``login-customer-id`` = that manager, and an
  unknown customer is refused: PERMISSION_DENIED ``AuthorizationError.USER_PERMISSION_DENIED``.
- Create: type CUSTOMER_MATCH_USER_LIST, a user list of that customer (INVALID_USER_LIST_ID), job
  consent ``ad_user_data`` DENIED refused (CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS), an ``external_id``
  another job of the customer has refused (EXTERNAL_UPDATE_ID_ALREADY_EXISTS: "if you attempt to create
  multiple jobs with the same external_id", developers.google.com/google-ads/api/docs/remarketing/
  audience-segments/customer-match/troubleshoot); Search finds a job by ``external_id``.
- Upload key type: a list has one (``create_user_list(..., upload_key_type=)``, CONTACT_INFO by default):
  CONTACT_INFO takes hashed_email, hashed_phone_number and address_info, CRM_ID third_party_user_id,
  MOBILE_ADVERTISING_ID mobile_id ("Mixed data types are not allowed on the same list",
  ``CrmBasedUserListInfo.upload_key_type`` in the v26 wheel). An operation carrying an identifier of
  another type fails on its own with INCOMPATIBLE_UPLOAD_KEY_TYPE ("Upload data is not compatible with
  the upload key type of the associated user list", ``OfflineUserDataJobError``).
- Add: at most 10,000 operations (``RequestError.TOO_MANY_MUTATE_OPERATIONS``, whole call); per
  operation: at most 20 identifiers (TOO_MANY_USER_IDENTIFIERS), at least one (MISSING_USER_IDENTIFIER),
  hashes of 64 lowercase hex (INVALID_SHA256_FORMAT), ISO country (INVALID_COUNTRY_CODE), UUID mobile
  ids (INVALID_MOBILE_ID_FORMAT), no per-operation consent (OPERATION_LEVEL_CONSENT_PROVIDED), creates
  and removes never in one job (CONFLICTING_OPERATION), ``remove_all`` first (INVALID_OPERATION_ORDER).
  With ``enable_partial_failure`` the bad operations come back in ``partial_failure_error`` (one
  ``GoogleAdsError`` each, located at ``operations[i]``) and the rest are staged; without it one bad
  operation fails the call with INVALID_ARGUMENT and nothing is staged. Add or Run after Run:
  JOB_ALREADY_STARTED.
- Lifecycle: a run job is PENDING; each Search or GetOperation that reads it moves it one step, RUNNING (with an
  estimated ``match_rate_range``) then SUCCESS, when its operations are applied to the list (earlier
  jobs of the same list complete first). ``finish_jobs()`` completes every run job at once.
- Faults: ``inject("RESOURCE_EXHAUSTED", retry_delay=30)`` (``QuotaError`` with
  ``QuotaErrorDetails.retry_delay``), ``"INTERNAL"``, ``"UNAVAILABLE"``, ``"DEADLINE_EXCEEDED"``,
  ``"CONCURRENT_MODIFICATION"``, of one ``method`` after ``skip`` calls of it pass, before the call is
  applied or (``after=True``) after it was applied and its answer lost, as a timeout can;
  ``fail_operations({index: (kind, code)})``: those operations of the next Add fail on their own (say
  ``internal_error`` ``INTERNAL_ERROR``); ``latency`` seconds before every answer; ``fail_next_job()``.

Membership follows ``destinations.google_customer_match.data_manager_emulator.Membership``: a person is the set
of identifiers the list received together; an add linking a known identifier merges into that person, a remove
drops every person any of its identifiers matches (Google matches each identifier of a row to Google accounts
on its own: support.google.com/google-ads/answer/7474263).

Size (``user_list.size_for_search``, ``size_for_display``, ``size_range_for_search``, ``size_range_for_display``):

- Google counts the people it matched to Google accounts, not the rows uploaded ("the number of records
  uploaded may not be equal to your Customer Match list size", support.google.com/google-ads/answer/7474166),
  so both sizes are the list's persons that ``Membership.matches`` (the emulator's deterministic
  ``match_rate``), counted from the members the list holds now.
- Sizes are "Estimated number of users ... null if the number of users has not yet been determined"
  (``UserList`` in the google-ads v26 wheel, ``resources/types/user_list.py``): null until a job of the list
  has completed, after which they follow its members. The delay Google documents is the jobs' own: members
  land when a job completes (hours on Google; here on reads or ``finish_jobs()``), and the size with them.
- Ranges are ``UserListSizeRange`` (LESS_THAN_FIVE_HUNDRED, LESS_THAN_ONE_THOUSAND "500 to 1000",
  ONE_THOUSAND_TO_TEN_THOUSAND, ... OVER_FIFTY_MILLION:
  developers.google.com/google-ads/api/reference/rpc/v26/UserListSizeRangeEnum.UserListSizeRange), a size
  falling in [low, high); UNKNOWN while the size is null.
- Rounding: the Google Ads UI shows "a bucketed number" (answer/7474166); no rounding of the API's integer
  (nor reduced precision for small lists) is documented, so the emulator reports it exact.
- Fields and filters are strict: a user_list field or condition it does not serve is UNRECOGNIZED_FIELD.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import ipaddress
import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.ads.googleads.v26.errors.types import errors as _errors
from google.ads.googleads.v26.resources.types import offline_user_data_job as _job_types
from google.ads.googleads.v26.services.types import google_ads_service as _search_types
from google.ads.googleads.v26.services.types import offline_user_data_job_service as _job_service
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, empty_pb2

from destinations.google_customer_match.data_manager_emulator import Membership, address_id, match_rate_bucket

__all__ = ["GoogleAdsEmulator", "MAX_IDENTIFIERS_PER_OPERATION", "MAX_OPERATIONS_PER_ADD", "start_google_ads_emulator"]

log = logging.getLogger(__name__)
VERSION = "v26"
JOB_SERVICE = f"google.ads.googleads.{VERSION}.services.OfflineUserDataJobService"
SEARCH_SERVICE = f"google.ads.googleads.{VERSION}.services.GoogleAdsService"
FAILURE_KEY = f"google.ads.googleads.{VERSION}.errors.googleadsfailure-bin"
MAX_OPERATIONS_PER_ADD = 10_000
MAX_IDENTIFIERS_PER_OPERATION = 20
CUSTOMER_MATCH_TYPES = {4, 5}  # CUSTOMER_MATCH_USER_LIST, CUSTOMER_MATCH_WITH_ATTRIBUTES
GRANTED, DENIED = 2, 3
UPLOAD_KEY_TYPES = {"CONTACT_INFO": {"hashed_email", "hashed_phone_number", "address_info"}, "CRM_ID": {"third_party_user_id"},
                    "MOBILE_ADVERTISING_ID": {"mobile_id"}}
_STATUS = {2: "PENDING", 3: "RUNNING", 4: "SUCCESS", 5: "FAILED"}
_STATUS_VALUE = {v: k for k, v in _STATUS.items()}

_AddRequest = _job_service.AddOfflineUserDataJobOperationsRequest.pb()
_AddResponse = _job_service.AddOfflineUserDataJobOperationsResponse.pb()
_CreateRequest = _job_service.CreateOfflineUserDataJobRequest.pb()
_CreateResponse = _job_service.CreateOfflineUserDataJobResponse.pb()
_RunRequest = _job_service.RunOfflineUserDataJobRequest.pb()
_SearchRequest = _search_types.SearchGoogleAdsRequest.pb()
_SearchResponse = _search_types.SearchGoogleAdsResponse.pb()
_Failure = _errors.GoogleAdsFailure.pb()
_Error = _errors.GoogleAdsError.pb()
_JobMetadata = _job_types.OfflineUserDataJobMetadata.pb()

_HEX64 = re.compile(r"[0-9a-f]{64}").fullmatch
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}").fullmatch
_COUNTRY = re.compile(r"[A-Z]{2}").fullmatch
_JOB_NAME = re.compile(r"customers/(\d+)/offlineUserDataJobs/(\d+)").fullmatch
_LIST_NAME = re.compile(r"customers/(\d+)/userLists/(\d+)").fullmatch
_QUERY = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>\w+)(?:\s+WHERE\s+(?P<where>.+?))?"
                    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.I | re.S)
_CONDITION = re.compile(r"^\s*([\w.]+)\s*(=|IN)\s*(.+?)\s*$", re.I | re.S)
_USER_LIST_FIELDS = {"resource_name", "id", "name", "crm_based_user_list.upload_key_type", "size_for_search", "size_for_display",
                     "size_range_for_search", "size_range_for_display"}
_USER_LIST_FILTERS = {"user_list.resource_name", "user_list.id"}
# UserListSizeRange by its exclusive upper bound, in users; above the last: OVER_FIFTY_MILLION
_SIZE_RANGES = ((500, "LESS_THAN_FIVE_HUNDRED"), (1_000, "LESS_THAN_ONE_THOUSAND"), (10_000, "ONE_THOUSAND_TO_TEN_THOUSAND"),
                (50_000, "TEN_THOUSAND_TO_FIFTY_THOUSAND"), (100_000, "FIFTY_THOUSAND_TO_ONE_HUNDRED_THOUSAND"),
                (300_000, "ONE_HUNDRED_THOUSAND_TO_THREE_HUNDRED_THOUSAND"),
                (500_000, "THREE_HUNDRED_THOUSAND_TO_FIVE_HUNDRED_THOUSAND"), (1_000_000, "FIVE_HUNDRED_THOUSAND_TO_ONE_MILLION"),
                (2_000_000, "ONE_MILLION_TO_TWO_MILLION"), (3_000_000, "TWO_MILLION_TO_THREE_MILLION"),
                (5_000_000, "THREE_MILLION_TO_FIVE_MILLION"), (10_000_000, "FIVE_MILLION_TO_TEN_MILLION"),
                (20_000_000, "TEN_MILLION_TO_TWENTY_MILLION"), (30_000_000, "TWENTY_MILLION_TO_THIRTY_MILLION"),
                (50_000_000, "THIRTY_MILLION_TO_FIFTY_MILLION"))
_JOB_FIELDS = {"resource_name", "id", "external_id", "type", "status", "failure_reason", "operation_metadata.match_rate_range",
               "customer_match_user_list_metadata.user_list"}
_PERMISSION_MESSAGE = ("User doesn't have permission to access customer. Note: If you're accessing a client customer,"
                       " the manager's customer id must be set in the 'login-customer-id' header.")


class _Abort(Exception):
    """Finish the call with a gRPC status and, when ``errors`` is given, a GoogleAdsFailure."""

    def __init__(self, code: grpc.StatusCode, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.errors = code, message, errors


def _error(kind: str, name: str, message: str, index: int | None = None, retry_delay: float | None = None) -> Any:
    """One GoogleAdsError (raw protobuf), e.g. ``_error("quota_error", "RESOURCE_EXHAUSTED", ...)``."""
    error = _Error()
    field_descriptor = error.error_code.DESCRIPTOR.fields_by_name[kind]
    setattr(error.error_code, kind, field_descriptor.enum_type.values_by_name[name].number)
    error.message = message
    if index is not None:
        element = error.location.field_path_elements.add()
        element.field_name = "operations"
        element.index = index
    if retry_delay is not None:
        error.details.quota_error_details.rate_name = "Number of operations for basic access"
        error.details.quota_error_details.retry_delay.CopyFrom(duration_pb2.Duration(seconds=int(retry_delay)))
    return error


def _failure_bytes(errors: Iterable[Any]) -> bytes:
    failure = _Failure()
    failure.errors.extend(errors)
    failure.request_id = f"sandbox-{time.monotonic_ns()}"
    return failure.SerializeToString()


def _fault_abort(fault: "_Fault") -> _Abort:
    if fault.code == "RESOURCE_EXHAUSTED":
        return _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Resource has been exhausted (e.g. check quota).",
                      [_error("quota_error", "RESOURCE_EXHAUSTED", "Too many requests. Retry in "
                              f"{fault.retry_delay or 30:g} seconds.", retry_delay=fault.retry_delay or 30)])
    if fault.code == "INTERNAL":
        return _Abort(grpc.StatusCode.INTERNAL, "Internal error encountered.",
                      [_error("internal_error", "INTERNAL_ERROR", "An internal error has occurred.")])
    if fault.code == "CONCURRENT_MODIFICATION":
        return _Abort(grpc.StatusCode.ABORTED, "Multiple requests were attempting to modify the same resource at once.",
                      [_error("database_error", "CONCURRENT_MODIFICATION", "Multiple requests were attempting to"
                              " modify the same resource at once. Retry the request.")])
    return _Abort(getattr(grpc.StatusCode, fault.code), f"injected {fault.code}")


@dataclass
class _Fault:
    code: str
    times: int
    retry_delay: float | None
    method: str | None
    skip: int = 0  # matching calls that pass before the fault strikes
    after: bool = False  # strike once the call was applied: its answer is lost


@dataclass
class _Job:
    resource_name: str
    customer_id: str
    user_list: str
    consent: dict[str, str]
    job_type: int
    external_id: int | None = None
    ops: list[tuple[str, frozenset[tuple[str, str]]]] = field(default_factory=list)
    kind: str | None = None  # "create" or "remove", fixed by the first staged operation
    remove_all: bool = False
    status: str = "PENDING"
    run_seq: int | None = None
    failure_reason: str | None = None
    match_rate_range: str | None = None
    run_calls: int = 0  # RunOfflineUserDataJob calls naming this job, refused ones included

    def view(self) -> dict[str, Any]:
        return {"resource_name": self.resource_name, "user_list": self.user_list, "status": self.status,
                "operation": self.kind, "operations": len(self.ops), "remove_all": self.remove_all,
                "consent": dict(self.consent), "failure_reason": self.failure_reason, "external_id": self.external_id,
                "match_rate_range": self.match_rate_range, "run": self.run_seq is not None, "run_calls": self.run_calls}


class GoogleAdsEmulator:
    """The Customer Match part of the Google Ads API over gRPC on loopback.

    Args:
        access_token: the only OAuth bearer token accepted.
        developer_token: the only developer token accepted.
        tls: serve TLS with the process's self-signed certificate (``tls_cert_path``); False: plaintext.
        host, port: where to listen; port 0 picks a free port.
        match_rate: share of members the emulator "matches" (drives ``match_rate_range``).
    """

    def __init__(self, access_token: str = "sandbox-google-ads-token", developer_token: str = "sandbox-developer-token",
                 *, tls: bool = True, host: str = "127.0.0.1", port: int = 0, match_rate: float = 0.65,
                 max_workers: int = 8) -> None:
        self.access_token, self.developer_token = access_token, developer_token
        self.tls, self.host, self._port, self.match_rate, self.max_workers = tls, host, port, match_rate, max_workers
        self.lock = threading.RLock()
        self.latency = 0.0
        self._server: grpc.Server | None = None
        self._bound_port: int | None = None
        self.reset()

    # ----- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "GoogleAdsEmulator":
        if self._server is not None:
            return self
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="google-ads-emulator"),
                             options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(JOB_SERVICE, {
                "CreateOfflineUserDataJob": self._handler("CreateOfflineUserDataJob", _CreateRequest, self._create),
                "AddOfflineUserDataJobOperations": self._handler("AddOfflineUserDataJobOperations", _AddRequest, self._add),
                "RunOfflineUserDataJob": self._handler("RunOfflineUserDataJob", _RunRequest, self._run),
            }),
            grpc.method_handlers_generic_handler(SEARCH_SERVICE, {"Search": self._handler("Search", _SearchRequest, self._search)}),
            grpc.method_handlers_generic_handler("google.longrunning.Operations", {
                "GetOperation": self._handler("GetOperation", operations_pb2.GetOperationRequest, self._get_operation)}),
        ))
        target = f"{self.host}:{self._port}"
        if self.tls:
            cert_path, key_path = tls_material()
            with open(key_path, "rb") as key, open(cert_path, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self._bound_port = server.add_secure_port(target, credentials)
        else:
            self._bound_port = server.add_insecure_port(target)
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self) -> "GoogleAdsEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the emulator is not started; call start() first")
        return self._bound_port

    @property
    def address(self) -> str:
        """host:port the server listens on."""
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """What a destination's ``endpoint`` should say: ``localhost:PORT`` (TLS) or ``http://127.0.0.1:PORT``."""
        return f"localhost:{self.port}" if self.tls else f"http://{self.host}:{self.port}"

    @property
    def tls_cert_path(self) -> str | None:
        """PEM certificate to trust (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``); None when serving plaintext."""
        return tls_material()[0] if self.tls else None

    # ----- test and admin API -------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.user_lists: dict[str, Membership] = {}  # user list resource name -> members
            self.upload_key_types: dict[str, str] = {}  # user list resource name -> CONTACT_INFO, CRM_ID, MOBILE_ADVERTISING_ID
            self.managers: dict[str, str] = {}  # customer id -> manager id required as login-customer-id
            self.customers: set[str] = set()
            self._jobs: dict[str, _Job] = {}
            self._faults: list[_Fault] = []
            self._operation_faults: dict[int, tuple[str, str]] = {}
            self._fail_next: str | None = None
            self._ids = itertools.count(1)
            self._operation_ids = itertools.count(1)
            self._runs = itertools.count(1)
            self._operations: dict[str, str] = {}  # long-running operation name -> job resource name
            self._sized: set[str] = set()  # user lists a job has completed for: Google has determined their size
            self.requests: list[tuple[str, int]] = []  # (method, operations)

    def create_user_list(self, customer_id: str, user_list_id: str | None = None, upload_key_type: str = "CONTACT_INFO") -> str:
        """Create an empty Customer Match list of ``customer_id`` matching members by ``upload_key_type``
        (CONTACT_INFO, CRM_ID or MOBILE_ADVERTISING_ID); returns its resource name."""
        if upload_key_type not in UPLOAD_KEY_TYPES:
            raise ValueError(f"unknown upload key type {upload_key_type!r}")
        customer_id = str(customer_id).replace("-", "")
        with self.lock:
            list_id = str(user_list_id or 7000 + next(self._ids))
            name = f"customers/{customer_id}/userLists/{list_id}"
            self.user_lists.setdefault(name, Membership(self.match_rate))
            self.upload_key_types.setdefault(name, upload_key_type)
            self.customers.add(customer_id)
            return name

    def link_manager(self, manager_id: str, customer_id: str) -> None:
        """From now on ``customer_id`` is reachable only with ``login-customer-id`` = ``manager_id``."""
        with self.lock:
            self.managers[str(customer_id).replace("-", "")] = str(manager_id).replace("-", "")

    def user_list_members(self, user_list: str) -> list[dict[str, Any]]:
        """Members of a list, by resource name or bare id (see ``Membership.members``)."""
        with self.lock:
            return self.user_lists[self._list_name(user_list)].members()

    def user_list_size(self, user_list: str) -> int | None:
        """What ``size_for_search`` and ``size_for_display`` of a list say now (by resource name or bare id): the
        persons it holds that Google matched, None until a job of the list has completed."""
        with self.lock:
            return self._size(self._list_name(user_list))

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job by resource name: status, operation kind, count, consent, match rate range, Run calls."""
        with self.lock:
            return {name: job.view() for name, job in self._jobs.items()}

    def job_operations(self, name: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
        """The operations a job holds: ("create" or "remove", its identifiers as (kind, value) pairs)."""
        with self.lock:
            return list(self._jobs[name].ops)

    def inject(self, code: str = "RESOURCE_EXHAUSTED", times: int = 1, retry_delay: float | None = None,
               method: str | None = None, *, skip: int = 0, after: bool = False) -> None:
        """Fail ``times`` calls (of ``method``, e.g. "AddOfflineUserDataJobOperations", when given), once
        ``skip`` such calls have passed.

        ``code``: RESOURCE_EXHAUSTED (QuotaError, ``retry_delay`` seconds in QuotaErrorDetails), INTERNAL,
        UNAVAILABLE, DEADLINE_EXCEEDED or CONCURRENT_MODIFICATION. ``after``: the call is applied first and
        then fails, as when its answer is lost on the way back (a deadline, a dropped connection).
        """
        if code not in ("RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CONCURRENT_MODIFICATION"):
            raise ValueError(f"unknown fault {code!r}")
        with self.lock:
            self._faults.append(_Fault(code, times, retry_delay, method, skip, after))

    def fail_operations(self, errors: Mapping[int, tuple[str, str]]) -> None:
        """The next Add fails these operations on their own: index -> (error kind, code), e.g.
        ``{2: ("database_error", "CONCURRENT_MODIFICATION")}``."""
        with self.lock:
            self._operation_faults = dict(errors)

    def fail_next_job(self, reason: str = "UNKNOWN") -> None:
        """The next job to finish ends FAILED with this ``failure_reason`` and changes nothing."""
        with self.lock:
            self._fail_next = reason

    def finish_jobs(self) -> None:
        """Complete every job that was run, in run order."""
        with self.lock:
            for job in sorted((j for j in self._jobs.values() if j.run_seq is not None), key=lambda j: j.run_seq or 0):
                self._complete(job)

    # ----- gRPC plumbing ------------------------------------------------------------------------
    def _handler(self, name: str, request_type: Any, method: Callable[[Any, Mapping[str, str], str], Any]) -> grpc.RpcMethodHandler:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            if self.latency:
                time.sleep(self.latency)
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            try:
                with self.lock:
                    if len(self.requests) > 100_000:
                        del self.requests[:50_000]
                    self._authenticate(metadata)
                    fault = self._take_fault(name)
                    if fault is not None and not fault.after:
                        raise _fault_abort(fault)
                    answer = method(request, metadata, name)
                    if fault is not None:
                        raise _fault_abort(fault)
                    return answer
            except _Abort as exc:
                trailing = [("request-id", f"sandbox-{time.monotonic_ns()}")]
                if exc.errors:
                    trailing.append((FAILURE_KEY, _failure_bytes(exc.errors)))
                context.set_trailing_metadata(trailing)
                context.abort(exc.code, exc.message)
            except Exception:  # a bug in the emulator: answer INTERNAL and keep serving
                log.exception("google ads emulator failed on %s", name)
                context.abort(grpc.StatusCode.INTERNAL, "emulator error")

        return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=request_type.FromString,
                                                   response_serializer=lambda message: message.SerializeToString())

    def _authenticate(self, metadata: Mapping[str, str]) -> None:
        authorization = metadata.get("authorization")
        if authorization != f"Bearer {self.access_token}":
            name = "OAUTH_TOKEN_INVALID" if authorization else "OAUTH_TOKEN_HEADER_INVALID"
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Request is missing required authentication credential.",
                         [_error("authentication_error", name, "Authentication of the request failed.")])
        if metadata.get("developer-token") != self.developer_token:
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "The developer token is not valid.",
                         [_error("authentication_error", "DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")])

    def _authorize(self, customer_id: str, metadata: Mapping[str, str]) -> None:
        login = (metadata.get("login-customer-id") or "").replace("-", "")
        manager = self.managers.get(customer_id)
        allowed = customer_id in self.customers and (login == manager if manager else login in ("", customer_id))
        if not allowed:
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "The caller does not have permission",
                         [_error("authorization_error", "USER_PERMISSION_DENIED", _PERMISSION_MESSAGE)])

    def _take_fault(self, method: str) -> _Fault | None:
        """The fault this call meets, if any (``skip`` counts down first)."""
        fault = next((f for f in self._faults if f.times > 0 and f.method in (None, method)), None)
        if fault is None:
            return None
        if fault.skip:
            fault.skip -= 1
            return None
        fault.times -= 1
        self._faults = [f for f in self._faults if f.times > 0]
        return fault

    def _list_name(self, user_list: str) -> str:
        if _LIST_NAME(user_list):
            return user_list
        found = [name for name in self.user_lists if name.rsplit("/", 1)[1] == str(user_list)]
        if len(found) != 1:
            raise KeyError(f"unknown user list {user_list!r}")
        return found[0]

    # ----- OfflineUserDataJobService ------------------------------------------------------------
    def _create(self, request: Any, metadata: Mapping[str, str], method: str) -> Any:
        customer_id = request.customer_id.replace("-", "")
        self._authorize(customer_id, metadata)
        self.requests.append((method, 0))
        job = request.job
        if job.type_ not in CUSTOMER_MATCH_TYPES:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "INVALID_USER_LIST_TYPE", "The job type is not a Customer Match type.")])
        user_list = job.customer_match_user_list_metadata.user_list
        match = _LIST_NAME(user_list)
        if not match or match.group(1) != customer_id or user_list not in self.user_lists:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "INVALID_USER_LIST_ID", "The user list ID provided for the job is invalid.")])
        consent = job.customer_match_user_list_metadata.consent
        if consent.ad_user_data == DENIED:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                                 "Customer has not accepted the customer data terms in the conversion settings page.")])
        external_id = job.external_id if job.HasField("external_id") else None
        if external_id is not None and any(j.customer_id == customer_id and j.external_id == external_id for j in self._jobs.values()):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "EXTERNAL_UPDATE_ID_ALREADY_EXISTS", "The external update ID already exists.")])
        if request.validate_only:
            return _CreateResponse()
        name = f"customers/{customer_id}/offlineUserDataJobs/{next(self._ids)}"
        self._jobs[name] = _Job(name, customer_id, user_list, _consent_view(consent), job.type_, external_id)
        return _CreateResponse(resource_name=name)

    def _job(self, resource_name: str, metadata: Mapping[str, str]) -> _Job:
        match = _JOB_NAME(resource_name)
        if not match:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("request_error", "RESOURCE_NAME_MALFORMED", "Resource name is malformed.")])
        self._authorize(match.group(1), metadata)
        job = self._jobs.get(resource_name)
        if job is None:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("request_error", "RESOURCE_NOT_FOUND", "The requested resource was not found.")])
        return job

    def _add(self, request: Any, metadata: Mapping[str, str], method: str) -> Any:
        job = self._job(request.resource_name, metadata)
        self.requests.append((method, len(request.operations)))
        if job.run_seq is not None:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "JOB_ALREADY_STARTED", "The job has already been run.")])
        if len(request.operations) > MAX_OPERATIONS_PER_ADD:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("request_error", "TOO_MANY_MUTATE_OPERATIONS",
                                 f"Too many operations in one request; the limit is {MAX_OPERATIONS_PER_ADD}.")])
        if not request.operations:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("request_error", "OPERATION_REQUIRED", "At least one operation is required.")])
        kind, remove_all, staged, errors = job.kind, job.remove_all, [], []
        accepted = UPLOAD_KEY_TYPES[self.upload_key_types[job.user_list]]
        injected, self._operation_faults = self._operation_faults, {}
        for index, op in enumerate(request.operations):
            which = op.WhichOneof("operation")
            if index in injected:
                errors.append(_error(*injected[index], "Injected failure of this operation.", index=index))
                continue
            try:
                if which == "remove_all":
                    if staged or job.ops or index:
                        raise _OpError("INVALID_OPERATION_ORDER", "remove_all must be the first operation of a job.")
                    remove_all, kind = True, "remove"
                    continue
                if which is None:
                    raise _OpError("MISSING_USER_IDENTIFIER", "The operation has no create or remove.")
                if kind is not None and which != kind:
                    raise _OpError("CONFLICTING_OPERATION", "A job cannot mix create and remove operations.")
                staged.append((which, _identifiers(getattr(op, which), accepted)))
                kind = which
            except _OpError as exc:
                errors.append(_error("offline_user_data_job_error", exc.name, exc.message, index=index))
        partial = request.HasField("enable_partial_failure") and request.enable_partial_failure
        if errors and not partial:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.", errors)
        response = _AddResponse()
        if request.validate_only:
            return response
        job.ops.extend(staged)
        job.kind, job.remove_all = kind, remove_all
        if errors:
            failure = _Failure()
            failure.errors.extend(errors)
            response.partial_failure_error.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.partial_failure_error.message = f"Multiple errors in 'details'. First error: {errors[0].message}"
            detail = any_pb2.Any()
            detail.Pack(failure)
            response.partial_failure_error.details.append(detail)
        return response

    def _run(self, request: Any, metadata: Mapping[str, str], method: str) -> Any:
        job = self._job(request.resource_name, metadata)
        self.requests.append((method, 0))
        job.run_calls += 1
        if job.run_seq is not None:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.",
                         [_error("offline_user_data_job_error", "JOB_ALREADY_STARTED", "The job has already been run.")])
        operation = operations_pb2.Operation(name=f"customers/{job.customer_id}/operations/{next(self._operation_ids)}", done=False)
        if request.validate_only:
            return operation
        job.run_seq = next(self._runs)
        self._operations[operation.name] = job.resource_name
        operation.metadata.Pack(_JobMetadata())
        return operation

    def _get_operation(self, request: Any, metadata: Mapping[str, str], method: str) -> Any:
        """The operation Run returned; reading it moves the job on like a Search does."""
        job_name = self._operations.get(request.name)
        if job_name is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found.")
        job = self._job(job_name, metadata)
        self.requests.append((method, 0))
        self._advance(job)
        operation = operations_pb2.Operation(name=request.name, done=job.status in ("SUCCESS", "FAILED"))
        job_metadata = _JobMetadata()
        if job.match_rate_range:
            job_metadata.match_rate_range = _JobMetadata.DESCRIPTOR.fields_by_name["match_rate_range"].enum_type.values_by_name[job.match_rate_range].number
        operation.metadata.Pack(job_metadata)
        if job.status == "FAILED":
            operation.error.code = grpc.StatusCode.INTERNAL.value[0]
            operation.error.message = f"The job failed: {job.failure_reason}"
        elif operation.done:
            operation.response.Pack(empty_pb2.Empty())
        return operation

    # ----- job lifecycle ------------------------------------------------------------------------
    def _advance(self, job: _Job) -> None:
        """One status read after Run: PENDING -> RUNNING -> SUCCESS (or FAILED)."""
        if job.run_seq is None or job.status in ("SUCCESS", "FAILED"):
            return
        if job.status == "PENDING":
            job.status = "RUNNING"
            job.match_rate_range = self._estimate(job)
            return
        self._complete(job)

    def _complete(self, job: _Job) -> None:
        if job.status in ("SUCCESS", "FAILED"):
            return
        for earlier in sorted(self._jobs.values(), key=lambda j: j.run_seq or 0):
            if earlier is job or earlier.run_seq is None or (job.run_seq or 0) < earlier.run_seq:
                continue
            if earlier.user_list == job.user_list and earlier.status not in ("SUCCESS", "FAILED"):
                self._complete(earlier)
        job.match_rate_range = self._estimate(job)
        if self._fail_next is not None:
            job.status, job.failure_reason, self._fail_next = "FAILED", self._fail_next, None
            return
        members = self.user_lists[job.user_list]
        if job.remove_all:
            members.persons.clear()
            members.index.clear()
        for kind, ids in job.ops:
            if kind == "create":
                members.add(ids)
            else:
                members.remove(ids)
        job.status = "SUCCESS"
        self._sized.add(job.user_list)

    def _estimate(self, job: _Job) -> str:
        members = self.user_lists[job.user_list]
        creates = [ids for kind, ids in job.ops if kind == "create"]
        if not creates:
            return "UNKNOWN"
        return match_rate_bucket(sum(members.matches(ids) for ids in creates) / len(creates))

    # ----- GoogleAdsService.Search --------------------------------------------------------------
    def _search(self, request: Any, metadata: Mapping[str, str], method: str) -> Any:
        customer_id = request.customer_id.replace("-", "")
        self._authorize(customer_id, metadata)
        self.requests.append((method, 0))
        query = _QUERY.match(request.query)
        if not query:
            raise _query_error("UNEXPECTED_END_OF_QUERY", "The query could not be parsed.")
        resource = query.group("resource").lower()
        fields = [f.strip() for f in query.group("fields").split(",")]
        conditions = _conditions(query.group("where"))
        response = _SearchResponse()
        if resource == "offline_user_data_job":
            self._search_jobs(customer_id, fields, conditions, response)
        elif resource == "user_list":
            self._search_user_lists(customer_id, fields, conditions, response)
        elif resource == "customer":
            row = response.results.add()
            row.customer.resource_name = f"customers/{customer_id}"
            row.customer.id = int(customer_id)
        else:
            raise _query_error("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"The emulator does not serve FROM {resource}.")
        if query.group("limit"):
            del response.results[int(query.group("limit")):]
        response.total_results_count = len(response.results)
        return response

    def _search_jobs(self, customer_id: str, fields: list[str], conditions: dict[str, list[str]], response: Any) -> None:
        wanted = [f.removeprefix("offline_user_data_job.") for f in fields]
        unknown = [f for f in wanted if f not in _JOB_FIELDS]
        if unknown:
            raise _query_error("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: 'offline_user_data_job.{unknown[0]}'.")
        names = conditions.get("offline_user_data_job.resource_name")
        external_ids = conditions.get("offline_user_data_job.external_id")
        for job in list(self._jobs.values()):
            if job.customer_id != customer_id or (names is not None and job.resource_name not in names):
                continue
            if external_ids is not None and str(job.external_id) not in external_ids:
                continue
            self._advance(job)
            row = response.results.add().offline_user_data_job
            row.resource_name = job.resource_name
            if "id" in wanted:
                row.id = int(job.resource_name.rsplit("/", 1)[1])
            if "external_id" in wanted and job.external_id is not None:
                row.external_id = job.external_id
            if "type" in wanted:
                row.type_ = job.job_type
            if "status" in wanted:
                row.status = _STATUS_VALUE[job.status]
            if "failure_reason" in wanted and job.failure_reason:
                row.failure_reason = type(row).DESCRIPTOR.fields_by_name["failure_reason"].enum_type.values_by_name[job.failure_reason].number
            if "operation_metadata.match_rate_range" in wanted and job.match_rate_range:
                enum = _JobMetadata.DESCRIPTOR.fields_by_name["match_rate_range"].enum_type
                row.operation_metadata.match_rate_range = enum.values_by_name[job.match_rate_range].number
            if "customer_match_user_list_metadata.user_list" in wanted:
                row.customer_match_user_list_metadata.user_list = job.user_list

    def _search_user_lists(self, customer_id: str, fields: list[str], conditions: dict[str, list[str]], response: Any) -> None:
        unknown = [f for f in fields if not f.startswith("user_list.") or f.removeprefix("user_list.") not in _USER_LIST_FIELDS]
        unknown += sorted(set(conditions) - _USER_LIST_FILTERS)
        if unknown:
            raise _query_error("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: '{unknown[0]}'.")
        wanted = {f.removeprefix("user_list.") for f in fields}
        names = conditions.get("user_list.resource_name")
        ids = conditions.get("user_list.id")
        for name in self.user_lists:
            list_customer, list_id = _LIST_NAME(name).groups()  # type: ignore[union-attr]
            if list_customer != customer_id or (names is not None and name not in names) or (ids is not None and list_id not in ids):
                continue
            row = response.results.add().user_list
            row.resource_name = name
            if "id" in wanted:
                row.id = int(list_id)
            if "name" in wanted:
                row.name = f"sandbox list {list_id}"
            if "crm_based_user_list.upload_key_type" in wanted:
                key_types = type(row.crm_based_user_list).DESCRIPTOR.fields_by_name["upload_key_type"].enum_type
                row.crm_based_user_list.upload_key_type = key_types.values_by_name[self.upload_key_types[name]].number
            self._fill_size(row, name, wanted)

    def _size(self, user_list: str) -> int | None:
        if user_list not in self._sized:
            return None
        members = self.user_lists[user_list]
        return sum(members.matches(person) for person in members.persons.values())

    def _fill_size(self, row: Any, user_list: str, wanted: set[str]) -> None:
        """The size fields asked for: both networks count the same matched persons here."""
        size = self._size(user_list)
        ranges = type(row).DESCRIPTOR.fields_by_name["size_range_for_search"].enum_type
        bucket = "UNKNOWN" if size is None else next((n for high, n in _SIZE_RANGES if size < high), "OVER_FIFTY_MILLION")
        for network in ("search", "display"):
            if f"size_for_{network}" in wanted and size is not None:
                setattr(row, f"size_for_{network}", size)
            if f"size_range_for_{network}" in wanted:
                setattr(row, f"size_range_for_{network}", ranges.values_by_name[bucket].number)


class _OpError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _identifiers(user_data: Any, accepted: set[str]) -> frozenset[tuple[str, str]]:
    """Validate one operation's UserData against the list's upload key type (the identifier kinds it
    ``accepted``); its identifiers as (kind, value) pairs."""
    if user_data.HasField("consent"):
        raise _OpError("OPERATION_LEVEL_CONSENT_PROVIDED", "Consent must be set on the job, not on an operation.")
    identifiers = user_data.user_identifiers
    if not identifiers:
        raise _OpError("MISSING_USER_IDENTIFIER", "The operation has no user identifier.")
    if len(identifiers) > MAX_IDENTIFIERS_PER_OPERATION:
        raise _OpError("TOO_MANY_USER_IDENTIFIERS", f"At most {MAX_IDENTIFIERS_PER_OPERATION} user identifiers per operation.")
    pairs = []
    for identifier in identifiers:
        which = identifier.WhichOneof("identifier")
        value = getattr(identifier, which) if which else None
        if which is not None and which not in accepted:
            raise _OpError("INCOMPATIBLE_UPLOAD_KEY_TYPE", "Upload data is not compatible with the upload key type of the"
                           " associated user list.")
        if which in ("hashed_email", "hashed_phone_number"):
            if not _HEX64(value):
                raise _OpError("INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed.")
            pairs.append((which, value))
        elif which == "mobile_id":
            if not _UUID(value):
                raise _OpError("INVALID_MOBILE_ID_FORMAT", "The mobile ID is malformed.")
            pairs.append((which, value.lower()))
        elif which == "third_party_user_id":
            if not value.strip():
                raise _OpError("MISSING_USER_IDENTIFIER", "The third party user id is empty.")
            pairs.append((which, value))
        elif which == "address_info":
            if not (_HEX64(value.hashed_first_name) and _HEX64(value.hashed_last_name)):
                raise _OpError("INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed.")
            if not _COUNTRY(value.country_code):
                raise _OpError("INVALID_COUNTRY_CODE", "The country code is invalid.")
            pairs.append(address_id(value.hashed_first_name, value.hashed_last_name, value.country_code, value.postal_code))
        else:
            raise _OpError("MISSING_USER_IDENTIFIER", "A user identifier has no value.")
    return frozenset(pairs)


def _consent_view(consent: Any) -> dict[str, str]:
    names = {0: "UNSPECIFIED", 1: "UNKNOWN", GRANTED: "GRANTED", DENIED: "DENIED"}
    return {k: names[getattr(consent, k)] for k in ("ad_user_data", "ad_personalization") if getattr(consent, k)}


def _conditions(where: str | None) -> dict[str, list[str]]:
    if not where:
        return {}
    found: dict[str, list[str]] = {}
    for part in re.split(r"\s+AND\s+", where, flags=re.I):
        match = _CONDITION.match(part)
        if not match:
            raise _query_error("UNRECOGNIZED_FIELD", f"The emulator cannot parse the condition {part.strip()!r}.")
        name, op, value = match.groups()
        values = re.findall(r"'([^']*)'|(\d+)", value)
        found[name.lower()] = [quoted or number for quoted, number in values]
    return found


def _query_error(name: str, message: str) -> _Abort:
    return _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.", [_error("query_error", name, message)])


# ----- TLS material, one per process ----------------------------------------------------------------

_TLS_LOCK = threading.Lock()
_TLS: tuple[str, str] | None = None


def tls_material() -> tuple[str, str]:
    """(certificate path, key path) of this process's self-signed localhost certificate, made on first use."""
    global _TLS
    with _TLS_LOCK:
        if _TLS is None:
            folder = tempfile.mkdtemp(prefix="syncer-google-ads-tls-")
            atexit.register(shutil.rmtree, folder, True)
            _TLS = _write_self_signed(folder)
        return _TLS


def _write_self_signed(folder: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def start_google_ads_emulator(tls: bool = True, **kwargs: Any) -> GoogleAdsEmulator:
    """Start an emulator; with TLS, point ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` at its certificate.

    Call it before this process builds its first TLS gRPC channel: gRPC reads the variable only then.
    Other arguments go to ``GoogleAdsEmulator``. Stop it with ``.stop()``.
    """
    emulator = GoogleAdsEmulator(tls=tls, **kwargs).start()
    if tls:
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = emulator.tls_cert_path or ""
    return emulator
