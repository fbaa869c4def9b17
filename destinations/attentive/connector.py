"""Attentive (SMS): keep a segment's membership as a custom attribute on each person, never as a subscription.

API flow (REST v1 over our own ``requests`` session; reference: docs.attentive.com/openapi/reference/tag/
Custom-Attributes, operation ``postCustomAttributes``, and tag Test-Authentication, ``getMe``)::

    add     POST {base}/v1/attributes/custom   {"user": {"phone"}, "properties": {<audience_id>: member_value}}
            POST {base}/v1/attributes/custom   {"user": {"email"}, ...the same properties}
    remove  the same two calls with removed_value ("false")
    check   GET  {base}/v1/me

Identity: each identifier goes in a call of its own, never a phone and an email together. Attentive keeps
one shopper profile per person with every phone and email linked to it (help.attentivemobile.com/hc/en-us/
articles/50431006248724-Understanding-Attentive-s-Identity-Platform), identifiers sent together are linked,
and profiles they name apart are bridged into one ("Sending duplicate values could lead to unintentionally
bridging users together": docs.attentivemobile.com/openapi/reference/tag/Identity/). No call unlinks or
replaces an email (the Identity API only adds a clientUserId or custom identifiers; User Properties v2,
docs.attentivemobile.com/openapi/reference-v2/tag/User-Properties, creates or updates a user found by its
identifiers). So sending both would tie a member's email to their phone's profile for good: after an email
change that profile, still in the audience, keeps the old address, and two members sharing a household
email would become one person. Alone, the phone's profile and the email's profile each carry the attribute:
an email change (the engine removes the old identifiers, then adds the new) leaves the old address's
profile at "false" and the new one's at "true". An email Attentive itself linked to the phone's profile (a
sign-up with both) stays linked to it: nothing in the API can take it off.

- The sync's ``audience_id`` is the attribute name (case-sensitive, at most 200 characters). Build the
  Attentive segment on "<audience_id> is true".
- Remove writes ``removed_value``: the API has no call that deletes a custom attribute, so a removed member
  keeps the attribute with the value "false". Setting a value is idempotent, so every failure of a whole
  call is retryable and the engine's re-send of a batch is harmless.
- Never a subscribe or unsubscribe call: ``POST /v1/subscriptions`` texts the person (even "you are already
  subscribed") and needs a legal disclosure. Setting attributes on an unknown phone or email creates a
  person with no subscription (Attentive's "user ... does not need to be actively subscribed").
- One or two requests per member, the phone's then the email's: both carry the same properties, so a
  refused value is refused on the first and the member is rejected with nothing changed (identifiers are
  checked before sending). ``concurrency`` members in flight, every request paced under
  ``requests_per_second`` (Attentive's default limit: 150/s per key). Attentive's bulk endpoint
  (``POST /v2/bulk/user/attributes``, 256 users, asynchronous, beta) carries subscriptions in the same
  payload; we do not use it.
- Phones are strict E.164 (``+`` and 7 to 15 digits); anything else is rejected for that row
  (``invalid_phone``) and never sent, as is an email without "@" (``invalid_email``). Members arrive
  normalised by the ``plain`` rule set.

Errors (``classify``): 400 is a ``PermanentError`` for that request, which carries one member, so it
rejects that row (``attentive_invalid_request``) and the batch goes on; 401 and 403 are ``ConfigError``
naming the key's environment variable (403: the ``attributes:write`` scope); 404 is a wrong ``endpoint``;
429 is ``RateLimited`` with ``Retry-After`` (1 s when absent: the limit is per second); any other 4xx is
``TransientError`` (setting an attribute is idempotent, so a retry is harmless); 408 and 5xx follow the
shared table (``TransientError``), and so do network failures.

Config example::

    # destinations/attentive.yml
    type: attentive
    api_key_env: ATTENTIVE_API_KEY
    member_value: "true"                       # optional; removed_value: "false"
    requests_per_second: 150                   # optional; Attentive's default limit
    endpoint: http://127.0.0.1:8510/attentive  # optional: the local sandbox
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from destinations.attentive.config import CAPABILITIES, DEFAULT_REQUESTS_PER_SECOND, AttentiveConfig
from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, redact, retry_after, unreachable
from destinations.pacing import TokenBucket
from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["API_URL", "AttentiveDestination", "DEFAULT_REQUESTS_PER_SECOND"]

API_URL = "https://api.attentivemobile.com"
MAX_ATTRIBUTE_NAME = 200
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_DEFAULT_RETRY_AFTER_S = 1.0
_REFUSED_ROW = "attentive_invalid_request"


class AttentiveDestination(Destination):
    """Marks segment membership as a custom attribute on Attentive people; never subscribes anyone."""

    kind = "attentive"
    capabilities = CAPABILITIES

    def __init__(self, config: AttentiveConfig, *, name: str | None = None) -> None:
        """Read the API key from the environment now.

        Raises:
            ConfigError: the key's environment variable is not set.
        """
        self.config = config
        self.name = name or "attentive"  # build_destination sets the file stem after construction
        key = resolve_secret(config.api_key_env, what=f"Attentive destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or API_URL).rstrip("/")
        self._session = build_session(self._base, pool_maxsize=config.concurrency,
                                      headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})
        # burst 1: request starts at least 1/rate seconds apart across all worker threads
        self._pacer = TokenBucket(config.requests_per_second or DEFAULT_REQUESTS_PER_SECOND, burst=1)

    # ----- Destination --------------------------------------------------------------------------
    def check(self) -> None:
        """Verify the key with ``GET /v1/me``; raise ``ConfigError`` with what to fix."""
        response = self._request("GET", "/v1/me", None)
        failure = self.classify(response)
        if isinstance(failure, PermanentError):
            raise ConfigError(f"Attentive refused the key check of destination '{self.name}' (HTTP {response.status})",
                              detail=failure.detail)
        if failure is not None:
            raise failure

    def classify(self, response: PlatformResponse) -> SyncError | None:
        """Attentive's answers where they differ from the shared table; the only reader of its status codes.

        A ``PermanentError`` (HTTP 400) refuses one request, which carries one member: that member's row.
        """
        status, ctx = response.status, self.error_context()
        if 200 <= status < 300 or status == 408 or status >= 500:
            return classify_status(response, ctx)
        detail = f"HTTP {status}; body: {_message(response.body)[:300]}"
        name = ctx.destination
        if status == 400:
            return PermanentError(f"Attentive refused a custom attributes call of destination '{name}' (HTTP 400)",
                                  detail=detail)
        if status == 401:
            return ConfigError(f"Attentive refused the API key of destination '{name}' (HTTP 401): create a private app"
                               f" key with the attributes:write scope and export it as {ctx.credential_env}", detail=detail)
        if status == 403:
            return ConfigError(f"The Attentive key of destination '{name}' lacks the attributes:write scope (HTTP 403):"
                               f" grant it to the private app, then export the key as {ctx.credential_env}", detail=detail)
        if status == 404:
            return ConfigError(f"{self._base} answered HTTP 404 for {ctx.target}: check 'endpoint' of destination"
                               f" '{name}'", detail=detail)
        if status == 429:
            wait = _wait(response.headers)
            return RateLimited(f"Attentive throttled destination '{name}' (HTTP 429); retry in {wait:g} s",
                               retry_after=wait, detail=detail)
        # any other refusal: setting an attribute is idempotent, so a retry is harmless
        return TransientError(f"Attentive answered HTTP {status} for {ctx.target} of destination '{name}'; retrying",
                              detail=detail)

    def error_context(self) -> ErrorContext:
        return ErrorContext(platform="Attentive", destination=self.name, credential_env=self.config.api_key_env,
                            target="the custom attributes call")

    def close(self) -> None:
        self._session.close()

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        attribute = audience.audience_id
        if len(attribute) > MAX_ATTRIBUTE_NAME:
            raise ConfigError(f"Attentive attribute names have at most {MAX_ATTRIBUTE_NAME} characters; shorten the"
                              f" audience_id of sync '{audience.sync}'")
        value = self.config.member_value if op == "add" else self.config.removed_value
        outcomes: dict[str, RowOutcome] = {}
        sendable: list[Member] = []
        for member in members:
            reason = _row_problem(member)
            if reason:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, reason)
            else:
                sendable.append(member)
        verdicts, calls = self._post_all(sendable, attribute, value)
        for key, reason in verdicts.items():
            status = RowStatus.REJECTED if reason else RowStatus.SENT
            outcomes[key] = RowOutcome(key, status, reason)
        return BatchResult(op, tuple(outcomes[m.member_key] for m in members), requests=calls)

    def _post_all(self, members: Sequence[Member], attribute: str, value: str) -> tuple[dict[str, str | None], int]:
        """Set the attribute for each member (``concurrency`` members at a time); return member_key ->
        rejection reason or None, and the number of requests made.

        Raises the most serious whole-call failure seen (config before throttling before transient); members
        not yet sent by then are skipped, and the engine re-sends the whole batch (idempotent).
        """
        if not members:
            return {}, 0
        stop = threading.Event()

        def one(member: Member) -> tuple[str | SyncError | None, int]:
            calls = 0
            for user in _users(member):
                if stop.is_set():
                    break
                self._pacer.acquire()
                calls += 1
                payload = {"user": user, "properties": {attribute: value}}
                failure = self.classify(self._request("POST", "/v1/attributes/custom", payload))
                if isinstance(failure, PermanentError):  # the request carries one member: that member is refused
                    return _REFUSED_ROW, calls
                if failure is not None:
                    stop.set()
                    return failure, calls
            return None, calls

        workers = min(self.config.concurrency, len(members))
        if workers == 1:
            results = [one(m) for m in members]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attentive") as pool:
                results = list(pool.map(one, members))
        failures = [r for r, _ in results if isinstance(r, SyncError)]
        if failures:
            raise _worst(failures)
        verdicts = {m.member_key: r for m, (r, _) in zip(members, results) if not isinstance(r, SyncError)}
        return verdicts, sum(calls for _, calls in results)

    def _request(self, method: str, path: str, payload: Any) -> PlatformResponse:
        try:
            response = self._session.request(method, self._base + path, json=payload, timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            # never chained: the exception's text can hold the request
            raise unreachable("Attentive", self._base, exc, destination=self.name, redactor=_redact) from None
        return PlatformResponse(response.status_code, read_body(response), response.headers)


def _row_problem(member: Member) -> str | None:
    phone, email = member.identifiers.get("phone"), member.identifiers.get("email")
    if phone and not _E164.match(phone):
        return "invalid_phone"
    if email and "@" not in email:
        return "invalid_email"
    if not phone and not email:
        return "no_identifier"
    return None


def _users(member: Member) -> list[dict[str, str]]:
    """One ``user`` per identifier, the phone's first: never two together (see the module docstring)."""
    return [{kind: member.identifiers[kind]} for kind in ("phone", "email") if member.identifiers.get(kind)]


def _worst(failures: Sequence[SyncError]) -> SyncError:
    for kind in (ConfigError, PermanentError, RateLimited):
        found = [f for f in failures if isinstance(f, kind)]
        if found:
            if kind is RateLimited:
                return max(found, key=lambda f: f.retry_after or 0.0)  # type: ignore[attr-defined]
            return found[0]
    return failures[0]


def _wait(headers: Mapping[str, str] | None) -> float:
    """``Retry-After`` in seconds, else 1 s: Attentive's limit is per second."""
    wait = retry_after(headers, http_date=False)
    return _DEFAULT_RETRY_AFTER_S if wait is None else wait


def _message(body: Any) -> str:
    """Attentive's error words without PII (it may echo the phone or email we sent)."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        text = "; ".join(str(e.get("message", "")) for e in body["errors"] if isinstance(e, dict))
    else:
        text = str(body)
    return _redact(text)


# Phone-like digit runs and emails; an email here runs to the next space or quote, commas included.
_PII = re.compile(r"\+?\d[\d\s().-]{6,}\d|[^\s@'\"<>]+@[^\s@'\"<>]+")


def _redact(text: str) -> str:
    return redact(text, _PII)
