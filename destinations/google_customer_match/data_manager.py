"""Customer Match through the Data Manager API (``datamanager.googleapis.com/v1``) over ``requests``.

Per ``add``/``remove``: one ``POST /v1/audienceMembers:ingest`` (or ``:remove``) per data type (contact
info as ``userData``, mobile ids as ``mobileData``: one request may not mix them), at most 10,000
members each. Consent rides on each member (``consent.adUserData``/``adPersonalization``
CONSENT_GRANTED for granted members, absent for unknown), so both consent groups share a request.
The API fails fast: one invalid member fails the whole request and nothing is applied, with a
``google.rpc.BadRequest`` violation at ``audience_members[i]``. Those members are REJECTED with the
violation's reason (e.g. INVALID_SHA256_FORMAT, INVALID_USER_LIST_TYPE for a member of another upload key
type than the list's) and the others are sent again, at most three rounds.
``poll`` reads ``GET /v1/requestStatus:retrieve?requestId=`` for each request id.

``audience_counts`` reads a list's size with one
``GET /v1/accountTypes/GOOGLE_ADS/accounts/{customer_id}/userLists/{user_list_id}`` (``userLists.get``, scope
``datamanager``; the manager account, when set, rides in the ``login-account`` header as
``accountTypes/GOOGLE_ADS/accounts/{id}``, as a GET has no body for ``loginAccount``). Of the ``UserList`` it
reads ``sizeInfo.searchNetworkMembersCount`` and ``displayNetworkMembersCount``: "Estimated number of members
in this user list" in the google.com domain and on the Display Network, ``int64`` in the proto, so JSON
strings. Google's Customer Match upgrade guide maps the Google Ads API's ``size_for_search`` /
``size_for_display`` to exactly these and has no size range (``size_range_for_*``: "No equivalent"), so the
keys returned are the Ads API's and reconcile reads them the same way. The counts have no presence (plain
``int64``, unlike the Ads API's nullable sizes): a size Google has not determined and a size of 0 both come as
an absent field (proto3 JSON leaves zero out), and both are left out here, so a list Google counts nobody in
reads as "no size yet", never as empty. Google answers NOT_FOUND (404) for a list the account does not hold
and PERMISSION_DENIED (403) for an account the credentials may not reach ("The user does not have permission
or the resource is not found", ``ErrorReason``). Reads count against the ManagementRead quotas
(``ManagementReadRequestsPerMinutePerProject``: 300 a minute). Sources: developers.google.com/data-manager/api/
reference/rest/v1/accountTypes.accounts.userLists/get and ``.../accountTypes.accounts.userLists`` (UserList,
SizeInfo), googleapis ``google/ads/datamanager/v1/user_list.proto``, ``devguides/audiences/google-ads/
customer-match/upgrade/field-mappings``, ``reference/rest/v1/ErrorReason``, ``devguides/limits``.

Retries: an ingest or remove request carries no id of ours (its body is destinations, audienceMembers,
consent, validateOnly, encoding, encryptionInfo, termsOfService; the response's ``requestId`` is "The
auto-generated ID of the request", reference ``audienceMembers/ingest``), so Google cannot tell a repeat from
a new request and offers nothing to look one up by. What a retry can avoid, it does: each accepted request
is recorded in the engine's job book (its request id and rejected members), and the retry of a batch whose
other request failed does not send the accepted one again. A request whose answer was lost is sent again:
adding or removing the same members twice leaves the list as once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from destinations.base import AudienceRef, JobBook, Member, Op, RowOutcome, RowStatus
from destinations.google_customer_match._common import Group, Sent, digits, has_address, redact, step_key
from destinations.google_customer_match.config import DATA_MANAGER_IDENTIFIERS, GoogleCustomerMatchConfig
from destinations.http import build_session, read_body, retry_after, unreachable
from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["DATA_MANAGER_URL", "IDENTIFIERS", "MAX_MEMBERS_PER_REQUEST", "PER_MINUTE_WAIT_S", "SIZE_FIELDS",
           "DataManagerTransport"]

DATA_MANAGER_URL = "https://datamanager.googleapis.com"
MAX_MEMBERS_PER_REQUEST = 10_000
IDENTIFIERS = DATA_MANAGER_IDENTIFIERS
PER_MINUTE_WAIT_S = 60.0  # the quota window when Google names no wait
MAX_ROUNDS = 3
_GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
_MEMBER_FIELD = re.compile(r"audience_members\[(\d+)\]")
_AUTH_SCOPE = "https://www.googleapis.com/auth/datamanager"
_TERMS_URL = "https://support.google.com/adspolicy/answer/6299717"
_USER_LIST_REASONS = frozenset({"INVALID_USER_LIST_ID", "INVALID_DESTINATION", "INVALID_USER_LIST_TYPE"})
SIZE_FIELDS = {"size_for_search": "searchNetworkMembersCount", "size_for_display": "displayNetworkMembersCount"}
"""``audience_counts`` key (the names ``syncer.delivery.reconcile_size`` reads a Google size by) -> ``SizeInfo`` field."""


class DataManagerTransport:
    """Sends audience members to a Google Ads user list through the Data Manager API.

    Args:
        config: the destination's config.
        token: the OAuth access token (read from ``config.access_token_env``).
        name: the destination's current name, for messages (the engine names it after construction).
    """

    identifiers = IDENTIFIERS
    platform = "Google Data Manager"

    def __init__(self, config: GoogleCustomerMatchConfig, token: str, *, name: Callable[[], str]) -> None:
        self.config = config
        self.name = name
        self.base = (config.endpoint or DATA_MANAGER_URL).rstrip("/")
        self.customer_id = digits(config.customer_id) or ""
        self.login_customer_id = digits(config.login_customer_id)
        self.session = build_session(self.base, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                     pool_maxsize=4)

    # ----- Transport ----------------------------------------------------------------------------
    def sendable(self, member: Member) -> bool:
        ids = member.identifiers
        return bool(_contact(ids) or ids.get("madid"))

    def send(self, op: Op, audience: AudienceRef, groups: Sequence[Group], sent: Sent, book: JobBook | None) -> None:
        pairs = [(m, g.consent) for g in groups for m in g.members]
        parts = {"contact": [(m, c) for m, c in pairs if _contact(m.identifiers)],
                 "mobile": [(m, c) for m, c in pairs if not _contact(m.identifiers)]}
        where = f"{self.customer_id}/{_user_list_id(audience)}"
        for name, part in parts.items():
            for start in range(0, len(part), MAX_MEMBERS_PER_REQUEST):
                chunk = part[start:start + MAX_MEMBERS_PER_REQUEST]
                step = step_key(where, op, f"data_manager:{name}", [m for m, _ in chunk])
                found = book.get(audience.sync, step) if book is not None else None
                if found and found.get("stage") == "sent":  # accepted by an earlier attempt: not sent again
                    detail = found.get("detail")
                    rejected = dict((detail if isinstance(detail, dict) else {}).get("rejected") or {})
                    request_id = found.get("job")
                else:
                    request_id, rejected = self._send_request(op, audience, chunk, sent)
                    if book is not None:
                        book.put(audience.sync, step, job=request_id, stage="sent", detail={"rejected": rejected})
                _report(chunk, request_id if isinstance(request_id, str) else None, rejected, sent)

    def poll(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {}
        for request_id in names:
            response = self._request("GET", "/v1/requestStatus:retrieve", params={"requestId": request_id})
            if response.status == 404:  # Google's answer for a request id it does not know
                found[request_id] = {"status": "NOT_FOUND", "failure_reason": None, "match_rate_range": None}
                continue
            self._raise_for(response)
            found[request_id] = _request_status(response.body)
        return found

    def check(self, audience: AudienceRef | None) -> None:
        if audience is None:  # an unknown request id: 404 means the token works, 401/403 say what is wrong
            response = self._request("GET", "/v1/requestStatus:retrieve", params={"requestId": "syncer-check"})
            if response.status != 404:
                self._raise_for(response)
            return
        probe = Member("check", {"email": hashlib.sha256(secrets.token_bytes(16)).hexdigest()})
        body = self._body("add", audience, [(probe, "unknown")])
        body["validateOnly"] = True
        self._raise_for(self._request("POST", "/v1/audienceMembers:ingest", json=body))

    def audience_counts(self, audience: AudienceRef) -> dict[str, int]:
        """The list's size as Google estimates it, from one ``userLists.get``.

        Returns:
            ``size_for_search`` and ``size_for_display`` (people matched, as ints), each only when Google reports
            one above zero: ``{}`` while it has not determined them (hours after an upload) and for a list it
            counts nobody in, which the API does not tell apart.

        Raises:
            ConfigError: the list does not exist in the customer, the login may not reach it, credentials.
            RateLimited, TransientError: as ``classify`` reads the failure.
        """
        path = f"/v1/accountTypes/GOOGLE_ADS/accounts/{self.customer_id}/userLists/{_user_list_id(audience)}"
        response = self._request("GET", path, headers=self._login_header())
        self._raise_for(response, audience)
        size_info = response.body.get("sizeInfo") if isinstance(response.body, dict) else None
        return _sizes(size_info if isinstance(size_info, dict) else {})

    def close(self) -> None:
        self.session.close()

    # ----- what an answer means ---------------------------------------------------------------------
    def classify(self, response: PlatformResponse, audience: AudienceRef | None = None) -> SyncError | None:
        """The failure one Data Manager answer means, or None when it was accepted: the only reader of its
        statuses and error reasons (``response.body`` is the parsed JSON, or the text when it was not JSON).
        Where the Data Manager means what the shared table says (400, 408, 5xx) it answers from that table.
        ``audience`` is the user list a read asked for: its NOT_FOUND and PERMISSION_DENIED name it."""
        status, body = response.status, response.body
        if 200 <= status < 300:
            if isinstance(body, dict) and ("requestId" in body or "requestStatusPerDestination" in body
                                           or str(body.get("name", "")).startswith("accountTypes/")):
                return None
            return TransientError(f"Google Data Manager sent an unexpected answer (HTTP {status}) for {self._where()}; retrying",
                                  detail=redact(str(body))[:300])
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        reasons = _reasons(body)
        detail = f"HTTP {status} {error.get('status', '')}; reasons {reasons}; message: {redact(str(error.get('message') or body))[:300]}"
        if status == 429 or error.get("status") == "RESOURCE_EXHAUSTED":
            wait = _wait(response.headers, body)
            return RateLimited(f"Google Data Manager throttled {self._where()}; retry in {wait:.0f} s", retry_after=wait, detail=detail)
        if status in (401, 403):
            return self._refused(status, detail, audience)
        if "TERMS_AND_CONDITIONS_NOT_SIGNED" in reasons:
            return ConfigError(f"Google requires the Customer Match terms ({_TERMS_URL}) for customer {self.customer_id}: once"
                               f" they are accepted, set customer_match_terms_accepted: true in destination '{self.name()}'", detail=detail)
        if _USER_LIST_REASONS.intersection(_reasons(body, members=False)):  # a member's list type is that member's
            return ConfigError(f"Google Data Manager refused the user list of {self._where()}: check the sync's audience_id is a"
                               " Customer Match list owned by customer_id", detail=detail)
        if status == 404 and audience is not None and error.get("status") == "NOT_FOUND":
            # a read of one user list: Google's own NOT_FOUND (a wrong endpoint answers no google.rpc.Status)
            return ConfigError(f"Google Data Manager has no {self._where(audience)}: check the sync's audience_id is a"
                               " Customer Match list owned by customer_id", detail=detail)
        if status == 404:  # ingest names a missing list in a 400 with a reason (above): a 404 is a wrong endpoint
            return ConfigError(f"{self.base} answered HTTP 404: check 'endpoint' of destination '{self.name()}'", detail=detail)
        if status in (400, 408) or status >= 500:
            return classify_status(response, self.error_context(), code=", ".join(dict.fromkeys(reasons)) or None)
        # Unknown: audience adds and removes are idempotent, so another attempt is harmless.
        return TransientError(f"Google Data Manager answered HTTP {status} for {self._where()}; retrying", detail=detail)

    def error_context(self) -> ErrorContext:
        return ErrorContext(platform=self.platform, destination=self.name(), credential_env=self.config.access_token_env,
                            target=f"customer {self.customer_id}")

    def _refused(self, status: int, detail: str, audience: AudienceRef | None = None) -> ConfigError:
        """401: the token is refused; 403: the token's account may not reach the customer (or, for a read of one
        list, Google does not find it: PERMISSION_DENIED means either)."""
        env, name = self.config.access_token_env, self.name()
        if status == 401:
            return ConfigError(f"Google Data Manager rejected the access token of destination '{name}': export a"
                               f" fresh OAuth token with the {_AUTH_SCOPE} scope as {env}", detail=detail)
        hint = (f"login_customer_id {self.login_customer_id} must be a manager of customer {self.customer_id}"
                if self.login_customer_id else "if access goes through a manager account, set login_customer_id")
        if audience is not None:
            return ConfigError(f"The Google account behind {env} may not read user list {audience.audience_id} of Google"
                               f" Ads customer {self.customer_id} (destination '{name}'): check the sync's audience_id"
                               f" and customer_id; {hint}", detail=detail)
        return ConfigError(f"The Google account behind {env} may not write to Google Ads customer {self.customer_id}"
                           f" (destination '{name}'); {hint}", detail=detail)

    def _where(self, audience: AudienceRef | None = None) -> str:
        target = f"user list {audience.audience_id} of customer {self.customer_id}" if audience else f"customer {self.customer_id}"
        return f"{target} of destination '{self.name()}'"

    # ----- one request --------------------------------------------------------------------------
    def _send_request(self, op: Op, audience: AudienceRef, pending: list[tuple[Member, str | None]],
                      sent: Sent) -> tuple[str | None, dict[str, str]]:
        """(request id, or None when every member was refused; member_key -> reason of the refused ones)."""
        path = "/v1/audienceMembers:ingest" if op == "add" else "/v1/audienceMembers:remove"
        refused: dict[str, str] = {}
        for _ in range(MAX_ROUNDS):
            response = self._request("POST", path, json=self._body(op, audience, pending))
            sent.requests += 1
            failure = self.classify(response)
            if failure is None:
                return str(response.body["requestId"]), refused
            # Fast fail: when every violation of a refused request names a member, only those members are refused.
            rejected = _member_violations(response.body, len(pending)) if isinstance(failure, PermanentError) else None
            if not rejected:
                raise failure
            refused.update({pending[i][0].member_key: reason for i, reason in rejected.items()})
            pending = [p for i, p in enumerate(pending) if i not in rejected]
            if not pending:
                return None, refused
        raise PermanentError(f"Google Data Manager kept refusing members of {self._where(audience)} after {MAX_ROUNDS}"
                             " rounds; nothing more was sent")

    def _body(self, op: Op, audience: AudienceRef, members: Sequence[tuple[Member, str | None]]) -> dict[str, Any]:
        destination: dict[str, Any] = {"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": self.customer_id},
                                       "productDestinationId": _user_list_id(audience)}
        if self.login_customer_id and self.login_customer_id != self.customer_id:
            destination["loginAccount"] = {"accountType": "GOOGLE_ADS", "accountId": self.login_customer_id}
        audience_members = [_audience_member(m.identifiers, consent if op == "add" else None) for m, consent in members]
        body: dict[str, Any] = {"destinations": [destination], "audienceMembers": audience_members}
        if any("userData" in m for m in audience_members):
            body["encoding"] = "HEX"
        if op == "add" and self.config.customer_match_terms_accepted:
            body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> PlatformResponse:
        try:
            response = self.session.request(method, self.base + path, timeout=self.config.request_timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise unreachable(self.platform, self.base, exc, destination=self.name(), redactor=redact) from None
        return PlatformResponse(response.status_code, read_body(response), response.headers)

    def _raise_for(self, response: PlatformResponse, audience: AudienceRef | None = None) -> None:
        failure = self.classify(response, audience)
        if failure is not None:
            raise failure

    def _login_header(self) -> dict[str, str]:
        """The manager account a read goes through (what ``loginAccount`` says in an ingest body)."""
        if self.login_customer_id and self.login_customer_id != self.customer_id:
            return {"login-account": f"accountTypes/GOOGLE_ADS/accounts/{self.login_customer_id}"}
        return {}


def _report(chunk: Sequence[tuple[Member, str | None]], request_id: str | None, rejected: Mapping[str, str], sent: Sent) -> None:
    """One outcome per member of a request: refused by the fast fail (with Google's reason) or sent."""
    for member, _ in chunk:
        reason = rejected.get(member.member_key)
        sent.outcomes.append(RowOutcome(member.member_key, RowStatus.REJECTED, str(reason)) if reason
                             else RowOutcome(member.member_key, RowStatus.SENT))
    if rejected:
        sent.count("rejected_members", len(rejected))
    if request_id is not None:
        sent.jobs.append(request_id)
        sent.count("requests_accepted")
        sent.count("members", len(chunk) - len(rejected))


def _contact(ids: Mapping[str, str]) -> bool:
    return bool(ids.get("email") or ids.get("phone") or has_address(ids))


def _audience_member(ids: Mapping[str, str], consent: str | None) -> dict[str, Any]:
    """One AudienceMember: userData when the member has contact info, else mobileData (a madid)."""
    identifiers: list[dict[str, Any]] = []
    if ids.get("email"):
        identifiers.append({"emailAddress": ids["email"]})
    if ids.get("phone"):
        identifiers.append({"phoneNumber": ids["phone"]})
    if has_address(ids):
        identifiers.append({"address": {"givenName": ids["first_name"], "familyName": ids["last_name"],
                                        "regionCode": ids["country"], "postalCode": ids["postal_code"]}})
    member: dict[str, Any] = {"userData": {"userIdentifiers": identifiers}} if identifiers else {"mobileData": {"mobileIds": [ids["madid"]]}}
    if consent == "granted":
        member["consent"] = dict(_GRANTED)
    return member


def _sizes(size_info: Mapping[str, Any]) -> dict[str, int]:
    """The sizes Google reports: int64 comes as a JSON string (a number is accepted too); 0 or absent is left out."""
    found: dict[str, int] = {}
    for key, field in SIZE_FIELDS.items():
        try:
            value = int(size_info.get(field) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            found[key] = value
    return found


def _user_list_id(audience: AudienceRef) -> str:
    audience_id = audience.audience_id.rsplit("/", 1)[-1]  # also accepts customers/{cid}/userLists/{id}
    if not audience_id.isdigit():
        raise ConfigError(f"audience_id {audience.audience_id!r} of sync '{audience.sync}' is not a Google Ads user list id (digits)")
    return audience_id


def _member_violations(body: Any, count: int) -> dict[int, str] | None:
    """Index -> reason when every field violation names one member (fast fail on member data), else None."""
    violations = [v for d in _details(body) if d.get("@type", "").endswith("google.rpc.BadRequest")
                  for v in d.get("fieldViolations", []) if isinstance(v, dict)]
    found: dict[int, str] = {}
    for violation in violations:
        match = _MEMBER_FIELD.search(str(violation.get("field", "")))
        if not match or int(match.group(1)) >= count:
            return None
        found.setdefault(int(match.group(1)), str(violation.get("reason") or "INVALID_AUDIENCE_MEMBER"))
    return found or None


def _request_status(body: Any) -> dict[str, str | None]:
    per = (body.get("requestStatusPerDestination") or [{}]) if isinstance(body, dict) else [{}]
    first = per[0] if isinstance(per[0], dict) else {}
    counts = (first.get("errorInfo") or {}).get("errorCounts") or [{}]
    ingestion = (first.get("audienceMembersIngestionStatus") or {})
    match = next((v.get("uploadMatchRateRange") for v in ingestion.values() if isinstance(v, dict)), None)
    return {"status": first.get("requestStatus") or "NOT_FOUND", "failure_reason": counts[0].get("reason"),
            "match_rate_range": match if match not in (None, "MATCH_RATE_RANGE_UNKNOWN") else None}


def _reasons(body: Any, *, members: bool = True) -> list[str]:
    """Google's error reasons: of each ErrorInfo detail, then of each field violation (but those naming one
    audience member when not ``members``)."""
    found = [str(d.get("reason")) for d in _details(body) if d.get("reason")]
    return found + [str(v.get("reason")) for d in _details(body) for v in d.get("fieldViolations", [])
                    if isinstance(v, dict) and v.get("reason") and (members or not _MEMBER_FIELD.search(str(v.get("field", ""))))]


def _details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _wait(headers: Mapping[str, str], body: Any) -> float:
    """Seconds to wait: Retry-After, else google.rpc.RetryInfo, else the end of the quota window named."""
    stated = retry_after(headers)
    if stated is not None:
        return max(stated, 1.0)
    for detail in _details(body):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 1.0)
            except ValueError:
                pass
        quota = str((detail.get("metadata") or {}).get("quota_limit", ""))
        if "PerDay" in quota:  # daily quota resets at midnight Pacific time
            now = _dt.datetime.now(_pacific())
            midnight = (now + _dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            return (midnight - now).total_seconds()
    return PER_MINUTE_WAIT_S


def _pacific() -> _dt.tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no tz database on this machine: standard time is close enough
        return _dt.timezone(_dt.timedelta(hours=-8))
