"""The google-ads SDK side of the ``google_ads_api`` transport: its clients, built without a network call,
and its errors, read into one ``PlatformResponse`` for the transport's ``classify``.

Clients: ``Credentials(token=...)`` never refreshes, so building one calls nothing. An endpoint
``http://host:port`` (the sandbox in plaintext) is served on an insecure channel with the SDK's own
metadata and exception interceptors plus a bearer-token one; anything else goes through
``GoogleAdsClient.get_service`` (TLS).

Errors: the SDK raises ``GoogleAdsException`` (a ``GoogleAdsFailure`` with error codes) for most
failures, but leaves RESOURCE_EXHAUSTED and INTERNAL as ``google.api_core`` errors with the failure in
the trailing metadata. ``response_of`` turns either into the HTTP equivalent of the gRPC status, the
failure's error codes as the body and the quota's retry delay as ``Retry-After``.
"""

from __future__ import annotations

import importlib
from typing import Any

import grpc
from google.api_core import exceptions as core_exceptions

from destinations.google_customer_match._common import digits, redact
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.responses import PlatformResponse

__all__ = ["SdkTypes", "clients", "error_code", "response_of"]

# The HTTP status a gRPC status means to ``classify``. UNKNOWN and CANCELLED: the call may never have reached
# Google, so they are retried like UNAVAILABLE. Any other status (FAILED_PRECONDITION, ALREADY_EXISTS...) is
# a refused request: 400.
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
                "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "INTERNAL": 503,
                "DEADLINE_EXCEEDED": 503, "ABORTED": 503, "UNKNOWN": 503, "CANCELLED": 503}


class SdkTypes:
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


# ----- errors ---------------------------------------------------------------------------------------

def response_of(exc: BaseException, api_version: str) -> PlatformResponse:
    """The HTTP-equivalent answer of a failed SDK call.

    Returns:
        ``PlatformResponse(status, body, headers)``: status from the gRPC status (``_HTTP_STATUS``); body
        ``{"grpc_status", "request_id", "message", "errors": [{"kind", "code", "message"}]}`` with the
        GoogleAdsFailure's error codes in order (messages redacted); ``Retry-After`` from the first
        ``QuotaErrorDetails.retry_delay``. An exception that is no gRPC error answers 503 with its type as
        ``exception``: an unexplained failure of an idempotent call is retried.
    """
    from google.ads.googleads.errors import GoogleAdsException

    if isinstance(exc, GoogleAdsException):
        status, failure, request_id, message = exc.error.code().name, exc.failure, exc.request_id, ""
        errors = _errors(failure) or [{"kind": "unknown", "code": "UNKNOWN", "message": ""}]
    elif isinstance(exc, core_exceptions.GoogleAPICallError):
        status = getattr(exc.grpc_status_code, "name", None)
        failure, request_id, message = _trailing_failure(exc, api_version), None, str(exc.message)
        errors = _errors(failure)
    else:
        body = {"grpc_status": None, "exception": type(exc).__name__, "message": redact(str(exc))[:300], "errors": []}
        return PlatformResponse(503, body)
    body = {"grpc_status": status, "request_id": request_id, "message": redact(message)[:300], "errors": errors}
    delay = _retry_delay(failure)
    return PlatformResponse(_HTTP_STATUS.get(status or "", 400), body, {"Retry-After": f"{delay:g}"} if delay is not None else {})


def error_code(error: Any) -> tuple[str, str]:
    """(error kind, enum name) of a GoogleAdsError, e.g. ("offline_user_data_job_error", "INVALID_SHA256_FORMAT")."""
    pb = error._pb if hasattr(error, "_pb") else error
    kind = pb.error_code.WhichOneof("error_code") or "unknown"
    if kind == "unknown":
        return kind, "UNKNOWN"
    value = getattr(pb.error_code, kind)
    enum = pb.error_code.DESCRIPTOR.fields_by_name[kind].enum_type
    return kind, enum.values_by_number[value].name if value in enum.values_by_number else str(value)


def _errors(failure: Any) -> list[dict[str, str]]:
    found = []
    for error in getattr(failure, "errors", ()):
        kind, name = error_code(error)
        found.append({"kind": kind, "code": name, "message": redact(error.message)[:200]})
    return found


def _retry_delay(failure: Any) -> float | None:
    for error in getattr(failure, "errors", ()):
        pb = error._pb if hasattr(error, "_pb") else error
        if pb.details.HasField("quota_error_details") and pb.details.quota_error_details.HasField("retry_delay"):
            delay = pb.details.quota_error_details.retry_delay
            return delay.seconds + delay.nanos / 1e9
    return None


def _trailing_failure(exc: core_exceptions.GoogleAPICallError, version: str) -> Any:
    """GoogleAdsFailure from the trailing metadata: the SDK leaves RESOURCE_EXHAUSTED and INTERNAL unwrapped."""
    response = getattr(exc, "response", None)
    try:
        metadata = response.trailing_metadata() if response is not None else None
    except Exception:  # noqa: BLE001 - no metadata is a normal case
        return None
    key = f"google.ads.googleads.{version}.errors.googleadsfailure-bin"
    for name, value in metadata or ():
        if name == key:
            try:
                return SdkTypes(version).failure.pb().FromString(value)
            except Exception:  # noqa: BLE001 - an unreadable failure falls back to the status code
                return None
    return None


# ----- clients --------------------------------------------------------------------------------------

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


def clients(config: GoogleCustomerMatchConfig, token: str, developer_token: str) -> tuple[Any, Any, list[Any]]:
    """(OfflineUserDataJobService client, GoogleAdsService client, channels to close) without a network call."""
    version, login = config.api_version, digits(config.login_customer_id)
    endpoint = config.endpoint or ""
    if endpoint.startswith("http://"):
        from google.ads.googleads.interceptors import ExceptionInterceptor, MetadataInterceptor

        channel = grpc.intercept_channel(
            grpc.insecure_channel(endpoint.removeprefix("http://").rstrip("/"),
                                  options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]),
            _BearerToken(token), MetadataInterceptor(developer_token, login, None),
            ExceptionInterceptor(version, use_proto_plus=True))
        services = []
        for service in ("offline_user_data_job_service", "google_ads_service"):
            module = importlib.import_module(f"google.ads.googleads.{version}.services.services.{service}")
            client_class = next(getattr(module, n) for n in dir(module) if n.endswith("ServiceClient") and "Async" not in n)
            transport_class = client_class.get_transport_class("grpc")
            services.append(client_class(transport=transport_class(channel=channel)))
        return services[0], services[1], [channel]
    from google.ads.googleads.client import GoogleAdsClient
    from google.oauth2.credentials import Credentials

    client = GoogleAdsClient(credentials=Credentials(token=token), developer_token=developer_token,
                             endpoint=endpoint.removeprefix("https://").rstrip("/") or None, login_customer_id=login,
                             version=version, use_proto_plus=True)
    jobs = client.get_service("OfflineUserDataJobService")
    search = client.get_service("GoogleAdsService")
    return jobs, search, [jobs.transport, search.transport]
