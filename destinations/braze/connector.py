"""Braze: keep an audience as a boolean custom attribute on each member's profile, through ``/users/track``.

Membership never touches consent
    The sync's ``audience_id`` is the attribute's name. An add sets ``"<audience_id>": true``; a remove sets
    it to ``false``. False rather than null: a remove stays an explicit, idempotent fact ("left this
    audience") with the attribute's type kept stable for segment filters, and a profile that never
    joined has no attribute at all. A request never carries ``email_subscribe``, and a remove never
    carries ``subscription_groups``: leaving a segment is not an unsubscribe. Removes also set
    ``_update_existing_only: true`` so that removing someone never creates a profile.

    The one consent write is opt-in: when ``subscription_groups`` in the config maps the sync's
    audience_id to a group, an add of a member whose consent is granted (``Member.identifiers["_consent"]
    == "granted"``, set by the engine from the segment's consent column for the sync's channel, because
    ``capabilities.consent_marker`` is on) also subscribes that member to the group, inside the same
    attributes object. Members with unknown consent are added without it. Nothing ever unsubscribes: a
    member whose consent is revoked in the warehouse leaves the audience (attribute false) and keeps their
    Braze subscription state; carrying revocations into Braze is a consent sync's job, not membership's.
    The warehouse column must be the source of truth for that consent: a person who unsubscribed in Braze
    and still reads "granted" in the warehouse is subscribed again on their next add (a consent change
    re-sends the add).

API flow (plain ``requests`` session, pooled)::

    add     POST {base}/users/track  {"attributes": [{"external_id": "...", "<audience_id>": true,
                                        "subscription_groups"?: [{"subscription_group_id", "subscription_state": "subscribed"}]}]}
    remove  POST {base}/users/track  {"attributes": [{"external_id": "...", "<audience_id>": false,
                                        "_update_existing_only": true}]}
    check   POST {base}/users/track  {"attributes": []}: a 2xx or 400 proves the key was accepted

    Authorization: Bearer <REST API key with users.track>; base = ``endpoint`` or ``instance_url``.

- One identifier per object, in this order: ``external_id``, ``email``, ``phone`` (plain rule set: email
  trimmed and lowercased, phone E.164). Braze treats any other identifier field in the object as a
  profile update (with email and phone both present, email identifies and phone is overwritten), so we
  never send two. An email or phone resolves to the most recently updated profile holding it, preferring
  profiles with an external_id; when none exists Braze creates an email-only (phone-only) profile, and an
  unknown external_id creates a profile too, unless ``update_existing_only`` is set.
- The audience_id must be a usable custom attribute name: not a Braze profile field (``email_subscribe``
  would turn membership into consent), not starting with ``$``, at most 255 characters; else
  ``ConfigError`` before any request.

Limits: 75 objects per request in total across attributes, events and purchases (50 on Monthly Active
Users CY 24-25 plans: ``max_objects_per_request``); 3,000 requests per 3 seconds per workspace. We pace
client-side with a token bucket of burst 600 refilled at 800/s: a bucket lets through at most
burst + rate x window requests in any window, 600 + 800 x 3 = 3,000, so even a sliding 3-second window
is never exceeded. ``requests_per_second`` caps the rate lower (burst: one second's worth).

Outcomes: ``{"message": "success"}`` (201) or ``{"message": "queued"}`` (202) accepts the batch. Non-fatal
``{"message": "success", "errors": [{"type", "input_array": "attributes", "index": i}]}`` rejects the
member of object ``i`` with the platform's ``type`` as reason (emails, phones and hashes redacted); an
error naming no usable index leaves rows SENT and is counted in ``platform_counts["unmapped_errors"]``.
Members with none of the three identifiers are REJECTED ``no_supported_identifier`` without a request.
Whole-call failures go through ``classify``: 401/403/404 ``ConfigError`` naming ``api_key_env``, 429
``RateLimited`` (wait from ``Retry-After``, else ``X-RateLimit-Reset``), 5xx and unexpected 2xx bodies
``TransientError`` (setting an attribute is idempotent), other 4xx ``PermanentError``.

Sources: braze.com/docs/api/endpoints/user_data/post_user_track (identifiers incl. email and phone,
"email used when both", most recently updated profile, 75 per array and 50 combined on CY 24-25 plans,
subscription groups in the attributes object, response shapes); /api/objects_filters/user_attributes_object
(``_update_existing_only``, null removes an attribute, ``email_subscribe`` states); /api/api_limits
(3,000 requests per 3 s, X-RateLimit-* headers, reset in epoch seconds); /api/errors (401 unknown key, 403
plan or permissions, 404 unknown key, 429, 5XX retry, 400 "Max Input Length Exceeded"). Localized
api_limits pages give 75 objects in total; we design for that. The per-error ``{"type", "input_array",
"index"}`` shape is from a public Go client's recorded response (dietdoctor/go-braze), not from Braze's
pages. Assumed [U]: the 201 status; that ``_update_existing_only`` (documented for external_id) also holds
for email- and phone-identified objects, and that such an object for a missing profile is silently
skipped; that check's empty request is answered 400 rather than 2xx by a valid key (both pass).

Config example::

    # destinations/braze_main.yml
    type: braze
    api_key_env: BRAZE_API_KEY
    instance_url: https://rest.iad-01.braze.com
    subscription_groups: {vip_newsletter: "3b6d1c0e-..."}   # optional; subscribe-on-add only
    endpoint: http://127.0.0.1:8510/braze                    # optional: the local sandbox
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import requests

from destinations.base import (
    AudienceRef,
    BatchResult,
    Capabilities,
    Destination,
    Member,
    Op,
    RowOutcome,
    RowStatus,
)
from destinations.braze.config import BrazeConfig
from destinations.http import build_session, header, read_body, redact, unreachable
from destinations.http import retry_after as _retry_after_header
from destinations.pacing import TokenBucket
from syncer.environment import resolve_secret
from syncer.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    SyncError,
    TransientError,
)

__all__ = ["BURST", "WINDOW_LIMIT", "WINDOW_S", "BrazeContext", "BrazeDestination", "MAX_OBJECTS", "RATE_PER_SECOND", "classify", "redact", "retry_after"]

MAX_OBJECTS = 75
WINDOW_LIMIT, WINDOW_S = 3000, 3.0  # Braze: 3,000 /users/track requests per 3 seconds per workspace
BURST, RATE_PER_SECOND = 600.0, 800.0  # BURST + RATE_PER_SECOND * WINDOW_S == WINDOW_LIMIT
IDENTIFIER_KEYS = ("external_id", "email", "phone")
PROFILE_FIELDS = frozenset({
    "external_id", "user_alias", "braze_id", "email", "phone", "_update_existing_only", "push_token_import",
    "first_name", "last_name", "country", "current_location", "date_of_first_session", "date_of_last_session", "dob",
    "email_subscribe", "push_subscribe", "push_tokens", "gender", "home_city", "image_url", "language", "time_zone",
    "marked_email_as_spam_at", "facebook", "twitter", "subscription_groups", "email_open_tracking_disabled",
    "email_click_tracking_disabled",
})


@dataclass(frozen=True)
class BrazeContext:
    """What ``classify`` needs to tell the operator what to fix."""

    destination: str = "braze"
    key_env: str = "BRAZE_API_KEY"
    endpoint: str = "https://rest.iad-01.braze.com"


def classify(status: int, body: Any, headers: Mapping[str, str] | None = None, ctx: BrazeContext | None = None) -> SyncError | None:
    """Map one /users/track response to a whole-call failure, or None when Braze accepted the request.

    The only place that reads Braze status codes. Per-object errors inside a success are not failures
    here; ``BrazeDestination`` maps them to rows.
    """
    ctx = ctx or BrazeContext()
    message = str(body.get("message")) if isinstance(body, dict) else ""
    detail = f"HTTP {status}; body: {redact(str(body))[:300]}"
    name, env = ctx.destination, ctx.key_env
    if 200 <= status < 300:
        if message in ("success", "queued"):
            return None
        return TransientError(f"Braze answered HTTP {status} without a success message for destination '{name}'; retrying", detail=detail)
    if status == 401:
        return ConfigError(f"Braze refused the REST API key of destination '{name}' (HTTP 401: unknown or missing key):"
                           f" create a key with the users.track permission in that workspace and export it as {env}", detail=detail)
    if status == 403:
        return ConfigError(f"Braze forbade /users/track for destination '{name}' (HTTP 403): give the key in {env} the"
                           " users.track permission, or check that the workspace is active", detail=detail)
    if status == 404:
        return ConfigError(f"Braze answered HTTP 404 for destination '{name}': the key in {env} is unknown on {ctx.endpoint}"
                           " (wrong cluster in instance_url or endpoint?)", detail=detail)
    if status == 429:
        wait = retry_after(headers)
        return RateLimited(f"Braze rate-limited destination '{name}' (HTTP 429); " + (f"retry in {wait:.0f} s" if wait is not None else "backing off"),
                           retry_after=wait, detail=detail)
    if status >= 500:
        return TransientError(f"Braze had a server error (HTTP {status}) for destination '{name}'; retrying", detail=detail)
    if status == 413:
        return PermanentError(f"Braze refused a request as too large (HTTP 413) for destination '{name}'; send fewer objects", detail=detail)
    return PermanentError(f"Braze refused the whole request (HTTP {status}: {redact(message)[:120] or 'no message'}) for"
                          f" destination '{name}'; nothing was applied", detail=detail)


class BrazeDestination(Destination):
    """Marks audience members with a boolean custom attribute on their Braze profiles."""

    kind = "braze"
    capabilities = Capabilities(platform="plain", identifiers=frozenset(IDENTIFIER_KEYS), max_batch=MAX_OBJECTS,
                                requests_per_second=RATE_PER_SECOND, channel="email", consent_marker=True)

    def __init__(self, config: BrazeConfig, *, name: str | None = None) -> None:
        """Read the key from the environment now and open a pooled session.

        Raises:
            ConfigError: the environment variable named by ``api_key_env`` is not set.
        """
        self.config = config
        self.name = name or "braze"
        key = resolve_secret(config.api_key_env, what=f"Braze destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or config.instance_url).rstrip("/")
        self.capabilities = replace(type(self).capabilities, max_batch=config.max_objects_per_request)
        self._bucket = _bucket(config.requests_per_second)
        self._session = build_session(self._base, pool_maxsize=8, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "User-Agent": "activation-syncer"})

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the key (an empty /users/track) and, given an audience, its attribute name."""
        if audience is not None:
            _attribute_name(audience)
        status, body, headers = self._post({"attributes": []})
        if status == 400:
            return  # the key got past authentication; Braze only refused the empty request
        failure = classify(status, body, headers, self._ctx())
        if failure is not None:
            raise failure

    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._send("add", audience, members)

    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._send("remove", audience, members)

    def close(self) -> None:
        self._session.close()

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if not members:
            return BatchResult(op, (), requests=0)
        attribute = _attribute_name(audience)
        group = self.config.subscription_groups.get(audience.audience_id) if op == "add" else None
        outcomes: dict[str, RowOutcome] = {}
        sendable: list[tuple[Member, dict[str, Any]]] = []
        for member in members:
            obj = self._object(op, attribute, member, group)
            if obj is None:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
            else:
                sendable.append((member, obj))
        size = self.capabilities.max_batch
        counts = {"attributes_processed": 0, "unmapped_errors": 0}
        chunks = [sendable[i:i + size] for i in range(0, len(sendable), size)]
        for chunk in chunks:
            status, body, headers = self._post({"attributes": [obj for _, obj in chunk]})
            failure = classify(status, body, headers, self._ctx())
            if failure is not None:
                raise failure
            rows, unmapped = _row_outcomes([m for m, _ in chunk], body)
            outcomes.update(rows)
            counts["unmapped_errors"] += unmapped
            processed = body.get("attributes_processed") if isinstance(body, dict) else None
            counts["attributes_processed"] += processed if isinstance(processed, int) else 0
        return BatchResult(op, tuple(outcomes[m.member_key] for m in members), requests=len(chunks), platform_counts=counts)

    def _object(self, op: Op, attribute: str, member: Member, group: str | None) -> dict[str, Any] | None:
        kind = next((k for k in IDENTIFIER_KEYS if member.identifiers.get(k)), None)
        if kind is None:
            return None
        obj: dict[str, Any] = {kind: member.identifiers[kind], attribute: op == "add"}
        if op == "remove" or self.config.update_existing_only:
            obj["_update_existing_only"] = True
        if group and member.identifiers.get("_consent") == "granted":
            obj["subscription_groups"] = [{"subscription_group_id": group, "subscription_state": "subscribed"}]
        return obj

    def _post(self, payload: Mapping[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        self._bucket.acquire()
        try:
            response = self._session.post(f"{self._base}/users/track", json=payload, timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            raise unreachable("Braze", self._base, exc, destination=self.name) from None
        return response.status_code, read_body(response, empty="", max_text=1000), response.headers

    def _ctx(self) -> BrazeContext:
        return BrazeContext(self.name, self.config.api_key_env, self._base)


def _bucket(cap: float | None) -> TokenBucket:
    """Pacing that never exceeds Braze's window: burst + rate x window <= the window's limit."""
    rate = min(RATE_PER_SECOND, cap or RATE_PER_SECOND)
    burst = BURST if cap is None or cap >= RATE_PER_SECOND else rate
    return TokenBucket(rate, max(1.0, min(burst, WINDOW_LIMIT - rate * WINDOW_S)))


def _attribute_name(audience: AudienceRef) -> str:
    name = audience.audience_id
    if name in PROFILE_FIELDS or name.startswith("$") or not name.strip() or len(name) > 255:
        raise ConfigError(f"audience_id '{name}' of sync '{audience.sync}' cannot be a Braze membership attribute: use a"
                          " custom attribute name (not a profile field such as email_subscribe, no leading $, at most 255"
                          " characters), e.g. in_vip_audience")
    return name


def _row_outcomes(members: Sequence[Member], body: Any) -> tuple[dict[str, RowOutcome], int]:
    """Outcome per member of one request from its non-fatal errors; returns (outcomes, unmapped errors)."""
    rejected: dict[int, str] = {}
    unmapped = 0
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors if isinstance(errors, list) else []:
        index = error.get("index") if isinstance(error, dict) else None
        array = error.get("input_array", "attributes") if isinstance(error, dict) else None
        if isinstance(index, int) and not isinstance(index, bool) and array == "attributes" and 0 <= index < len(members):
            rejected.setdefault(index, "braze: " + redact(str(error.get("type") or "unknown error"))[:160])
        else:
            unmapped += 1
    outcomes = {m.member_key: RowOutcome(m.member_key, RowStatus.REJECTED, rejected[i]) if i in rejected
                else RowOutcome(m.member_key, RowStatus.SENT) for i, m in enumerate(members)}
    return outcomes, unmapped


def retry_after(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset`` (epoch s)."""
    wait = _retry_after_header(headers, now=now)
    if wait is not None:
        return wait
    reset = header(headers, "x-ratelimit-reset")
    try:
        return max(float(reset) - now(), 0.0) if reset is not None else None
    except ValueError:
        return None
