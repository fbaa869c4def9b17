"""Customer Match through the Data Manager API (``datamanager.googleapis.com/v1``) over ``requests``.

Per ``add``/``remove``: one ``POST /v1/audienceMembers:ingest`` (or ``:remove``) per data type (contact
info as ``userData``, mobile ids as ``mobileData``: one request may not mix them), at most 10,000
members each. Consent rides on each member (``consent.adUserData``/``adPersonalization``
CONSENT_GRANTED for granted members, absent for unknown), so both consent groups share a request.
The API fails fast: one invalid member fails the whole request and nothing is applied, with a
``google.rpc.BadRequest`` violation at ``audience_members[i]``. Those members are REJECTED with the
violation's reason (e.g. INVALID_SHA256_FORMAT) and the others are sent again, at most three rounds.
``poll`` reads ``GET /v1/requestStatus:retrieve?requestId=`` for each request id.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.adapters import HTTPAdapter

from destinations.base import AudienceRef, Member, Op, RowOutcome, RowStatus
from destinations.google_customer_match._common import (
    DATA_MANAGER_IDENTIFIERS,
    Context,
    Group,
    Sent,
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

__all__ = ["DATA_MANAGER_URL", "IDENTIFIERS", "MAX_MEMBERS_PER_REQUEST", "DataManagerTransport", "classify"]

DATA_MANAGER_URL = "https://datamanager.googleapis.com"
MAX_MEMBERS_PER_REQUEST = 10_000
IDENTIFIERS = DATA_MANAGER_IDENTIFIERS
PER_MINUTE_WAIT_S = 60.0  # the quota window when Google names no wait
MAX_ROUNDS = 3
_GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
_MEMBER_FIELD = re.compile(r"audience_members\[(\d+)\]")
_AUTH_SCOPE = "https://www.googleapis.com/auth/datamanager"
_TERMS_URL = "https://support.google.com/adspolicy/answer/6299717"


class DataManagerTransport:
    """Sends audience members to a Google Ads user list through the Data Manager API."""

    identifiers = IDENTIFIERS

    def __init__(self, config: GoogleCustomerMatchConfig, ctx: Context, token: str) -> None:
        self.ctx = ctx
        self.base = (config.endpoint or DATA_MANAGER_URL).rstrip("/")
        self.timeout = config.request_timeout_s
        self.customer_id = digits(config.customer_id) or ""
        self.login_customer_id = digits(config.login_customer_id)
        self.terms_accepted = config.customer_match_terms_accepted
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        self.session = session

    # ----- Transport ----------------------------------------------------------------------------
    def sendable(self, member: Member) -> bool:
        ids = member.identifiers
        return bool(_contact(ids) or ids.get("madid"))

    def send(self, op: Op, audience: AudienceRef, groups: Sequence[Group]) -> Sent:
        sent = Sent()
        pairs = [(m, g.consent) for g in groups for m in g.members]
        contact = [(m, c) for m, c in pairs if _contact(m.identifiers)]
        mobile = [(m, c) for m, c in pairs if not _contact(m.identifiers)]
        for part in (contact, mobile):
            for start in range(0, len(part), MAX_MEMBERS_PER_REQUEST):
                self._send_request(op, audience, part[start:start + MAX_MEMBERS_PER_REQUEST], sent)
        return sent

    def poll(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {}
        for request_id in names:
            status, body, headers = self._request("GET", "/v1/requestStatus:retrieve", params={"requestId": request_id})
            if status == 404:
                found[request_id] = {"status": "NOT_FOUND", "failure_reason": None, "match_rate_range": None}
                continue
            failure = classify(status, body, headers, self.ctx)
            if failure is not None:
                raise failure
            found[request_id] = _request_status(body)
        return found

    def check(self, audience: AudienceRef | None) -> None:
        if audience is None:  # an unknown request id: 404 means the token works, 401/403 say what is wrong
            status, body, headers = self._request("GET", "/v1/requestStatus:retrieve", params={"requestId": "syncer-check"})
            failure = None if status == 404 else classify(status, body, headers, self.ctx)
            if failure is not None:
                raise failure
            return
        probe = Member("check", {"email": hashlib.sha256(secrets.token_bytes(16)).hexdigest()})
        body = self._body("add", audience, [(probe, "unknown")])
        body["validateOnly"] = True
        status, answer, headers = self._request("POST", "/v1/audienceMembers:ingest", json=body)
        failure = classify(status, answer, headers, self.ctx)
        if failure is not None:
            raise failure

    def close(self) -> None:
        self.session.close()

    # ----- one request --------------------------------------------------------------------------
    def _send_request(self, op: Op, audience: AudienceRef, pending: list[tuple[Member, str | None]], sent: Sent) -> None:
        path = "/v1/audienceMembers:ingest" if op == "add" else "/v1/audienceMembers:remove"
        for _ in range(MAX_ROUNDS):
            status, body, headers = self._request("POST", path, json=self._body(op, audience, pending))
            sent.requests += 1
            failure = classify(status, body, headers, self.ctx)
            if failure is None:
                sent.jobs.append(str(body["requestId"]))
                sent.outcomes.extend(RowOutcome(m.member_key, RowStatus.SENT) for m, _ in pending)
                sent.count("requests_accepted")
                sent.count("members", len(pending))
                return
            rejected = _member_violations(body, len(pending)) if status == 400 else None
            if not rejected:
                raise failure
            sent.outcomes.extend(RowOutcome(pending[i][0].member_key, RowStatus.REJECTED, reason) for i, reason in rejected.items())
            sent.count("rejected_members", len(rejected))
            pending = [p for i, p in enumerate(pending) if i not in rejected]
            if not pending:
                return
        raise PermanentError(f"Google Data Manager kept refusing members of {_where(self.ctx, audience)} after {MAX_ROUNDS}"
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
        if op == "add" and self.terms_accepted:
            body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Mapping[str, str]]:
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise TransientError(f"Cannot reach the Data Manager API at {self.base} ({type(exc).__name__}): check that the"
                                 " endpoint is up and reachable", detail=redact(str(exc))[:300]) from None
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body, response.headers


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


def classify(status: int, body: Any, headers: Mapping[str, str] | None, ctx: Context) -> SyncError | None:
    """Map one Data Manager response to a failure, or None when it succeeded. The only place that reads its
    status codes and error reasons; ``body`` is the parsed JSON, or the text when it was not JSON."""
    error = body.get("error") if isinstance(body, dict) else None
    if 200 <= status < 300:
        if isinstance(body, dict) and ("requestId" in body or "requestStatusPerDestination" in body):
            return None
        return TransientError(f"Data Manager sent an unexpected answer (HTTP {status}) for {_where(ctx)}; retrying",
                              detail=redact(str(body))[:300])
    error = error if isinstance(error, dict) else {}
    reasons = [str(d.get("reason")) for d in _details(body) if d.get("reason")]
    reasons += [str(v.get("reason")) for d in _details(body) for v in d.get("fieldViolations", []) if isinstance(v, dict) and v.get("reason")]
    detail = f"HTTP {status} {error.get('status', '')}; reasons {reasons}; message: {redact(str(error.get('message') or body))[:300]}"
    if status == 429 or error.get("status") == "RESOURCE_EXHAUSTED":
        wait = _retry_after(headers or {}, body)
        return RateLimited(f"Google Data Manager throttled {_where(ctx)}; retry in {wait:.0f} s", retry_after=wait, detail=detail)
    if status == 401:
        return ConfigError(f"Google Data Manager rejected the access token of destination '{ctx.destination}': export a"
                           f" fresh OAuth token with the {_AUTH_SCOPE} scope as {ctx.access_token_env}", detail=detail)
    if status == 403:
        hint = (f"login_customer_id {ctx.login_customer_id} must be a manager of customer {ctx.customer_id}"
                if ctx.login_customer_id else "if access goes through a manager account, set login_customer_id")
        return ConfigError(f"The Google account behind {ctx.access_token_env} may not write to Google Ads customer"
                           f" {ctx.customer_id} (destination '{ctx.destination}'); {hint}", detail=detail)
    if "TERMS_AND_CONDITIONS_NOT_SIGNED" in reasons:
        return ConfigError(f"Google requires the Customer Match terms ({_TERMS_URL}) for customer {ctx.customer_id}: once"
                           f" they are accepted, set customer_match_terms_accepted: true in destination '{ctx.destination}'", detail=detail)
    if any(r in ("INVALID_USER_LIST_ID", "INVALID_DESTINATION", "INVALID_USER_LIST_TYPE") for r in reasons):
        return ConfigError(f"Google Data Manager refused the user list of {_where(ctx)}: check the sync's audience_id is a"
                           " Customer Match list owned by customer_id", detail=detail)
    if status == 404:
        return ConfigError(f"{ctx.endpoint} answered HTTP 404: check 'endpoint' of destination '{ctx.destination}'", detail=detail)
    if status in (408, 500, 502, 503, 504):
        return TransientError(f"Google Data Manager had a temporary failure (HTTP {status}) for {_where(ctx)}; retrying", detail=detail)
    if status == 400:
        return PermanentError(f"Google Data Manager refused the request for {_where(ctx)} ({', '.join(reasons) or 'INVALID_ARGUMENT'});"
                              " nothing was applied: see the detail", detail=detail)
    # Unknown: audience adds and removes are idempotent, so another attempt is harmless.
    return TransientError(f"Google Data Manager answered HTTP {status} for {_where(ctx)}; retrying", detail=detail)


def _details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _retry_after(headers: Mapping[str, str], body: Any) -> float:
    """Seconds to wait: Retry-After, else google.rpc.RetryInfo, else the end of the quota window named."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value:
        try:
            return max(float(value), 1.0)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max((when - _dt.datetime.now(_dt.timezone.utc)).total_seconds(), 1.0)
            except (TypeError, ValueError):
                pass
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


def _where(ctx: Context, audience: AudienceRef | None = None) -> str:
    target = f"user list {audience.audience_id} of customer {ctx.customer_id}" if audience else f"customer {ctx.customer_id}"
    return f"{target} of destination '{ctx.destination}'"
