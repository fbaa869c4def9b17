"""Meta Custom Audiences: keep a customer-file audience's members in sync through the Graph API.

API flow (official facebook-business SDK, ``FacebookAdsApi.call`` with params we build, so the SDK never
re-hashes; members arrive normalised and hashed by ``syncer.identity.rows``)::

    add      POST {graph}/{version}/{audience_id}/users           payload={schema, data}, session={...}
    remove   POST {graph}/{version}/{audience_id}/users           same, plus method=DELETE
    replace  POST {graph}/{version}/{audience_id}/usersreplace    one session: batch_seq 1..n, last_batch_flag
    check    GET  {graph}/{version}/act_{account}                 (and GET /{audience_id} given an audience)
    counts   GET  {graph}/{version}/{audience_id}?fields=approximate_count_lower_bound,...upper_bound
    create   POST {graph}/{version}/act_{account}/customaudiences subtype=CUSTOM, customer_file_source

- Removes go as a POST with ``method=DELETE``: the SDK's DELETE puts every row in the URL, which web
  front ends refuse past roughly 900 hashed emails.
- ``payload`` travels as a multipart/form-data field (the SDK's ``files`` argument with no file name), as
  Meta's own ``curl -F 'payload=...'`` examples send it; the other params stay ordinary form fields. We
  serialise it once, as the SDK would (sorted keys, compact). As a urlencoded field, requests
  percent-encodes it byte by byte in Python: ~0.1 s per 10,000 email+phone rows, more than the rest of
  the call.
- Schema: a batch carrying one kind uses the single-key schema (EMAIL_SHA256, PHONE_SHA256,
  MOBILE_ADVERTISER_ID, EXTERN_ID); otherwise the multi-key schema, keys sorted by name, "" where a member
  lacks a kind. ``date_of_birth`` is not offered: Meta wants DOBY/DOBM/DOBD hashed apart, and a hashed
  full date cannot be split.
- Each add/remove is its own session (random 63-bit id, batch_seq 1, last_batch_flag true).
- The SDK treats an HTML 5xx page as success, so every response (and every SDK error, as a
  ``PlatformResponse``) goes through ``classify``.

Limits: 10,000 rows per request (``max_batch``); changes take up to 24 h to show on Meta's side;
throttling is HTTP 400 with code 80003 (or 4, 17, 32, 613, 800xx), its wait in the
``X-Business-Use-Case-Usage`` header, so ``classify`` reads Meta's error code before the shared status
table. This module never retries: it raises and the engine retries.

Outcomes: Meta reports counts only (num_received, num_invalid_entries), never which row failed. Rows are
SENT and the counts go in ``platform_counts``. A row whose value Meta lists in ``invalid_entry_samples``
(up to 100 values) is REJECTED ``meta_invalid_entry``; invalid rows beyond the samples stay SENT because
nothing says which they are.

Config example::

    # destinations/meta_vip.yml
    type: meta_audience
    ad_account_id: "act_1001"
    access_token_env: META_ACCESS_TOKEN
    app_secret_env: META_APP_SECRET      # optional: sends appsecret_proof
    api_version: v26.0
    endpoint: http://127.0.0.1:8510      # optional: the local sandbox (python -m syncer.sandbox.server)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import requests
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.http import HASHES_AND_EMAILS, redact
from destinations.meta.config import CAPABILITIES, KEYS, MetaAudienceConfig
from destinations.responses import ErrorContext, PlatformResponse, classify_status, describe
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["DEFAULT_RETRY_AFTER_S", "MetaAudienceDestination"]

SINGLE_KEY = {"email": "EMAIL_SHA256", "phone": "PHONE_SHA256", "madid": "MOBILE_ADVERTISER_ID", "external_id": "EXTERN_ID"}
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2, 341})
DEFAULT_RETRY_AFTER_S: float | None = None  # Meta gave no estimate: the engine backs off exponentially
_KEY_ORDER = tuple(KEYS)
_to_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode  # what the SDK does to a dict param
TERMS_URL = "https://business.facebook.com/ads/manage/customaudiences/tos/?act={account}"


class MetaAudienceDestination(Destination):
    """Adds and removes members of Meta customer-file Custom Audiences."""

    kind = "meta_audience"
    capabilities = CAPABILITIES

    def __init__(self, config: MetaAudienceConfig, *, name: str | None = None) -> None:
        """Build the SDK session; reads the token (and app secret) from the environment now.

        Raises:
            ConfigError: an environment variable named in the config is not set.
        """
        self.config = config
        self._account = "act_" + config.ad_account_id.removeprefix("act_")
        self.name = name or f"meta_audience {self._account}"  # build_destination sets the file stem after construction
        what = f"Meta destination '{self.name}'"
        token = resolve_secret(config.access_token_env, what=what).get_secret_value()
        secret = resolve_secret(config.app_secret_env, what=what).get_secret_value() if config.app_secret_env else None
        session = FacebookSession(access_token=token, app_secret=secret, timeout=config.request_timeout_s)
        if config.endpoint:
            session.GRAPH = config.endpoint.rstrip("/")  # instance attribute: other sessions keep graph.facebook.com
        self._api = FacebookAdsApi(session, api_version=config.api_version)
        self._session = session
        self._graph = f"{session.GRAPH}/{config.api_version}"

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the token and ad account (and the audience when given); raise ``ConfigError`` with what to fix."""
        account = self._call("GET", (self._account,), {"fields": "id,account_status"})
        if account.get("account_status", 1) != 1:
            raise ConfigError(f"Meta ad account {self._account} is not active (status {account['account_status']})")
        if audience is not None:
            found = self._call("GET", (audience.audience_id,), {"fields": "id,account_id"}, audience.audience_id)
            if str(found.get("account_id", "")).removeprefix("act_") not in ("", self._account[4:]):
                raise ConfigError(f"Meta audience {audience.audience_id} belongs to ad account act_{found['account_id']},"
                                  f" not {self._account}: fix ad_account_id of destination '{self.name}'")

    def close(self) -> None:
        self._session.requests.close()

    # ----- optional abilities -------------------------------------------------------------------
    def audience_counts(self, audience: AudienceRef) -> Mapping[str, int]:
        """Meta's approximate audience size bounds."""
        fields = ("approximate_count_lower_bound", "approximate_count_upper_bound")
        body = self._call("GET", (audience.audience_id,), {"fields": ",".join(fields)}, audience.audience_id)
        return {f: int(body[f]) for f in fields if isinstance(body.get(f), int)}

    def create_audience(self, name: str, description: str = "") -> str:
        """Create an empty customer-file audience in the ad account; returns its id."""
        params = {"name": name, "description": description, "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY"}
        body = self._call("POST", (self._account, "customaudiences"), params)
        if not str(body.get("id", "")).isdigit():
            raise TransientError(f"Meta did not return an id for the new audience '{name}'; check the ad account before retrying")
        return str(body["id"])

    def replace(self, audience: AudienceRef, members: Iterable[Member]) -> BatchResult:
        """Replace the whole membership with ``members`` in one usersreplace session.

        Members not sent are dropped by Meta when the last batch arrives. A failure raises mid-way; Meta then
        keeps the old membership and the session times out, so rerun the whole replace.

        Raises:
            PermanentError: ``members`` holds nobody sendable (that would empty the audience).
        """
        skipped: list[RowOutcome] = []
        outcomes: list[RowOutcome] = []
        session_id, seq, received, invalid = _session_id(), 0, 0, 0
        chunks = _chunks(_sendable_only(members, skipped), self.capabilities.max_batch)
        chunk = next(chunks, None)
        if chunk is None:
            raise PermanentError(f"Refusing to replace Meta audience {audience.audience_id} with no members; remove them instead")
        while chunk is not None:
            following = next(chunks, None)
            seq += 1
            payload = _payload(chunk)
            session = {"session_id": session_id, "batch_seq": seq, "last_batch_flag": following is None}
            body = self._call("POST", (audience.audience_id, "usersreplace"), {"session": session}, audience.audience_id,
                              payload=payload)
            received = _count(body, "num_received")
            invalid += _count(body, "num_invalid_entries")
            outcomes += _outcomes(chunk, payload, body)
            chunk = following
        return BatchResult("add", tuple(outcomes + skipped), requests=seq,
                           platform_counts={"num_received": received, "num_invalid_entries": invalid})

    # ----- failures -----------------------------------------------------------------------------
    def error_context(self, audience_id: str | None = None) -> ErrorContext:
        """Meta, the token's variable, and what a call was about: the audience, else the ad account."""
        target = f"audience {audience_id}" if audience_id else f"ad account {self._account}"
        return ErrorContext("Meta", self.name, self.config.access_token_env, target)

    def classify(self, response: PlatformResponse, *, audience_id: str | None = None) -> SyncError | None:
        """The failure one Graph API answer means, or None when it succeeded: the only reader of Meta's
        statuses and error codes.

        Meta answers a failure as ``{"error": {code, error_subcode, ...}}``, mostly on HTTP 400 (throttling
        too), so its code decides. An answer without that envelope came from a front end (``body`` is then
        the raw text, an HTML page): Meta's own cases first, then the shared status table.

        Args:
            audience_id: the audience the call was about, named in messages (else the ad account).
        """
        ctx = self.error_context(audience_id)
        status, body = response.status, response.body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return self._classify_error(status, error, _lower(response.headers), ctx, audience_id)
        detail = describe(response)
        if 200 <= status < 300:
            if isinstance(body, dict) and body.get("success") is not False:
                return None
            return TransientError(f"Meta sent an unexpected response (HTTP {status}, not a Graph API object) for {_what(ctx)};"
                                  " retrying", detail=detail)
        if status == 429:  # Meta states its wait in X-Business-Use-Case-Usage, read before Retry-After
            return RateLimited(f"Meta throttled destination '{ctx.destination}' (HTTP 429)",
                               retry_after=_retry_after(_lower(response.headers)), detail=detail)
        if status in (404, 405):
            return ConfigError(f"{self._graph} answered HTTP {status} with a page that is not the Graph API: check 'endpoint'"
                               f" of destination '{ctx.destination}'", detail=detail)
        if status == 414:
            return PermanentError(f"Meta's front end refused a request URL as too long (HTTP 414) for {_what(ctx)}; send fewer"
                                  " rows per request", detail=detail)
        if status in (401, 403, 408) or status >= 500:
            return classify_status(response, ctx)
        # Unknown: adds and removes are idempotent set operations, so a retry is harmless.
        return TransientError(f"Meta answered HTTP {status} without a Graph API error for {_what(ctx)}; retrying", detail=detail)

    def _classify_error(self, status: int, error: Mapping[str, Any], headers: Mapping[str, str], ctx: ErrorContext,
                        audience_id: str | None) -> SyncError:
        code, sub = _int(error.get("code")), _int(error.get("error_subcode"))
        message = str(error.get("message") or "")
        detail = (f"HTTP {status}; code {code}; subcode {sub}; type {error.get('type')}; is_transient {error.get('is_transient')};"
                  f" fbtrace_id {error.get('fbtrace_id')}; message: {_redact(message)[:300]}")
        name, account = ctx.destination, self._account
        if code == 190:
            return ConfigError(f"Meta access token for destination '{name}' is invalid or expired: generate a new token with"
                               f" ads_management and export it as {ctx.credential_env}", detail=detail)
        if code == 200 and sub == 1870090:
            return ConfigError(f"The Custom Audience terms are not accepted for ad account {account}: accept them at"
                               f" {TERMS_URL.format(account=account.removeprefix('act_'))} and rerun", detail=detail)
        if code in (10, 294) or (code is not None and 200 <= code <= 299):
            return ConfigError(f"Meta token for destination '{name}' lacks permission (code {code}) on ad account {account}:"
                               f" give its user or system user ads_management on that account, then export the new token as"
                               f" {ctx.credential_env}", detail=detail)
        if code == 100 and sub == 33:
            thing = f"audience {audience_id}" if audience_id else "the requested object"
            create = (", or let the syncer create it with `create_audience:` (and no audience_id) in the sync's file"
                      if audience_id else "")
            return ConfigError(f"Meta {thing} does not exist in ad account {account} (or this token cannot see it): check the"
                               f" sync's audience_id and ad_account_id of destination '{name}'{create}", detail=detail)
        if code == 100 and sub == 1713230:
            return ConfigError(f"Meta flagged {_what(ctx)} (operation_status 471): resolve its restrictions in Audience"
                               " Manager or create a new audience", detail=detail)
        if code == 100 and "appsecret_proof" in message:
            return ConfigError(f"Meta refused the appsecret_proof of destination '{name}': export the secret of the token's"
                               f" app as {self.config.app_secret_env or 'the app_secret_env variable'}", detail=detail)
        if code in THROTTLE_CODES:
            wait = _retry_after(headers)
            return RateLimited(f"Meta throttled destination '{name}' (code {code}); " + (f"retry in {wait:.0f} s" if wait else "backing off"),
                               retry_after=wait, detail=detail)
        if code == 2650 and sub == 1870145:
            return TransientError(f"An update or replace is running on {_what(ctx)}; retrying later", detail=detail)
        if code in TRANSIENT_CODES or error.get("is_transient") is True or status >= 500:
            return TransientError(f"Meta had a temporary failure (code {code}) for {_what(ctx)}; retrying",
                                  retry_after=_eta_seconds(headers), detail=detail)
        if code in (100, 105, 368, 2650):
            return PermanentError(f"Meta refused the request for {_what(ctx)} (code {code}, subcode {sub}); nothing was"
                                  " applied: see the detail", detail=detail)
        # Unknown: adds and removes are idempotent set operations, so a retry is harmless.
        return TransientError(f"Meta returned unknown error code {code} for {_what(ctx)}; retrying", detail=detail)

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        skipped: list[RowOutcome] = []
        sendable = list(_sendable_only(members, skipped))
        if not sendable:
            return BatchResult(op, tuple(skipped), requests=0)
        payload = _payload(sendable)
        params: dict[str, Any] = {
            "session": {"session_id": _session_id(), "batch_seq": 1, "last_batch_flag": True, "estimated_num_total": len(sendable)},
        }
        if op == "remove":
            params["method"] = "DELETE"
        body = self._call("POST", (audience.audience_id, "users"), params, audience.audience_id, payload=payload)
        counts = {"num_received": _count(body, "num_received"), "num_invalid_entries": _count(body, "num_invalid_entries")}
        return BatchResult(op, tuple(_outcomes(sendable, payload, body) + skipped), requests=1, platform_counts=counts)

    def _call(self, method: str, path: tuple[str, ...], params: Mapping[str, Any], audience_id: str | None = None,
              *, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One Graph call through the SDK; returns the JSON object or raises the classified failure.

        ``payload`` (POST only) goes as a multipart form field, JSON-encoded once here.
        """
        files = None
        if payload is not None:
            assert method == "POST", "a payload travels in a POST body"
            files = {"payload": (None, _to_json(payload))}  # no file name: a plain form field
        try:
            answer = self._api.call(method, path, params=dict(params), files=files)
        except FacebookRequestError as exc:  # its str() holds the params (hashed PII): never chain it
            response = PlatformResponse(exc.http_status() or 0, exc.body(), exc.http_headers() or {})
            failure = self.classify(response, audience_id=audience_id)
            raise failure or TransientError(f"Meta call failed for {_what(self.error_context(audience_id))}; retrying",
                                            detail=describe(response)) from None
        except requests.RequestException as exc:
            raise TransientError(f"Cannot reach the Meta Graph API at {self._graph} ({type(exc).__name__}):"
                                 " check that the endpoint is up and reachable", detail=_redact(str(exc))[:300]) from None
        response = PlatformResponse(answer.status(), answer.json(), answer.headers())
        failure = self.classify(response, audience_id=audience_id)
        if failure is not None:
            raise failure
        return response.body


def _has_identifier(member: Member) -> bool:
    return any(map(member.identifiers.get, _KEY_ORDER))  # a lookup per kind: no set built per member


def _sendable_only(members: Iterable[Member], skipped: list[RowOutcome]) -> Iterator[Member]:
    """Yield members Meta can match; record the others in ``skipped`` as rejected."""
    for member in members:
        if _has_identifier(member):
            yield member
        else:
            skipped.append(RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier"))


def _payload(members: Sequence[Member]) -> dict[str, Any]:
    """Build {schema, data} for members that each hold at least one supported identifier."""
    kinds = sorted({k for m in members for k, v in m.identifiers.items() if v and k in KEYS}, key=KEYS.__getitem__)
    if len(kinds) == 1 and kinds[0] in SINGLE_KEY:
        kind = kinds[0]
        return {"schema": SINGLE_KEY[kind], "data": [m.identifiers[kind] for m in members]}
    data = [[m.identifiers.get(k) or "" for k in kinds] for m in members]
    return {"schema": [KEYS[k] for k in kinds], "data": data}


def _outcomes(members: Sequence[Member], payload: Mapping[str, Any], body: Mapping[str, Any]) -> list[RowOutcome]:
    # Meta gives no row index; only values it lists as invalid samples can be tied back to rows.
    samples = body.get("invalid_entry_samples") or {}
    bad = {str(s) for s in samples} if isinstance(samples, (dict, list)) else set()
    if not bad:
        return [RowOutcome(member.member_key, RowStatus.SENT) for member in members]
    rows = payload["data"]
    result = []
    for member, row in zip(members, rows):
        values = (row,) if isinstance(row, str) else row
        rejected = any(v and v in bad for v in values)
        result.append(RowOutcome(member.member_key, RowStatus.REJECTED, "meta_invalid_entry") if rejected
                      else RowOutcome(member.member_key, RowStatus.SENT))
    return result


def _chunks(members: Iterable[Member], size: int) -> Iterator[list[Member]]:
    chunk: list[Member] = []
    for member in members:
        chunk.append(member)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _session_id() -> int:
    return secrets.randbits(63) or 1


def _count(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    return value if isinstance(value, int) else 0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _eta_seconds(headers: Mapping[str, str]) -> float | None:
    """Largest estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage, in seconds."""
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
        minutes = max((float(e.get("estimated_time_to_regain_access") or 0) for entries in usage.values() for e in entries), default=0.0)
    except (ValueError, TypeError, AttributeError):
        return None
    return minutes * 60 if minutes > 0 else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    eta = _eta_seconds(headers)
    if eta is not None:
        return eta
    try:
        return max(float(headers["retry-after"]), 1.0)
    except (KeyError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def _what(ctx: ErrorContext) -> str:
    return f"{ctx.target} of destination '{ctx.destination}'"


def _redact(text: str) -> str:
    """Hide hashes and email addresses in text bound for logs (we only ever send hashes)."""
    return redact(text, HASHES_AND_EMAILS)
