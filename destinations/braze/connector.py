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

    add     POST {base}/users/track  {"attributes": [{"external_id": "...", "<audience_id>": true, "<trait>"?: value,
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
- Traits (``Member.traits``, a sync's ``traits``) are custom attributes in the same attributes object as
  the membership attribute, on add only: "Custom attribute keys and values have a maximum length of 255
  characters" (braze.com/docs/developer_guide/platform_integration_guides/web/analytics/setting_custom_attributes),
  and "setting a value to null removes it" (/api/objects_filters/user_attributes_object), which is how a
  trait is cleared with ``null_traits: clear``. A trait named like a profile field, the membership attribute,
  with a leading ``$`` or over 255 characters is a ``ConfigError`` before any request.
- The audience_id must be a usable custom attribute name: not a Braze profile field (``email_subscribe``
  would turn membership into consent), not starting with ``$``, at most 255 characters; else
  ``ConfigError`` before any request.

Limits: 75 objects per request in total across attributes, events and purchases (50 on Monthly Active
Users CY 24-25 plans: ``max_objects_per_request``, which is ``max_batch``, so one batch is one request);
3,000 requests per 3 seconds per workspace. We pace
client-side with a token bucket of burst 600 refilled at 800/s: a bucket lets through at most
burst + rate x window requests in any window, 600 + 800 x 3 = 3,000, so even a sliding 3-second window
is never exceeded. ``requests_per_second`` caps the rate lower (burst: one second's worth).

Outcomes: ``{"message": "success"}`` (201) or ``{"message": "queued"}`` (202) accepts the batch. Non-fatal
``{"message": "success", "errors": [{"type", "input_array": "attributes", "index": i}]}`` rejects the
member of object ``i`` with the platform's ``type`` as reason (emails, phones and hashes redacted); an
error naming no usable index leaves rows SENT and is counted in ``platform_counts["unmapped_errors"]``.
Members with none of the three identifiers are REJECTED ``no_supported_identifier`` without a request.
Whole-call failures go through ``classify``, which reads Braze's 2xx bodies first: one without
``success`` or ``queued`` is a ``TransientError`` (setting an attribute is idempotent). Braze's own
meanings: 403 (the key lacks ``users.track``) and 404 (the key is unknown on this cluster) are
``ConfigError`` naming ``api_key_env``; 429 is ``RateLimited`` with the wait from ``Retry-After``, else
``X-RateLimit-Reset``. The rest is the shared table: 401 ``ConfigError`` naming ``api_key_env``, 408 and
5xx ``TransientError``, other 4xx ``PermanentError``.

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
from typing import Any

import requests

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.braze.config import (
    BURST,
    CAPABILITIES,
    IDENTIFIER_KEYS,
    RATE_PER_SECOND,
    WINDOW_LIMIT,
    WINDOW_S,
    BrazeConfig,
    capabilities_for,
)
from destinations.http import build_session, header, read_body, redact, unreachable
from destinations.http import retry_after as _retry_after_header
from destinations.pacing import TokenBucket
from destinations.responses import ErrorContext, PlatformResponse, classify_status, describe
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["BrazeDestination"]

PROFILE_FIELDS = frozenset({
    "external_id", "user_alias", "braze_id", "email", "phone", "_update_existing_only", "push_token_import",
    "first_name", "last_name", "country", "current_location", "date_of_first_session", "date_of_last_session", "dob",
    "email_subscribe", "push_subscribe", "push_tokens", "gender", "home_city", "image_url", "language", "time_zone",
    "marked_email_as_spam_at", "facebook", "twitter", "subscription_groups", "email_open_tracking_disabled",
    "email_click_tracking_disabled",
})
_ACCEPTED = ("success", "queued")


class BrazeDestination(Destination):
    """Marks audience members with a boolean custom attribute on their Braze profiles."""

    kind = "braze"
    capabilities = CAPABILITIES

    def __init__(self, config: BrazeConfig, *, name: str | None = None) -> None:
        """Read the key from the environment now and open a pooled session.

        Raises:
            ConfigError: the environment variable named by ``api_key_env`` is not set.
        """
        self.config = config
        self.name = name or "braze"
        key = resolve_secret(config.api_key_env, what=f"Braze destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or config.instance_url).rstrip("/")
        self.capabilities = capabilities_for(config)
        self._bucket = _bucket(config.requests_per_second)
        self._session = build_session(self._base, pool_maxsize=8, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "User-Agent": "activation-syncer"})

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the key (an empty /users/track) and, given an audience, its attribute name.

        Braze refuses the empty request itself (HTTP 400) once the key got past authentication, so a
        refusal of the request (``PermanentError``) passes; a refused key or permission raises.
        """
        if audience is not None:
            _attribute_name(audience)
        failure = self.classify(self._post({"attributes": []}))
        if failure is not None and not isinstance(failure, PermanentError):
            raise failure

    def close(self) -> None:
        self._session.close()

    def classify(self, response: PlatformResponse) -> SyncError | None:
        """The failure one /users/track answer means, or None when Braze accepted the request.

        The only place that reads Braze's statuses. Braze answers inside 2xx bodies, so those are read
        first; per-object errors inside a success are not failures here (``_row_outcomes`` maps them to
        rows). Where Braze means what the shared table says, the table answers.
        """
        status, body = response.status, response.body
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
        ctx = self.error_context()
        if 200 <= status < 300:
            if message in _ACCEPTED:
                return None
            return TransientError(f"Braze answered HTTP {status} without a success message for destination '{ctx.destination}';"
                                  " retrying", detail=describe(response))
        if status == 429:  # Braze documents no Retry-After; its X-RateLimit-Reset says when the window frees up
            wait = _wait(response.headers)
            when = f"retry in {wait:.0f} s" if wait is not None else "backing off"
            return RateLimited(f"Braze rate-limited destination '{ctx.destination}' (HTTP 429); {when}", retry_after=wait,
                               detail=describe(response))
        if status == 403:
            return ConfigError(f"Braze forbade /users/track for destination '{ctx.destination}' (HTTP 403): give the key in"
                               f" {ctx.credential_env} the users.track permission, or check that the workspace is active",
                               detail=describe(response))
        if status == 404:  # Braze's 404 is an unknown REST API key: a key of another cluster's workspace
            return ConfigError(f"Braze answered HTTP 404 for destination '{ctx.destination}': the key in {ctx.credential_env}"
                               f" is unknown on {self._base} (wrong cluster in instance_url or endpoint?)", detail=describe(response))
        return classify_status(response, ctx, code=redact(message)[:120] or None)

    def error_context(self) -> ErrorContext:
        return ErrorContext(platform="Braze", destination=self.name or self.kind, credential_env=self.config.api_key_env,
                            target="the workspace")

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        attribute = _attribute_name(audience)
        if op == "add":
            _check_trait_names(audience, attribute, members)
        group = self.config.subscription_groups.get(audience.audience_id) if op == "add" else None
        outcomes: dict[str, RowOutcome] = {}
        sendable: list[tuple[Member, dict[str, Any]]] = []
        for member in members:
            obj = self._object(op, attribute, member, group)
            if obj is None:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
            else:
                sendable.append((member, obj))
        counts = {"attributes_processed": 0, "unmapped_errors": 0}
        if not sendable:
            return BatchResult(op, tuple(outcomes.values()), requests=0, platform_counts=counts)
        response = self._post({"attributes": [obj for _, obj in sendable]})
        failure = self.classify(response)
        if failure is not None:
            raise failure
        rows, counts["unmapped_errors"] = _row_outcomes([m for m, _ in sendable], response.body)
        outcomes.update(rows)
        processed = response.body.get("attributes_processed") if isinstance(response.body, dict) else None
        counts["attributes_processed"] = processed if isinstance(processed, int) else 0
        return BatchResult(op, tuple(outcomes.values()), requests=1, platform_counts=counts)

    def _object(self, op: Op, attribute: str, member: Member, group: str | None) -> dict[str, Any] | None:
        kind = next((k for k in IDENTIFIER_KEYS if member.identifiers.get(k)), None)
        if kind is None:
            return None
        obj: dict[str, Any] = {kind: member.identifiers[kind], attribute: op == "add"}
        if op == "add":
            obj.update(member.traits)  # custom attributes beside the membership one; a None (clear) is null
        if op == "remove" or self.config.update_existing_only:
            obj["_update_existing_only"] = True
        if group and member.identifiers.get("_consent") == "granted":
            obj["subscription_groups"] = [{"subscription_group_id": group, "subscription_state": "subscribed"}]
        return obj

    def _post(self, payload: Mapping[str, Any]) -> PlatformResponse:
        self._bucket.acquire()
        try:
            response = self._session.post(f"{self._base}/users/track", json=payload, timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            raise unreachable("Braze", self._base, exc, destination=self.name) from None
        return PlatformResponse(response.status_code, read_body(response, empty="", max_text=1000), response.headers)


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


def _check_trait_names(audience: AudienceRef, attribute: str, members: Sequence[Member]) -> None:
    """Traits are custom attributes: never a profile field, an identifier or the membership attribute itself."""
    for name in sorted({name for member in members for name in member.traits}):
        if name in PROFILE_FIELDS or name == attribute or name.startswith("$") or len(name) > 255:
            raise ConfigError(f"trait '{name}' of sync '{audience.sync}' cannot be a Braze custom attribute: not a profile"
                              " field (email, first_name...), not the membership attribute, no leading $, at most 255"
                              " characters; rename it under 'traits'")


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


def _wait(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset`` (epoch s)."""
    wait = _retry_after_header(headers, now=now)
    if wait is not None:
        return wait
    reset = header(headers, "x-ratelimit-reset")
    try:
        return max(float(reset) - now(), 0.0) if reset is not None else None
    except ValueError:
        return None
