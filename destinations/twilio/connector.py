"""Twilio SMS: text a member the configured message once when they enter a segment, and never twice.

Twilio keeps no lists, so a Twilio sync runs in mode ``trigger``: entering the segment is an add (one text);
leaving only clears the ledger (``can_remove`` is False), so a later re-entry texts again.

API flow (REST 2010-04-01 over our own ``requests`` session, HTTP Basic auth with Account SID and token)::

    send   POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json
                form: To, MessagingServiceSid | From, Body (config.messages[audience_id]), StatusCallback?
    check  GET  {base}/2010-04-01/Accounts/{AccountSid}.json

At most once (``Capabilities.at_most_once``): the engine records every row of a batch as held before
``add`` and releases only rows returned RETRYABLE, or every row when ``add`` raises. So this module raises
only while nothing of the batch has gone out, returns RETRYABLE only for rows it certainly did not send,
and returns SENT ``delivery_unknown`` for a send that may have reached Twilio (read timeout, connection
dropped after the request, HTTP 500/502/504): message creation has no idempotency key, so it is never
resent. After such a row the rest of the batch is returned RETRYABLE ``twilio_unavailable``.

Each member, in order (every check before the send is local):

1. ``identifiers["_consent"]`` (``consent_marker``: the engine adds the member's SMS consent) must be
   ``granted``, else REJECTED ``no_consent``. The engine already drops members whose consent is not granted
   unless a sync sets ``send_unknown_consent``; marketing texts need granted consent even then.
2. The phone must be a valid E.164 number, else REJECTED ``invalid_phone``.
3. A recorded opt-out (STOP) for the phone: REJECTED ``opted_out``, no request.
4. Quiet hours in the recipient's local time (``in_quiet_hours``): RETRYABLE ``quiet_hours``, not sent;
   the next run tries again.
5. The send. Twilio's answers (``classify``): 201 SENT; 21610 REJECTED ``opted_out`` and the opt-out is
   recorded; 21211/21614/21612/21635/21408/21608 REJECTED with their reason; HTTP 429 or 20429
   ``RateLimited`` (raised when nothing went out yet, else RETRYABLE ``throttled`` for the rest); 401,
   20003, 20404 and sender or body codes ``ConfigError`` (same rule); 503 and a refused connection are
   "not sent" ``TransientError`` (same rule); any other error REJECTED ``twilio_<code>``, never retried.

Opt-outs (STOP): kept in the ledger through ``Destination.id_cache`` (per destination, key
``sms_opt_out:<sha256 of the E.164 phone>``, value ``opted_out`` or ``opted_in``), written when Twilio answers
21610 and by ``record_opt_out(ledger, destination, phone)``. This process receives no webhooks: a deployment
points Twilio's inbound-message webhook (or the Messaging Service's opt-out webhook) at a small handler
that calls ``record_opt_out`` for STOP-family keywords and ``record_opt_in`` for START. Without an
``id_cache`` (a connector used outside the engine) opt-outs are kept in memory.

Quiet hours (47 CFR 64.1200(c)(1) and state rules; ``destinations.twilio.quiet_hours``): 08:00-21:00 local, narrowed for
US numbers whose area code lies in FL, OK, MD, MS, NJ (08-20), CT (09-20), TX (09-21, Sunday 12-21) and RI
(09-18 weekdays, 10-17 weekends). The time zones come from ``phonenumbers.timezone``; a number that maps
to several must be inside the window in every one. State holidays are not modelled.

Clock: ``TwilioSmsDestination(config, now=...)`` or the class attribute ``TwilioSmsDestination.clock``
(a callable returning an aware datetime) for code that lets the engine build the connector, e.g. tests.

Config example::

    # destinations/twilio.yml
    type: twilio_sms
    account_sid_env: TWILIO_ACCOUNT_SID
    auth_token_env: TWILIO_AUTH_TOKEN
    messaging_service_sid: MG0123456789abcdef0123456789abcdef   # or from_number: "+15005550006"
    messages:
      cart_reminder: "You left something in your cart. Reply STOP to opt out."
    endpoint: http://127.0.0.1:8510/twilio                      # optional: the local sandbox
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

import phonenumbers
import requests
from urllib3.exceptions import NewConnectionError

from destinations.base import (
    AudienceRef,
    BatchResult,
    Capabilities,
    Destination,
    Member,
    RowOutcome,
    RowStatus,
)
from destinations.http import build_session, redact, retry_after
from destinations.pacing import TokenBucket
from destinations.twilio.config import TwilioSmsConfig
from destinations.twilio.quiet_hours import has_time_zone, in_quiet_hours
from syncer.environment import resolve_secret
from syncer.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    SyncError,
    TransientError,
)

__all__ = ["API_URL", "TwilioSmsDestination", "Verdict", "classify", "in_quiet_hours", "opt_out_key",
           "record_opt_in", "record_opt_out"]

API_URL = "https://api.twilio.com"
OPTED_OUT, OPTED_IN = "opted_out", "opted_in"
ROW_CODES = {21610: "opted_out", 21211: "invalid_phone", 21614: "not_mobile", 21612: "unroutable",
             21635: "landline", 21408: "region_not_permitted", 21608: "unverified_recipient"}
CONFIG_CODES = {20003, 20404, 20005, 10001, 21212, 21602, 21603, 21606, 21617, 21701, 21705}
_UNSURE_STATUSES = {500, 502, 504}
_PHONE_RUN = re.compile(r"\+?\d[\d\s().-]{5,}\d")  # Twilio's messages may quote the number
_CONNECT_TIMEOUT_S = 10.0


# --- opt-outs ------------------------------------------------------------------------------------


def opt_out_key(phone: str) -> str:
    """The ``id_cache`` key of a phone's opt-out state (hashed: no phone number in another ledger table)."""
    return "sms_opt_out:" + hashlib.sha256(phone.encode()).hexdigest()


