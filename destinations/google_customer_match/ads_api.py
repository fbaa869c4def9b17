"""Customer Match through the Google Ads API: ``OfflineUserDataJobService`` with the official ``google-ads`` SDK.

Per ``add``/``remove``, for each consent group: CreateOfflineUserDataJob (consent GRANTED, or unset for
unknown consent and for removes) -> AddOfflineUserDataJobOperations (at most 10,000 operations per call,
``enable_partial_failure``) -> RunOfflineUserDataJob. Jobs are never polled here; ``poll`` reads their
status with one GAQL search per customer when a later step asks.

The client is built without any network call: ``Credentials(token=...)`` never refreshes. An endpoint
``http://host:port`` (the sandbox in plaintext) is served on an insecure channel with the SDK's own
metadata and exception interceptors plus a bearer-token one; anything else goes through
``GoogleAdsClient.get_service`` (TLS).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.api_core import exceptions as core_exceptions

from destinations.base import AudienceRef, Member, Op, RowOutcome, RowStatus
from destinations.google_customer_match._common import (
    ADS_API_IDENTIFIERS,
    Context,
    Group,
    Sent,
    chunks,
    digits,
    has_address,
    redact,
)
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from syncer.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    SyncError,
    TransientError,
)

__all__ = ["IDENTIFIERS", "MAX_IDENTIFIERS_PER_OPERATION", "MAX_OPERATIONS_PER_ADD", "AdsApiTransport", "classify"]

MAX_OPERATIONS_PER_ADD = 10_000
MAX_IDENTIFIERS_PER_OPERATION = 20
IDENTIFIERS = ADS_API_IDENTIFIERS
CUSTOMER_MATCH_USER_LIST = 4
GRANTED = 2
DEFAULT_RETRY_AFTER_S = 30.0  # RESOURCE_EXHAUSTED without QuotaErrorDetails.retry_delay
_POLL_CHUNK = 200
_TRANSIENT_PER_OPERATION = {("internal_error", None), ("database_error", "CONCURRENT_MODIFICATION"), ("quota_error", None)}
_AUTH_SCOPE = "https://www.googleapis.com/auth/adwords"
_JOB_NAME = re.compile(r"customers/\d+/offlineUserDataJobs/\d+").fullmatch


class AdsApiTransport:
    """Sends Customer Match jobs through ``OfflineUserDataJobService``."""

    identifiers = IDENTIFIERS

    def __init__(self, config: GoogleCustomerMatchConfig, ctx: Context, token: str, developer_token: str) -> None:
        self.ctx = ctx
        self.timeout = config.request_timeout_s
        self.customer_id = digits(config.customer_id) or ""
        self._types = _Types(config.api_version)
        self._jobs, self._search, self._channels = _clients(config, token, developer_token)

    # ----- Transport ----------------------------------------------------------------------------
    def sendable(self, member: Member) -> bool:
        ids = member.identifiers
        return bool(ids.get("email") or ids.get("phone") or ids.get("madid") or ids.get("external_id") or has_address(ids))

    def send(self, op: Op, audience: AudienceRef, groups: Sequence[Group]) -> Sent:
        sent = Sent()
        user_list = self._user_list(audience)
        for group in groups:
            if group.members:
                self._send_job(op, user_list, group, sent)
        return sent

    def poll(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {}
        by_customer: dict[str, list[str]] = {}
        for name in names:
            if _JOB_NAME(name):  # anything else cannot be a job: NOT_FOUND without a query
                by_customer.setdefault(name.split("/")[1], []).append(name)
        for customer_id, customer_names in by_customer.items():
            for start in range(0, len(customer_names), _POLL_CHUNK):
                part = customer_names[start:start + _POLL_CHUNK]
                query = ("SELECT offline_user_data_job.resource_name, offline_user_data_job.status,"
                         " offline_user_data_job.failure_reason, offline_user_data_job.operation_metadata.match_rate_range"
                         " FROM offline_user_data_job WHERE offline_user_data_job.resource_name IN ("
                         + ", ".join(f"'{n}'" for n in part) + ")")
                for row in self._call(self._search.search, request={"customer_id": customer_id, "query": query}):
                    job = row.offline_user_data_job
                    found[job.resource_name] = {"status": job.status.name, "failure_reason": _named(job.failure_reason),
                                                "match_rate_range": _named(job.operation_metadata.match_rate_range, "UNKNOWN")}
        return {name: found.get(name, {"status": "NOT_FOUND", "failure_reason": None, "match_rate_range": None}) for name in names}

    def check(self, audience: AudienceRef | None) -> None:
        rows = list(self._call(self._search.search, request={"customer_id": self.customer_id,
                                                            "query": "SELECT customer.id FROM customer LIMIT 1"}))
        if not rows:
            raise ConfigError(f"Google Ads returned no customer {self.customer_id}: check customer_id of destination '{self.ctx.destination}'")
        if audience is not None:
            user_list = self._user_list(audience)
            query = f"SELECT user_list.resource_name FROM user_list WHERE user_list.resource_name = '{user_list}'"
            if not list(self._call(self._search.search, request={"customer_id": self.customer_id, "query": query})):
                raise ConfigError(f"Google Ads user list {audience.audience_id} does not exist in customer {self.customer_id}"
                                  f" (or this login cannot see it): check the sync's audience_id and customer_id of destination"
                                  f" '{self.ctx.destination}'")

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    # ----- one job ------------------------------------------------------------------------------
    def _send_job(self, op: Op, user_list: str, group: Group, sent: Sent) -> None:
        t = self._types
        job = t.job()
        job.type_ = CUSTOMER_MATCH_USER_LIST
        job.customer_match_user_list_metadata.user_list = user_list
        if group.consent == "granted":
            job.customer_match_user_list_metadata.consent.ad_user_data = GRANTED
            job.customer_match_user_list_metadata.consent.ad_personalization = GRANTED
        created = self._call(self._jobs.create_offline_user_data_job,
                             request=t.create_request.wrap(t.create_request.pb()(customer_id=self.customer_id, job=job)))
        sent.requests += 1
        staged = 0
        for chunk in chunks(group.members, MAX_OPERATIONS_PER_ADD):
            request = t.add_request.pb()(resource_name=created.resource_name, enable_partial_failure=True)
            for member in chunk:
                _operation(request.operations.add(), op, member.identifiers)
            response = self._call(self._jobs.add_offline_user_data_job_operations, request=t.add_request.wrap(request))
            sent.requests += 1
            failed = self._failed_operations(response)
            for index, member in enumerate(chunk):
                outcome = failed.get(index)
                sent.outcomes.append(RowOutcome(member.member_key, outcome[0], outcome[1]) if outcome
                                     else RowOutcome(member.member_key, RowStatus.SENT))
            staged += len(chunk) - len(failed)
            sent.count("failed_operations", len(failed))
        if staged:
            self._call(self._jobs.run_offline_user_data_job, request=t.run_request.wrap(t.run_request.pb()(resource_name=created.resource_name)))
            sent.requests += 1
            sent.jobs.append(created.resource_name)
            sent.count("jobs")
            sent.count("operations", staged)

    def _failed_operations(self, response: Any) -> dict[int, tuple[RowStatus, str]]:
        """Operation index -> (status, Google's error code name) from ``partial_failure_error``."""
        status = response.partial_failure_error
        if not status.code:
            return {}
        failed: dict[int, tuple[RowStatus, str]] = {}
        for detail in status.details:
            failure = self._types.failure.pb().FromString(detail.value)
            for error in failure.errors:
                index = next((e.index for e in error.location.field_path_elements if e.field_name == "operations"), None)
                if index is None:
                    raise PermanentError(f"Google Ads reported a partial failure without an operation index for {self._what()}",
                                         detail=redact(error.message)[:300])
                kind, name = _error_code(error)
                transient = (kind, None) in _TRANSIENT_PER_OPERATION or (kind, name) in _TRANSIENT_PER_OPERATION
                failed.setdefault(index, (RowStatus.RETRYABLE if transient else RowStatus.REJECTED, name))
        return failed

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(timeout=self.timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, nothing escapes unclassified
            failure = classify(exc, self.ctx)
        raise failure from None  # the SDK's exception text can echo request fields: never chain it

    def _user_list(self, audience: AudienceRef) -> str:
        audience_id = audience.audience_id
        if audience_id.startswith("customers/"):
            return audience_id
        if not audience_id.isdigit():
            raise ConfigError(f"audience_id {audience_id!r} of sync '{audience.sync}' is not a Google Ads user list id"
                              " (digits, or customers/{customer_id}/userLists/{id})")
        return f"customers/{self.customer_id}/userLists/{audience_id}"

    def _what(self) -> str:
        return f"customer {self.customer_id} of destination '{self.ctx.destination}'"


def _operation(operation: Any, op: Op, ids: Mapping[str, str]) -> None:
    """Fill one OfflineUserDataJobOperation (raw protobuf) with every identifier the member has."""
    user_data = operation.create if op == "add" else operation.remove
    add = user_data.user_identifiers.add
    if ids.get("email"):
        add(hashed_email=ids["email"])
    if ids.get("phone"):
        add(hashed_phone_number=ids["phone"])
    if has_address(ids):
        address = add().address_info
        address.hashed_first_name, address.hashed_last_name = ids["first_name"], ids["last_name"]
        address.country_code, address.postal_code = ids["country"], ids["postal_code"]
    if ids.get("madid"):
        add(mobile_id=ids["madid"])
    if ids.get("external_id"):
        add(third_party_user_id=ids["external_id"])
    # one value per kind: at most 5 identifiers, far below MAX_IDENTIFIERS_PER_OPERATION


def classify(exc: BaseException, ctx: Context) -> SyncError:
    """Map any exception from an SDK call to the failure the engine acts on. The only place that reads
    Google Ads error codes and gRPC statuses."""
    from google.ads.googleads.errors import GoogleAdsException

    if isinstance(exc, GoogleAdsException):
        codes = [_error_code(e) for e in exc.failure.errors] or [("unknown", "UNKNOWN")]
        detail = (f"gRPC {exc.error.code().name}; request-id {exc.request_id}; errors: "
                  + "; ".join(f"{k}.{n}: {redact(e.message)[:200]}" for (k, n), e in zip(codes, exc.failure.errors)))
        return _classify_code(*codes[0], _retry_delay(exc.failure), ctx, detail)
    if isinstance(exc, core_exceptions.GoogleAPICallError):
        failure = _trailing_failure(exc, ctx)
        detail = f"gRPC {getattr(exc.grpc_status_code, 'name', exc.code)}: {redact(str(exc.message))[:300]}"
        if failure is not None and failure.errors:
            return _classify_code(*_error_code(failure.errors[0]), _retry_delay(failure), ctx, detail)
        return _classify_status(exc, ctx, detail)
    if isinstance(exc, grpc.RpcError):
        return TransientError(f"Google Ads call failed ({type(exc).__name__}) for {_where(ctx)}; retrying", detail=redact(str(exc))[:300])
    return TransientError(f"Google Ads call failed unexpectedly ({type(exc).__name__}) for {_where(ctx)}; retrying",
                          detail=redact(str(exc))[:300])


def _classify_code(kind: str, name: str, retry_delay: float | None, ctx: Context, detail: str) -> SyncError:
    where = _where(ctx)
    if kind == "quota_error" and name in ("RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"):
        wait = retry_delay if retry_delay is not None else DEFAULT_RETRY_AFTER_S
        return RateLimited(f"Google Ads throttled {where} ({name}); retry in {wait:g} s", retry_after=wait, detail=detail)
    if kind == "quota_error":
        return ConfigError(f"Google Ads refused {where} for quota ({name}): apply for a higher access level of the"
                           f" developer token in {ctx.developer_token_env or 'developer_token_env'}", detail=detail)
    if kind == "authentication_error":
        return _authentication(name, ctx, detail)
    if kind == "authorization_error":
        return _authorization(name, ctx, detail)
    if kind in ("internal_error",) or (kind, name) == ("database_error", "CONCURRENT_MODIFICATION"):
        return TransientError(f"Google Ads had a temporary failure ({kind} {name}) for {where}; retrying", detail=detail)
    if kind == "offline_user_data_job_error" and name == "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS":
        return ConfigError(f"Google Ads customer {ctx.customer_id} has not accepted the Customer Match terms: accept them in"
                           " Google Ads (Tools > Audience manager) and rerun", detail=detail)
    if (kind == "offline_user_data_job_error" and name in ("INVALID_USER_LIST_ID", "INVALID_USER_LIST_TYPE")) or kind == "user_list_error":
        return ConfigError(f"Google Ads refused the user list ({name}) for {where}: check the sync's audience_id is a"
                           " Customer Match list owned by customer_id", detail=detail)
    if (kind, name) in (("request_error", "TOO_MANY_MUTATE_OPERATIONS"), ("database_error", "REQUEST_TOO_LARGE")):
        return PermanentError(f"Google Ads refused a request as too large ({name}) for {where}; send fewer members per call", detail=detail)
    if kind in ("request_error", "offline_user_data_job_error", "field_error", "mutate_error", "query_error", "header_error"):
        return PermanentError(f"Google Ads refused the request for {where} ({kind} {name}); nothing was applied: see the detail", detail=detail)
    # Unknown: Customer Match adds and removes are idempotent, so another attempt is harmless.
    return TransientError(f"Google Ads returned {kind} {name} for {where}; retrying", detail=detail)


def _authentication(name: str, ctx: Context, detail: str) -> ConfigError:
    if name == "DEVELOPER_TOKEN_INVALID":
        return ConfigError(f"Google Ads rejected the developer token of destination '{ctx.destination}': export the token"
                           f" from the API Center of your manager account as {ctx.developer_token_env}", detail=detail)
    if name in ("CUSTOMER_NOT_FOUND", "CLIENT_CUSTOMER_ID_INVALID"):
        return ConfigError(f"Google Ads does not know customer {ctx.customer_id}: check customer_id of destination"
                           f" '{ctx.destination}'", detail=detail)
    return ConfigError(f"Google Ads rejected the OAuth access token of destination '{ctx.destination}' ({name}): export a"
                       f" fresh token with the {_AUTH_SCOPE} scope as {ctx.access_token_env}", detail=detail)


def _authorization(name: str, ctx: Context, detail: str) -> ConfigError:
    login = ctx.login_customer_id
    if name in ("USER_PERMISSION_DENIED", "INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION"):
        hint = (f"login_customer_id {login} is not a manager of customer {ctx.customer_id}: fix login_customer_id"
                if login else "if access goes through a manager account, set login_customer_id to that manager's id")
        return ConfigError(f"The Google account behind {ctx.access_token_env} has no access to Google Ads customer"
                           f" {ctx.customer_id} (destination '{ctx.destination}'); {hint}", detail=detail)
    if name in ("DEVELOPER_TOKEN_NOT_APPROVED", "DEVELOPER_TOKEN_PROHIBITED", "DEVELOPER_TOKEN_NOT_ON_ALLOWLIST"):
        return ConfigError(f"The developer token in {ctx.developer_token_env} may not call this account ({name}): use a"
                           " token with Basic or Standard access (test tokens reach test accounts only)", detail=detail)
    return ConfigError(f"Google Ads denied access to customer {ctx.customer_id} for destination '{ctx.destination}'"
                       f" ({name}): see the detail", detail=detail)


def _classify_status(exc: core_exceptions.GoogleAPICallError, ctx: Context, detail: str) -> SyncError:
    code, where, text = exc.grpc_status_code, _where(ctx), str(exc.message).lower()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited(f"Google Ads throttled {where}; retry in {DEFAULT_RETRY_AFTER_S:g} s",
                           retry_after=DEFAULT_RETRY_AFTER_S, detail=detail)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ConfigError(f"Google Ads rejected the credentials of destination '{ctx.destination}': export a fresh OAuth"
                           f" token as {ctx.access_token_env} and the developer token as {ctx.developer_token_env}", detail=detail)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return _authorization("USER_PERMISSION_DENIED", ctx, detail)
    if code == grpc.StatusCode.UNAVAILABLE and ("ssl" in text or "handshake" in text or "certificate" in text):
        return ConfigError(f"TLS to the Google Ads endpoint {ctx.endpoint} failed: for a local emulator, export"
                           " GRPC_DEFAULT_SSL_ROOTS_FILE_PATH with its certificate before the process starts, or use an"
                           " http:// endpoint", detail=detail)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
        return TransientError(f"Google Ads had a temporary failure ({code.name}) for {where}; retrying", detail=detail)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ConfigError(f"{ctx.endpoint} does not serve the Google Ads API: check 'endpoint' of destination '{ctx.destination}'", detail=detail)
    return PermanentError(f"Google Ads refused the request for {where} ({code.name if code else 'no status'}); see the detail", detail=detail)


def _error_code(error: Any) -> tuple[str, str]:
    """(error kind, enum name) of a GoogleAdsError, e.g. ("offline_user_data_job_error", "INVALID_SHA256_FORMAT")."""
    pb = error._pb if hasattr(error, "_pb") else error
    kind = pb.error_code.WhichOneof("error_code") or "unknown"
    if kind == "unknown":
        return kind, "UNKNOWN"
    value = getattr(pb.error_code, kind)
    enum = pb.error_code.DESCRIPTOR.fields_by_name[kind].enum_type
    return kind, enum.values_by_number[value].name if value in enum.values_by_number else str(value)


def _retry_delay(failure: Any) -> float | None:
    for error in getattr(failure, "errors", ()):
        pb = error._pb if hasattr(error, "_pb") else error
        if pb.details.HasField("quota_error_details") and pb.details.quota_error_details.HasField("retry_delay"):
            delay = pb.details.quota_error_details.retry_delay
            return delay.seconds + delay.nanos / 1e9
    return None


def _trailing_failure(exc: core_exceptions.GoogleAPICallError, ctx: Context) -> Any:
    """GoogleAdsFailure from the trailing metadata: the SDK leaves RESOURCE_EXHAUSTED and INTERNAL unwrapped."""
    response = getattr(exc, "response", None)
    try:
        metadata = response.trailing_metadata() if response is not None else None
    except Exception:  # noqa: BLE001 - no metadata is a normal case
        return None
    version = ctx.api_version
    key = f"google.ads.googleads.{version}.errors.googleadsfailure-bin"
    for name, value in metadata or ():
        if name == key:
            try:
                return _Types(version).failure.pb().FromString(value)
            except Exception:  # noqa: BLE001 - an unreadable failure falls back to the status code
                return None
    return None


def _named(value: Any, *blank: str) -> str | None:
    """An enum's name, None when unset (UNSPECIFIED) or one of ``blank``."""
    name = getattr(value, "name", None)
    return None if name in (None, "UNSPECIFIED", *blank) else name


def _where(ctx: Context) -> str:
    return f"customer {ctx.customer_id} of destination '{ctx.destination}'"


class _Types:
    """The request and error types of one API version."""

    def __init__(self, version: str) -> None:
        services = importlib.import_module(f"google.ads.googleads.{version}.services.types.offline_user_data_job_service")
        resources = importlib.import_module(f"google.ads.googleads.{version}.resources.types.offline_user_data_job")
        errors = importlib.import_module(f"google.ads.googleads.{version}.errors.types.errors")
        self.create_request = services.CreateOfflineUserDataJobRequest
        self.add_request = services.AddOfflineUserDataJobOperationsRequest
        self.run_request = services.RunOfflineUserDataJobRequest
        self.job = resources.OfflineUserDataJob.pb()
        self.failure = errors.GoogleAdsFailure


class _BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer`` on a plaintext channel, where gRPC refuses call credentials."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return continuation(_CallDetails(details.method, details.timeout, metadata, details.credentials,
                                         getattr(details, "wait_for_ready", None), getattr(details, "compression", None)),
                            request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: float | None, metadata: Any, credentials: Any, wait_for_ready: Any,
                 compression: Any) -> None:
        self.method, self.timeout, self.metadata, self.credentials = method, timeout, metadata, credentials
        self.wait_for_ready, self.compression = wait_for_ready, compression


