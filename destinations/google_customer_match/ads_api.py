"""Customer Match through the Google Ads API: ``OfflineUserDataJobService`` with the official ``google-ads`` SDK.

Per ``add``/``remove``, for each consent group: CreateOfflineUserDataJob (consent GRANTED, or unset for
unknown consent and for removes; a random ``external_id``) -> AddOfflineUserDataJobOperations (at most
10,000 operations per call, ``enable_partial_failure``) -> RunOfflineUserDataJob, each stage recorded in the
engine's job book so a retry resumes the job instead of starting again (``job_steps``). Jobs are never
polled here; ``poll`` reads their status with one GAQL search per customer when a later step asks.

``audience_counts`` reads a list's size with one GAQL search: ``user_list.size_for_search`` and
``size_for_display`` ("Estimated number of users ... null if the number of users has not yet been
determined") and ``size_range_for_search`` / ``size_range_for_display`` (``UserListSizeRange`` buckets:
LESS_THAN_FIVE_HUNDRED, LESS_THAN_ONE_THOUSAND "500 to 1000", ONE_THOUSAND_TO_TEN_THOUSAND, ...).
Sources: developers.google.com/google-ads/api/fields/v26/user_list and
developers.google.com/google-ads/api/reference/rpc/v26/UserListSizeRangeEnum.UserListSizeRange (also the v26
wheel's ``resources/types/user_list.py``). Google counts matched people, not uploaded rows, and its UI shows
the size bucketed (support.google.com/google-ads/answer/7474166); sizes follow uploads only once their jobs
have run (hours).

Every failed SDK call is read into a ``PlatformResponse`` (``ads_api_client.response_of``: the HTTP
equivalent of its gRPC status, the GoogleAdsFailure's error codes, the quota's retry delay as
``Retry-After``) and classified here; the clients are built in ``ads_api_client`` without a network call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from destinations.base import AudienceRef, JobBook, Member, Op, RowStatus
from destinations.google_customer_match._common import Consent, Group, Sent, chunks, digits, has_address, redact, step_key
from destinations.google_customer_match.ads_api_client import SdkTypes, clients, error_code, response_of
from destinations.google_customer_match.config import ADS_API_IDENTIFIERS, GoogleCustomerMatchConfig
from destinations.google_customer_match.job_steps import JobStep, Unapplied
from destinations.http import retry_after
from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["DEFAULT_RETRY_AFTER_S", "IDENTIFIERS", "MAX_IDENTIFIERS_PER_OPERATION", "MAX_OPERATIONS_PER_ADD", "SIZE_FIELDS",
           "AdsApiTransport"]

MAX_OPERATIONS_PER_ADD = 10_000
MAX_IDENTIFIERS_PER_OPERATION = 20
IDENTIFIERS = ADS_API_IDENTIFIERS
CUSTOMER_MATCH_USER_LIST = 4
GRANTED = 2
DEFAULT_RETRY_AFTER_S = 30.0  # RESOURCE_EXHAUSTED without QuotaErrorDetails.retry_delay
_POLL_CHUNK = 200
SIZE_FIELDS = ("size_for_search", "size_for_display")
"""The ``audience_counts`` keys: the names ``syncer.delivery.reconcile_size`` reads a Google size by."""
_TRANSIENT_PER_OPERATION = {("internal_error", None), ("database_error", "CONCURRENT_MODIFICATION"), ("quota_error", None)}
_AUTH_SCOPE = "https://www.googleapis.com/auth/adwords"
_JOB_NAME = re.compile(r"customers/\d+/offlineUserDataJobs/\d+").fullmatch
_REFUSED_KINDS = ("request_error", "offline_user_data_job_error", "field_error", "mutate_error", "query_error", "header_error")
# gRPC statuses of a call Google refused before doing anything: a job call answered so was not applied. Any other
# failure (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, no answer) may have been applied.
_REFUSED_BEFORE_APPLYING = frozenset({"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED",
                                      "NOT_FOUND", "UNIMPLEMENTED", "FAILED_PRECONDITION"})


class AdsApiTransport:
    """Sends Customer Match jobs through ``OfflineUserDataJobService``.

    Args:
        config: the destination's config.
        token, developer_token: the OAuth access token and the developer token (read from the config's variables).
        name: the destination's current name, for messages (the engine names it after construction).
    """

    identifiers = IDENTIFIERS
    platform = "Google Ads"

    def __init__(self, config: GoogleCustomerMatchConfig, token: str, developer_token: str, *, name: Callable[[], str]) -> None:
        self.config = config
        self.name = name
        self.customer_id = digits(config.customer_id) or ""
        self.login_customer_id = digits(config.login_customer_id)
        self._types = SdkTypes(config.api_version)
        self._jobs, self._search, self._channels = clients(config, token, developer_token)

    # ----- Transport ----------------------------------------------------------------------------
    def sendable(self, member: Member) -> bool:
        ids = member.identifiers
        return bool(ids.get("email") or ids.get("phone") or ids.get("madid") or ids.get("external_id") or has_address(ids))

    def send(self, op: Op, audience: AudienceRef, groups: Sequence[Group], sent: Sent, book: JobBook | None) -> None:
        user_list = self._user_list(audience)
        for group in groups:
            if group.members:
                step = step_key(user_list, op, f"ads_api:{group.consent}", group.members)
                JobStep(self, book, audience.sync, step).send(op, user_list, group, sent)

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
            raise ConfigError(f"Google Ads returned no customer {self.customer_id}: check customer_id of destination '{self.name()}'")
        if audience is not None and not self._user_list_rows(audience, "user_list.resource_name"):
            raise self._no_user_list(audience)

    def audience_counts(self, audience: AudienceRef) -> dict[str, int]:
        """The list's size as Google estimates it, from one GAQL search.

        Returns:
            ``size_for_search`` and ``size_for_display`` (people matched, as ints), each only once Google has
            determined it: a new list, or one whose first job has not run, returns ``{}``. The ranges come back in
            the same search but are not returned: ``syncer.delivery.reconcile_size`` reads each size as that same
            ``UserListSizeRange`` bucket.

        Raises:
            ConfigError: the list does not exist in the customer (or the login cannot see it); credentials.
            RateLimited, TransientError: as ``classify`` reads the failure.
        """
        fields = [f"user_list.{name}" for name in (*SIZE_FIELDS, "size_range_for_search", "size_range_for_display")]
        rows = self._user_list_rows(audience, *fields)
        if not rows:
            raise self._no_user_list(audience)
        found = rows[0].user_list
        return {name: int(getattr(found, name)) for name in SIZE_FIELDS if name in found}  # `in` is presence: null stays out

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    # ----- the three job calls (job_steps.JobCalls) ---------------------------------------------
    def create_job(self, user_list: str, consent: Consent | None, external_id: int, sent: Sent) -> str | None:
        t = self._types
        job = t.job()
        job.type_ = CUSTOMER_MATCH_USER_LIST
        job.external_id = external_id
        job.customer_match_user_list_metadata.user_list = user_list
        if consent == "granted":
            job.customer_match_user_list_metadata.consent.ad_user_data = GRANTED
            job.customer_match_user_list_metadata.consent.ad_personalization = GRANTED
        sent.requests += 1
        created = self._call(self._jobs.create_offline_user_data_job, tolerate={"EXTERNAL_UPDATE_ID_ALREADY_EXISTS"},
                             request=t.create_request.wrap(t.create_request.pb()(customer_id=self.customer_id, job=job)))
        if created is not None:
            return str(created.resource_name)
        sent.requests += 1  # an earlier attempt created it: find it
        query = ("SELECT offline_user_data_job.resource_name FROM offline_user_data_job"
                 f" WHERE offline_user_data_job.external_id = {int(external_id)}")
        rows = list(self._call(self._search.search, request={"customer_id": self.customer_id, "query": query}))
        return str(rows[0].offline_user_data_job.resource_name) if rows else None

    def add_operations(self, job: str, op: Op, members: Sequence[Member], sent: Sent) -> dict[str, list[str]]:
        t, failed = self._types, {}
        for number, chunk in enumerate(chunks(members, MAX_OPERATIONS_PER_ADD)):
            request = t.add_request.pb()(resource_name=job, enable_partial_failure=True)
            for member in chunk:
                _operation(request.operations.add(), op, member.identifiers)
            sent.requests += 1
            # only while the job holds none of these operations may a refused call leave it to be filled again
            response = self._call(self._jobs.add_offline_user_data_job_operations, unapplied=number == 0,
                                  request=t.add_request.wrap(request))
            for index, (status, reason) in self._failed_operations(response).items():
                failed[chunk[index].member_key] = [status.value, reason]
        return failed

    def run_job(self, job: str, sent: Sent) -> None:
        t = self._types
        sent.requests += 1
        self._call(self._jobs.run_offline_user_data_job, unapplied=True, tolerate={"JOB_ALREADY_STARTED"},
                   request=t.run_request.wrap(t.run_request.pb()(resource_name=job)))

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
                    raise PermanentError(f"Google Ads reported a partial failure without an operation index for {self._where()}",
                                         detail=redact(error.message)[:300])
                kind, name = error_code(error)
                transient = (kind, None) in _TRANSIENT_PER_OPERATION or (kind, name) in _TRANSIENT_PER_OPERATION
                failed.setdefault(index, (RowStatus.RETRYABLE if transient else RowStatus.REJECTED, name))
        return failed

    def _call(self, method: Any, *, tolerate: frozenset[str] | set[str] = frozenset(), unapplied: bool = False,
              **kwargs: Any) -> Any:
        """The call's answer; None when it failed with an error code in ``tolerate``. A failure is raised as
        ``classify`` reads it, wrapped in ``Unapplied`` when ``unapplied`` and Google refused before applying."""
        try:
            return method(timeout=self.config.request_timeout_s, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, nothing escapes unclassified
            response = response_of(exc, self.config.api_version)
        body = response.body if isinstance(response.body, dict) else {}
        if tolerate and any(e.get("code") in tolerate for e in body.get("errors") or ()):
            return None
        # never chained: the SDK's exception text can echo request fields (response_of never answers 2xx, so
        # failure is set; the fallback only keeps the type honest)
        failure = self.classify(response) or TransientError(f"Google Ads call failed for {self._where()}; retrying")
        if unapplied and body.get("grpc_status") in _REFUSED_BEFORE_APPLYING:
            raise Unapplied(failure) from None
        raise failure from None

    def _user_list(self, audience: AudienceRef) -> str:
        audience_id = audience.audience_id
        if audience_id.startswith("customers/"):
            return audience_id
        if not audience_id.isdigit():
            raise ConfigError(f"audience_id {audience_id!r} of sync '{audience.sync}' is not a Google Ads user list id"
                              " (digits, or customers/{customer_id}/userLists/{id})")
        return f"customers/{self.customer_id}/userLists/{audience_id}"

    def _where(self) -> str:
        return f"customer {self.customer_id} of destination '{self.name()}'"

    def _user_list_rows(self, audience: AudienceRef, *fields: str) -> list[Any]:
        user_list = self._user_list(audience)
        query = f"SELECT {', '.join(fields)} FROM user_list WHERE user_list.resource_name = '{user_list}'"
        return list(self._call(self._search.search, request={"customer_id": self.customer_id, "query": query}))

    def _no_user_list(self, audience: AudienceRef) -> ConfigError:
        return ConfigError(f"Google Ads user list {audience.audience_id} does not exist in customer {self.customer_id}"
                           f" (or this login cannot see it): check the sync's audience_id and customer_id of destination"
                           f" '{self.name()}'")

    # ----- what an answer means ---------------------------------------------------------------------
    def classify(self, response: PlatformResponse) -> SyncError | None:
        """The failure one answer means (a failed SDK call read by ``response_of``), or None for a 2xx: the only
        reader of Google Ads error codes and statuses. The first GoogleAdsFailure error code decides; without
        one, the status does, through the shared table where Google Ads means what it says."""
        if 200 <= response.status < 300:
            return None
        body = response.body if isinstance(response.body, dict) else {}
        errors = [e for e in body.get("errors") or () if isinstance(e, dict)]
        wait = retry_after(response.headers)
        if errors:
            detail = (f"gRPC {body.get('grpc_status')}; request-id {body.get('request_id')}; errors: "
                      + "; ".join(f"{e.get('kind')}.{e.get('code')}: {redact(str(e.get('message', '')))[:200]}" for e in errors))
            return self._classify_code(str(errors[0].get("kind")), str(errors[0].get("code")), wait, detail)
        return self._classify_status(response, body, wait)

    def error_context(self) -> ErrorContext:
        return ErrorContext(platform=self.platform, destination=self.name(), credential_env=self.config.access_token_env,
                            target=f"customer {self.customer_id}")

    def _classify_code(self, kind: str, name: str, wait: float | None, detail: str) -> SyncError:
        where = self._where()
        if kind == "quota_error" and name in ("RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"):
            wait = wait if wait is not None else DEFAULT_RETRY_AFTER_S
            return RateLimited(f"Google Ads throttled {where} ({name}); retry in {wait:g} s", retry_after=wait, detail=detail)
        if kind == "quota_error":
            return ConfigError(f"Google Ads refused {where} for quota ({name}): apply for a higher access level of the"
                               f" developer token in {self.config.developer_token_env or 'developer_token_env'}", detail=detail)
        if kind == "authentication_error":
            return self._authentication(name, detail)
        if kind == "authorization_error":
            return self._authorization(name, detail)
        if kind in ("internal_error",) or (kind, name) == ("database_error", "CONCURRENT_MODIFICATION"):
            return TransientError(f"Google Ads had a temporary failure ({kind} {name}) for {where}; retrying", detail=detail)
        if kind == "offline_user_data_job_error" and name == "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS":
            return ConfigError(f"Google Ads customer {self.customer_id} has not accepted the Customer Match terms: accept them"
                               " in Google Ads (Tools > Audience manager) and rerun", detail=detail)
        if (kind == "offline_user_data_job_error" and name in ("INVALID_USER_LIST_ID", "INVALID_USER_LIST_TYPE")) or kind == "user_list_error":
            return ConfigError(f"Google Ads refused the user list ({name}) for {where}: check the sync's audience_id is a"
                               " Customer Match list owned by customer_id", detail=detail)
        if (kind, name) in (("request_error", "TOO_MANY_MUTATE_OPERATIONS"), ("database_error", "REQUEST_TOO_LARGE")):
            return PermanentError(f"Google Ads refused a request as too large ({name}) for {where}; send fewer members per call",
                                  detail=detail)
        if kind in _REFUSED_KINDS:
            return PermanentError(f"Google Ads refused the request for {where} ({kind} {name}); nothing was applied: see the"
                                  " detail", detail=detail)
        # Unknown: Customer Match adds and removes are idempotent, so another attempt is harmless.
        return TransientError(f"Google Ads returned {kind} {name} for {where}; retrying", detail=detail)

    def _classify_status(self, response: PlatformResponse, body: Mapping[str, Any], wait: float | None) -> SyncError | None:
        """An answer without a GoogleAdsFailure: the status decides."""
        grpc_status, text = body.get("grpc_status"), str(body.get("message", ""))
        detail = f"gRPC {grpc_status or body.get('exception') or '-'}: {redact(text)[:300]}"
        if response.status == 429:
            wait = wait if wait is not None else DEFAULT_RETRY_AFTER_S
            return RateLimited(f"Google Ads throttled {self._where()}; retry in {wait:g} s", retry_after=wait, detail=detail)
        if response.status == 401:
            return ConfigError(f"Google Ads rejected the credentials of destination '{self.name()}': export a fresh OAuth"
                               f" token as {self.config.access_token_env} and the developer token as"
                               f" {self.config.developer_token_env}", detail=detail)
        if response.status == 403:
            return self._authorization("USER_PERMISSION_DENIED", detail)
        if grpc_status == "UNAVAILABLE" and any(word in text.lower() for word in ("ssl", "handshake", "certificate")):
            return ConfigError(f"TLS to the Google Ads endpoint {self.config.endpoint or ''} failed: for a local emulator,"
                               " export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH with its certificate before the process starts, or"
                               " use an http:// endpoint", detail=detail)
        if grpc_status == "UNIMPLEMENTED":
            return ConfigError(f"{self.config.endpoint or ''} does not serve the Google Ads API: check 'endpoint' of"
                               f" destination '{self.name()}'", detail=detail)
        return classify_status(response, self.error_context(), code=grpc_status or body.get("exception"))

    def _authentication(self, name: str, detail: str) -> ConfigError:
        destination = self.name()
        if name == "DEVELOPER_TOKEN_INVALID":
            return ConfigError(f"Google Ads rejected the developer token of destination '{destination}': export the token"
                               f" from the API Center of your manager account as {self.config.developer_token_env}", detail=detail)
        if name in ("CUSTOMER_NOT_FOUND", "CLIENT_CUSTOMER_ID_INVALID"):
            return ConfigError(f"Google Ads does not know customer {self.customer_id}: check customer_id of destination"
                               f" '{destination}'", detail=detail)
        return ConfigError(f"Google Ads rejected the OAuth access token of destination '{destination}' ({name}): export a"
                           f" fresh token with the {_AUTH_SCOPE} scope as {self.config.access_token_env}", detail=detail)

    def _authorization(self, name: str, detail: str) -> ConfigError:
        login, destination = self.login_customer_id, self.name()
        if name in ("USER_PERMISSION_DENIED", "INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION"):
            hint = (f"login_customer_id {login} is not a manager of customer {self.customer_id}: fix login_customer_id"
                    if login else "if access goes through a manager account, set login_customer_id to that manager's id")
            return ConfigError(f"The Google account behind {self.config.access_token_env} has no access to Google Ads customer"
                               f" {self.customer_id} (destination '{destination}'); {hint}", detail=detail)
        if name in ("DEVELOPER_TOKEN_NOT_APPROVED", "DEVELOPER_TOKEN_PROHIBITED", "DEVELOPER_TOKEN_NOT_ON_ALLOWLIST"):
            return ConfigError(f"The developer token in {self.config.developer_token_env} may not call this account ({name}):"
                               " use a token with Basic or Standard access (test tokens reach test accounts only)", detail=detail)
        return ConfigError(f"Google Ads denied access to customer {self.customer_id} for destination '{destination}'"
                           f" ({name}): see the detail", detail=detail)


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


def _named(value: Any, *blank: str) -> str | None:
    """An enum's name, None when unset (UNSPECIFIED) or one of ``blank``."""
    name = getattr(value, "name", None)
    return None if name in (None, "UNSPECIFIED", *blank) else name