def record_opt_out(ledger: Any, destination: str, phone: str) -> None:
    """Record an inbound STOP for ``phone`` (E.164) so ``destination`` never texts it again."""
    ledger.id_cache(destination).put_many({opt_out_key(_e164(phone)): OPTED_OUT})


def record_opt_in(ledger: Any, destination: str, phone: str) -> None:
    """Record an inbound START: ``phone`` may be texted again (if its consent is granted)."""
    ledger.id_cache(destination).put_many({opt_out_key(_e164(phone)): OPTED_IN})


def _e164(phone: str) -> str:
    number = phonenumbers.parse(phone, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- classification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one send did. ``sent``: accepted; ``unknown``: may have gone out; ``rejected``: refused for this
    row for good; ``stop``: certainly not sent, and the whole account or call failed (``error``)."""

    kind: Literal["sent", "unknown", "rejected", "stop"]
    reason: str | None = None
    error: SyncError | None = None


def classify(status: int, body: Any, headers: Mapping[str, str] | None = None, *, destination: str = "twilio",
             sid_env: str = "TWILIO_ACCOUNT_SID", token_env: str = "TWILIO_AUTH_TOKEN") -> Verdict:
    """Map one Messages.json answer to a ``Verdict``; the only place that reads Twilio's codes."""
    if 200 <= status < 300:
        return Verdict("sent")
    code = body.get("code") if isinstance(body, dict) else None
    code = code if isinstance(code, int) else None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    detail = f"HTTP {status}; code {code}; message: {redact(message, _PHONE_RUN)[:200]}"
    if status == 429 or code == 20429:
        wait = retry_after(headers, http_date=False)
        return Verdict("stop", "throttled", RateLimited(
            f"Twilio throttled destination '{destination}' (code {code or 429})", retry_after=wait, detail=detail))
    if code in ROW_CODES:
        return Verdict("rejected", ROW_CODES[code])
    if status == 401 or code == 20003:
        return Verdict("stop", "twilio_auth_failed", ConfigError(
            f"Twilio refused the credentials of destination '{destination}' (code 20003): export the Account SID as"
            f" {sid_env} and a valid auth token as {token_env}", detail=detail))
    if code in CONFIG_CODES or status in (403, 404):
        return Verdict("stop", f"twilio_config_{code or status}", ConfigError(
            f"Twilio refused every send of destination '{destination}' (code {code or status}): check its account,"
            f" from_number / messaging_service_sid and message bodies (twilio.com/docs/errors/{code or status})",
            detail=detail))
    if status == 503:
        return Verdict("stop", "twilio_unavailable", TransientError(
            f"Twilio is unavailable (HTTP 503) for destination '{destination}'; retrying", detail=detail))
    if status in _UNSURE_STATUSES or status >= 500:
        return Verdict("unknown", "delivery_unknown")
    # Unknown refusals: a text is not idempotent, so never retry; surface the code.
    return Verdict("rejected", f"twilio_{code}" if code else f"http_{status}")


def _never_reached(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Twilio (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError) or isinstance(getattr(cause, "reason", None), NewConnectionError):
            return True
        cause = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else cause.__cause__
    return False


# --- the connector -------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TwilioSmsDestination(Destination):
    """Sends one text per segment entry through Twilio; at most once, never in quiet hours or after STOP."""

    kind = "twilio_sms"
    capabilities = Capabilities(
        platform="plain",
        identifiers=frozenset({"phone"}),
        max_batch=50,
        can_remove=False,
        channel="sms",
        consent_marker=True,
        at_most_once=True,
    )
    clock: ClassVar[Callable[[], datetime] | None] = None
    """Process-wide clock override (tests); ``now=`` given to the constructor wins."""

    def __init__(self, config: TwilioSmsConfig, *, name: str | None = None, now: Callable[[], datetime] | None = None) -> None:
        """Read the Account SID and token from the environment now.

        Raises:
            ConfigError: an environment variable named in the config is not set.
        """
        self.config = config
        self.name = name or "twilio_sms"  # build_destination sets the file stem after construction
        what = f"Twilio destination '{self.name}'"
        self._sid = resolve_secret(config.account_sid_env, what=what).get_secret_value()
        token = resolve_secret(config.auth_token_env, what=what).get_secret_value()
        self._base = (config.endpoint or API_URL).rstrip("/")
        self._session = build_session(self._base, auth=(self._sid, token))
        self._now = now
        self._memory_opt_outs: dict[str, str] = {}
        rate = config.requests_per_second
        self._pacer = TokenBucket(rate, burst=1) if rate else None  # burst 1: sends at least 1/rate s apart

    # ----- Destination --------------------------------------------------------------------------
    def check(self) -> None:
        """Verify the credentials and that the account is active; raise ``ConfigError`` with what to fix."""
        try:
            response = self._session.get(f"{self._base}/2010-04-01/Accounts/{self._sid}.json", timeout=self._timeout())
        except requests.RequestException as exc:
            raise TransientError(f"Cannot reach Twilio at {self._base} ({type(exc).__name__})") from None
        verdict = classify(response.status_code, _json(response), response.headers, **self._names())
        if verdict.error is not None:
            raise verdict.error
        if verdict.kind != "sent" or (_json(response) or {}).get("status") != "active":
            raise ConfigError(f"Twilio account of destination '{self.name}' is not active or not readable"
                              f" (HTTP {response.status_code})")

    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Text each member once; see the module docstring for the outcome of each case."""
        if not members:
            return BatchResult("add", (), requests=0)
        if len(members) > self.capabilities.max_batch:
            raise PermanentError(f"Refusing {len(members)} texts in one Twilio batch; the limit is"
                                 f" {self.capabilities.max_batch} (the caller must split batches)")
        body = self.config.messages.get(audience.audience_id)
        if body is None:
            raise ConfigError(f"destination '{self.name}' has no message for audience_id '{audience.audience_id}'"
                              f" (sync '{audience.sync}'): add it under 'messages'")
        outcomes: dict[str, RowOutcome] = {}
        candidates = self._screen(members, outcomes)
        requests_made = self._send_all(candidates, body, outcomes)
        sent = sum(1 for o in outcomes.values() if o.status is RowStatus.SENT)
        return BatchResult("add", tuple(outcomes[m.member_key] for m in members), requests=requests_made,
                           platform_counts={"texts_sent": sent})

    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Twilio holds no membership: nothing to call (the engine clears its ledger for ``can_remove=False``)."""
        return BatchResult("remove", tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members), requests=0)

    def close(self) -> None:
        self._session.close()

    # ----- internals ----------------------------------------------------------------------------
    def _names(self) -> dict[str, str]:
        return {"destination": self.name, "sid_env": self.config.account_sid_env, "token_env": self.config.auth_token_env}

    def _timeout(self) -> tuple[float, float]:
        return min(_CONNECT_TIMEOUT_S, self.config.request_timeout_s), self.config.request_timeout_s

    def now(self) -> datetime:
        clock = self._now or type(self).clock or _utcnow
        return clock()

    def _screen(self, members: Sequence[Member], outcomes: dict[str, RowOutcome]) -> list[Member]:
        """Local checks before any request: consent marker, phone, recorded opt-outs, known time zone."""
        candidates: list[Member] = []
        for member in members:
            reason = _row_problem(member)
            if reason:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, reason)
            else:
                candidates.append(member)
        stopped = self._opted_out([m.identifiers["phone"] for m in candidates])
        kept = []
        for member in candidates:
            if member.identifiers["phone"] in stopped:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "opted_out")
            else:
                kept.append(member)
        return kept

    def _send_all(self, members: Sequence[Member], body: str, outcomes: dict[str, RowOutcome]) -> int:
        """Send in order; raise only while nothing has gone out. Returns the number of requests made."""
        went_out, requests_made, halted = False, 0, None
        for member in members:
            key, phone = member.member_key, member.identifiers["phone"]
            if halted is not None:  # an earlier send failed in a way that stops this batch: not sent
                outcomes[key] = RowOutcome(key, RowStatus.RETRYABLE, halted)
                continue
            if in_quiet_hours(phone, self.now()):  # checked per send: a batch may straddle 21:00
                outcomes[key] = RowOutcome(key, RowStatus.RETRYABLE, "quiet_hours")
                continue
            verdict = self._send_one(phone, body)
            requests_made += 1
            if verdict.kind == "stop":
                if not went_out:
                    raise verdict.error  # type: ignore[misc]  # nothing of this batch went out: safe to retry it all
                halted = verdict.reason or "not_sent"
                outcomes[key] = RowOutcome(key, RowStatus.RETRYABLE, halted)
            elif verdict.kind == "rejected":
                outcomes[key] = RowOutcome(key, RowStatus.REJECTED, verdict.reason)
                if verdict.reason == "opted_out":
                    self._remember_opt_out(phone)
            else:
                went_out = True
                reason = None if verdict.kind == "sent" else "delivery_unknown"
                outcomes[key] = RowOutcome(key, RowStatus.SENT, reason)
                if verdict.kind == "unknown":
                    halted = "twilio_unavailable"
        return requests_made

    def _send_one(self, phone: str, body: str) -> Verdict:
        form = {"To": phone, "Body": body}
        if self.config.messaging_service_sid:
            form["MessagingServiceSid"] = self.config.messaging_service_sid
        else:
            form["From"] = self.config.from_number or ""
        if self.config.status_callback:
            form["StatusCallback"] = self.config.status_callback
        if self._pacer is not None:
            self._pacer.acquire()
        url = f"{self._base}/2010-04-01/Accounts/{self._sid}/Messages.json"
        try:
            response = self._session.post(url, data=form, timeout=self._timeout())
        except requests.RequestException as exc:  # its text can hold the form: never chain it
            if _never_reached(exc):
                return Verdict("stop", "twilio_unreachable", TransientError(
                    f"Cannot reach Twilio at {self._base} ({type(exc).__name__}); nothing was sent, retrying"))
            return Verdict("unknown", "delivery_unknown")
        return classify(response.status_code, _json(response), response.headers, **self._names())

    def _opted_out(self, phones: Sequence[str]) -> set[str]:
        keys = {opt_out_key(p): p for p in phones}
        if not keys:
            return set()
        found = self.id_cache.get_many(list(keys)) if self.id_cache is not None else self._memory_opt_outs
        return {phone for key, phone in keys.items() if found.get(key) == OPTED_OUT}

    def _remember_opt_out(self, phone: str) -> None:
        entry = {opt_out_key(phone): OPTED_OUT}
        if self.id_cache is not None:
            self.id_cache.put_many(entry)
        else:
            self._memory_opt_outs.update(entry)


def _row_problem(member: Member) -> str | None:
    consent = member.identifiers.get("_consent")
    if consent is not None and consent != "granted":
        return "no_consent"
    phone = member.identifiers.get("phone")
    if not phone:
        return "no_phone"
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "invalid_phone"
    if not phone.startswith("+") or not phonenumbers.is_valid_number(number) or \
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != phone:
        return "invalid_phone"
    if not has_time_zone(phone):
        return "unknown_timezone"
    return None


def _json(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None