def _clients(config: GoogleCustomerMatchConfig, token: str, developer_token: str) -> tuple[Any, Any, list[Any]]:
    """(OfflineUserDataJobService client, GoogleAdsService client, channels to close) without a network call."""
    version, login = config.api_version, digits(config.login_customer_id)
    endpoint = config.endpoint or ""
    if endpoint.startswith("http://"):
        from google.ads.googleads.interceptors import (
            ExceptionInterceptor,
            MetadataInterceptor,
        )

        channel = grpc.intercept_channel(
            grpc.insecure_channel(endpoint.removeprefix("http://").rstrip("/"),
                                  options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]),
            _BearerToken(token), MetadataInterceptor(developer_token, login, None),
            ExceptionInterceptor(version, use_proto_plus=True))
        clients = []
        for service in ("offline_user_data_job_service", "google_ads_service"):
            module = importlib.import_module(f"google.ads.googleads.{version}.services.services.{service}")
            client_class = next(getattr(module, n) for n in dir(module) if n.endswith("ServiceClient") and "Async" not in n)
            transport_class = client_class.get_transport_class("grpc")
            clients.append(client_class(transport=transport_class(channel=channel)))
        return clients[0], clients[1], [channel]
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    client = GoogleAdsClient(credentials=Credentials(token=token), developer_token=developer_token,
                             endpoint=endpoint.removeprefix("https://").rstrip("/") or None, login_customer_id=login,
                             version=version, use_proto_plus=True)
    jobs = client.get_service("OfflineUserDataJobService")
    search = client.get_service("GoogleAdsService")
    return jobs, search, [jobs.transport, search.transport]
