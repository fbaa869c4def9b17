"""Google Ads Customer Match: keep a Customer Match user list's members in sync, over one of two transports.

Members arrive normalised and hashed by ``syncer.identity.rows``: email, phone, first and last name as
SHA-256 hex; country and postal code plain; madid and external_id as they are. The rule set is
``google`` for google_ads_api and ``google_data_manager`` for data_manager (``config.capabilities_for``,
read without importing this module; an instance carries its transport's, the class attribute is
google_ads_api's).

Transport ``google_ads_api`` (``ads_api.py``; official ``google-ads`` SDK, gRPC, wired in ``ads_api_client.py``)::

    per consent group:  CreateOfflineUserDataJob   job{type CUSTOMER_MATCH_USER_LIST, user_list, consent}
                        AddOfflineUserDataJobOperations   <= 10,000 operations, enable_partial_failure
                        RunOfflineUserDataJob       returns at once; the job runs for hours
    poll_jobs:          GoogleAdsService.Search     SELECT offline_user_data_job.status, failure_reason,
                                                    operation_metadata.match_rate_range ... IN (names)

- Creates and removes always go in separate jobs (a mixed job fails with CONFLICTING_OPERATION); one
  operation per member carries all its identifiers (one ``UserIdentifier`` each, <= 20 allowed; we send
  at most 5: hashed_email, hashed_phone_number, address_info{first, last, country, postal},
  mobile_id, third_party_user_id). A user list has one upload key type (contact info, CRM id or mobile
  id): choose the sync's ``identifiers`` to match it.
- Partial failure: each failed operation index of ``partial_failure_error`` is mapped back to its member:
  REJECTED with Google's error code name as reason (``INVALID_SHA256_FORMAT``); per-operation internal,
  quota or CONCURRENT_MODIFICATION errors are RETRYABLE. A job whose operations all failed is not run.
- Errors: a failed call becomes a ``PlatformResponse`` with the HTTP equivalent of its gRPC status
  (RESOURCE_EXHAUSTED 429, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, UNAVAILABLE,
  INTERNAL, DEADLINE_EXCEEDED, ABORTED 503, INVALID_ARGUMENT 400), the GoogleAdsFailure's error codes
  as body and ``QuotaErrorDetails.retry_delay`` as Retry-After, then ``classify`` reads it:
  RESOURCE_EXHAUSTED -> ``RateLimited`` (the retry delay, 30 s when absent); InternalError.*,
  CONCURRENT_MODIFICATION and the 503s -> ``TransientError``; AuthenticationError / AuthorizationError
  -> ``ConfigError`` naming the variable or field to fix (``login_customer_id`` for
  USER_PERMISSION_DENIED); request and job errors -> ``PermanentError``; any other error code ->
  ``TransientError`` (adds and removes are idempotent).
- Retries resume: each job's resource name and stage are kept in the engine's job book
  (``job_book``, the ledger's ``job_steps``), so a retried or resumed batch reuses the job it created,
  adds operations only if they were not added, runs only what was not run, and returns the outcomes of a
  job already running without a call. ``job_steps`` walks through every window a failure or crash can hit.
- Upload key type: a user list matches by one of contact info, CRM id or mobile id; an operation with an
  identifier of another kind is refused on its own (INCOMPATIBLE_UPLOAD_KEY_TYPE, REJECTED with that reason).
- Client: ``GoogleAdsClient(credentials=Credentials(token=...), developer_token, endpoint,
  login_customer_id)``, built without a network call (no refresh). ``endpoint: http://host:port`` is
  a plaintext sandbox (insecure channel, the SDK's interceptors plus a bearer-token one).

Transport ``data_manager`` (``data_manager.py``, ``requests`` session; required for most new Customer
Match integrations since 1 April 2026)::

    add     POST {endpoint}/v1/audienceMembers:ingest   {destinations, audienceMembers, encoding: HEX,
                                                         termsOfService}  -> {requestId}
    remove  POST {endpoint}/v1/audienceMembers:remove   {destinations, audienceMembers, encoding}
    poll    GET  {endpoint}/v1/requestStatus:retrieve?requestId=...

- ``destinations[0]`` = {operatingAccount{accountType GOOGLE_ADS, accountId customer_id},
  loginAccount (login_customer_id, when set), productDestinationId audience_id}.
- At most 10,000 audienceMembers and 10 userIdentifiers per member; ``userData`` (email, phone,
  address{givenName, familyName, regionCode, postalCode}) and ``mobileData{mobileIds}`` never share a
  request; a member with contact info is sent as userData only. external_id is not offered.
- Consent per member (CONSENT_GRANTED for granted, absent for unknown), so one request carries both
  groups. ``termsOfService`` ACCEPTED only when ``customer_match_terms_accepted: true``.
- Fast fail: a 400 whose field violations all name ``audience_members[i]`` rejects those members with
  the violation's reason (INVALID_USER_LIST_TYPE: another upload key type than the list's) and resends the
  rest (three rounds at most).
- Retries: an accepted request is recorded in the job book and not sent again by the retry of its batch; a
  request carries no id of ours, so one whose answer was lost is sent again (a set operation: harmless).
- 429 RESOURCE_EXHAUSTED -> ``RateLimited``: Retry-After, else RetryInfo, else 60 s (per-minute quota)
  or until midnight Pacific (per-day quota, IngestionMutateRequestsPerDayPerProject); 401/403 ->
  ``ConfigError``; 400 -> ``PermanentError``, 408 and 5xx -> ``TransientError`` (the shared table);
  other statuses -> ``TransientError``. 300 requests a minute per Cloud project.

Both transports
- Consent: ``capabilities.consent_marker`` is on, so the engine puts the segment's ads consent in
  ``Member.identifiers["_consent"]``: "granted" or "unknown" (also assumed when absent); the engine
  filters denied members out, and a "denied" that still arrives is never sent: REJECTED ``consent_denied``.
  Granted members go with consent GRANTED (ad_user_data and ad_personalization), unknown ones with
  consent unset, in separate jobs (Ads API) or per member (Data Manager). Removes ignore the marker: a
  member who withdrew consent must still leave the list. Members with nothing this transport can send
  are REJECTED ``no_supported_identifier``.
- Job status is never awaited: ``destination.jobs`` collects job resource names / request ids;
  ``poll_jobs(names)`` returns {name: {status, failure_reason, match_rate_range}} in a later step.
- Size (``HasPlatformCounts``, for ``syncer reconcile`` and the engine's figures after a change): both
  transports offer ``audience_counts`` -> ``size_for_search`` / ``size_for_display`` (people Google matched,
  each left out until Google has determined it). google_ads_api reads ``user_list.size_for_search`` /
  ``size_for_display`` with one GAQL search (``ads_api``); data_manager reads ``sizeInfo.searchNetworkMembersCount``
  / ``displayNetworkMembersCount`` with one ``GET /v1/accountTypes/GOOGLE_ADS/accounts/{cid}/userLists/{id}``
  (``data_manager``; a 0 there is indistinguishable from "not determined" and is left out too). A missing list
  is a ``ConfigError`` naming it; a throttle is ``RateLimited``.
- ``classify(response)`` is the transport's own (``ads_api.AdsApiTransport.classify``,
  ``data_manager.DataManagerTransport.classify``): the connector's one entry point for what an answer means.
- Limits as data: ``capabilities.max_batch`` 10,000 (the base refuses more); ``ads_api.MAX_OPERATIONS_PER_ADD``,
  ``ads_api.MAX_IDENTIFIERS_PER_OPERATION``, ``data_manager.MAX_MEMBERS_PER_REQUEST``.

Config example::

    # destinations/google_vip.yml
    type: google_customer_match
    customer_id: "123-456-7890"
    login_customer_id: "111-222-3333"      # optional: the manager account access goes through
    transport: data_manager                # or google_ads_api
    access_token_env: GOOGLE_ADS_ACCESS_TOKEN
    developer_token_env: GOOGLE_ADS_DEVELOPER_TOKEN   # google_ads_api only
    customer_match_terms_accepted: true    # data_manager: you accepted the Customer Match terms
    endpoint: http://127.0.0.1:8510/datamanager       # optional: the sandbox (google_ads_api: localhost:PORT)

Sources (read for this package)
- google-ads 34.0.0 wheel: ``client.py``, ``interceptors/``, ``v26/services/types/
  offline_user_data_job_service.py``, ``v26/common/types/offline_user_data.py``, ``v26/errors/types/``
  (enum names above), ``v26/resources/types/offline_user_data_job.py``; shared specs section 2 and 9.
- Data Manager REST reference, developers.google.com/data-manager/api/reference/rest/v1/:
  ``audienceMembers/ingest`` and ``/remove`` (request bodies above, "At most 10000 AudienceMember
  resources", response ``{requestId}``), ``AudienceMember`` (union userData | mobileData, consent),
  ``UserData`` ("At most 10 userIdentifiers", AddressInfo givenName/familyName/regionCode/postalCode),
  ``Consent`` (adUserData, adPersonalization: CONSENT_GRANTED | CONSENT_DENIED), ``Destination`` and
  ``ProductAccount`` (accountType GOOGLE_ADS, accountId), ``TermsOfService``
  (customerMatchTermsOfServiceStatus ACCEPTED, "must be accepted when ingesting UserData or
  MobileData"), ``ErrorReason`` (INVALID_SHA256_FORMAT, TOO_MANY_AUDIENCE_MEMBERS,
  MULTIPLE_DATA_TYPES_NOT_ALLOWED, TERMS_AND_CONDITIONS_NOT_SIGNED ...), ``requestStatus/retrieve``
  (requestStatus, uploadMatchRateRange MATCH_RATE_RANGE_*).
- Data Manager guides: ``devguides/concepts/understand-errors`` (fast-fail model), the quickstart
  "Send audience members" (error example with field ``audience_members.audience_members[0]`` and reason
  INVALID_SHA256_FORMAT), ``devguides/limits`` (300 requests/minute, RESOURCE_EXHAUSTED and HTTP 429,
  ``ErrorInfo.metadata.quota_limit``), ``devguides/concepts/destinations`` (loginAccount for managers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from destinations.base import AudienceRef, BatchResult, Capabilities, Destination, Member, Op, RowOutcome, RowStatus
from destinations.google_customer_match._common import CONSENT_KEY, FINAL_STATUSES, Group, Sent, Transport, digits
from destinations.google_customer_match.config import ADS_API_CAPABILITIES, GoogleCustomerMatchConfig, capabilities_for
from destinations.responses import ErrorContext, PlatformResponse
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, SyncError

__all__ = ["GoogleCustomerMatchDestination", "JobStatus"]

JobStatus = dict[str, "str | None"]
"""{"status", "failure_reason", "match_rate_range"} of one job or request (see ``poll_jobs``)."""


class GoogleCustomerMatchDestination(Destination):
    """Adds and removes members of Google Ads Customer Match user lists.

    ``jobs`` lists what this instance submitted, oldest first: Ads API job resource names
    (``customers/{cid}/offlineUserDataJobs/{id}``) or Data Manager request ids. Nothing here waits for
    them; store them and call ``poll_jobs`` in a later step or run (``RunsJobs``).
    """

    kind = "google_customer_match"
    capabilities: ClassVar[Capabilities] = ADS_API_CAPABILITIES
    """The google_ads_api transport's; an instance carries its own transport's (``config.capabilities_for``)."""
    final_statuses: ClassVar[frozenset[str]] = FINAL_STATUSES
    """Job statuses after which ``poll_jobs`` reports nothing new."""

    def __init__(self, config: GoogleCustomerMatchConfig, *, name: str | None = None) -> None:
        """Build the transport's client; reads the secrets from the environment now, without a network call.

        Raises:
            ConfigError: an environment variable named in the config is not set, or the google_ads_api
                transport has no ``developer_token_env``.
        """
        self.config = config
        self.capabilities = capabilities_for(config)  # type: ignore[misc] - per transport, as FakeDestination does
        self.jobs: list[str] = []
        self._known_jobs: set[str] = set()
        self.name = name or f"google_customer_match {digits(config.customer_id)}"
        what = f"Google Customer Match destination '{self.name}'"
        token = resolve_secret(config.access_token_env, what=what).get_secret_value()
        self._transport: Transport
        if config.transport == "google_ads_api":
            if not config.developer_token_env:
                raise ConfigError(f"{what}: the google_ads_api transport needs developer_token_env (the environment"
                                  " variable holding your Google Ads developer token)")
            developer_token = resolve_secret(config.developer_token_env, what=what).get_secret_value()
            from destinations.google_customer_match.ads_api import AdsApiTransport

            self._transport = AdsApiTransport(config, token, developer_token, name=lambda: self.name)
        else:
            from destinations.google_customer_match.data_manager import DataManagerTransport

            self._transport = DataManagerTransport(config, token, name=lambda: self.name)
        if hasattr(self._transport, "audience_counts"):
            # HasPlatformCounts is checked with isinstance on the instance: it is offered only through a transport
            # that reads a size (both do today), so reconcile and the engine never ask for a figure it cannot have.
            self.audience_counts = self._audience_counts

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the credentials and account access (and the user list when given); ``ConfigError`` says what to fix."""
        self._transport.check(audience)

    def classify(self, response: PlatformResponse) -> SyncError | None:
        """What one answer of the transport's API means (a failed gRPC call arrives as its HTTP equivalent)."""
        return self._transport.classify(response)

    def error_context(self) -> ErrorContext:
        return self._transport.error_context()

    def close(self) -> None:
        self._transport.close()

    # ----- job polling --------------------------------------------------------------------------
    def poll_jobs(self, names: Sequence[str] | None = None) -> dict[str, JobStatus]:
        """Status of submitted jobs (default: ``self.jobs``); never waits for one to finish.

        Returns:
            name -> {"status", "failure_reason", "match_rate_range"}. google_ads_api: status PENDING, RUNNING,
            SUCCESS or FAILED, ``match_rate_range`` like MATCH_RANGE_61_TO_70 (an estimate while RUNNING).
            data_manager: PROCESSING, SUCCESS, PARTIAL_SUCCESS or FAILED, like MATCH_RATE_RANGE_61_TO_70.
            NOT_FOUND for a name the platform does not know. ``final_statuses`` need no further polling.

        Raises:
            ConfigError, TransientError, RateLimited: as for ``add``.
        """
        names = list(self.jobs if names is None else names)
        return self._transport.poll(names) if names else {}

    # ----- size (HasPlatformCounts) -----------------------------------------------------------
    def _audience_counts(self, audience: AudienceRef) -> Mapping[str, int]:
        """The user list's size as Google estimates it; bound as ``audience_counts`` where the transport reads one.

        Returns:
            ``size_for_search`` and ``size_for_display`` (ints: people Google matched), each left out while Google
            has not determined it (``{}`` for a list no upload has landed in yet; over data_manager also for a list
            Google counts nobody in, which that API does not tell apart).

        Raises:
            ConfigError: the user list does not exist in the customer, or the credentials are refused.
            RateLimited, TransientError: as ``classify`` reads the failure.
        """
        return self._transport.audience_counts(audience)  # type: ignore[attr-defined] - only bound when it has one

    # ----- one batch ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        refused: dict[str, RowOutcome] = {}
        groups: dict[str | None, list[Member]] = {}
        for member in members:
            marker = member.identifiers.get(CONSENT_KEY, "unknown")
            if op == "add" and marker == "denied":
                refused[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "consent_denied")
            elif not self._transport.sendable(member):
                refused[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
            else:
                # Removes carry no consent: a member whose consent was withdrawn must still leave the list.
                groups.setdefault(None if op == "remove" else ("granted" if marker == "granted" else "unknown"), []).append(member)
        if not groups:
            return BatchResult(op, tuple(refused.values()), requests=0)
        ordered = [Group(consent, tuple(groups[consent])) for consent in ("granted", "unknown", None) if consent in groups]  # type: ignore[arg-type]
        sent = Sent()
        try:
            self._transport.send(op, audience, ordered, sent, self.job_book)
        finally:  # jobs already running are kept for polling even when a later group fails (a retry reports them again)
            fresh = [job for job in dict.fromkeys(sent.jobs) if job not in self._known_jobs]
            self.jobs.extend(fresh)
            self._known_jobs.update(fresh)
        return BatchResult(op, (*sent.outcomes, *refused.values()), requests=sent.requests, platform_counts=dict(sent.counts))
