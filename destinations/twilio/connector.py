"""Twilio SMS: text a member the configured message once when they enter a segment, and never twice.

Twilio keeps no lists, so a Twilio sync runs in mode ``trigger``: entering the segment is an add (one text);
leaving only clears the ledger (``can_remove`` is False: a remove makes no request and answers SENT), so a
later re-entry texts again.

API flow (REST 2010-04-01 over our own ``requests`` session, HTTP Basic auth with Account SID and token)::

    send   POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json
                form: To, MessagingServiceSid | From, Body (config.messages[audience_id]), StatusCallback?
    log    GET  {base}/2010-04-01/Accounts/{AccountSid}/Messages.json?To={phone}&PageSize=1000
                then each page's next_page_uri (``find_sent``)
    check  GET  {base}/2010-04-01/Accounts/{AccountSid}.json

At most once (``Capabilities.at_most_once``): the engine (``syncer.delivery.at_most_once``) claims each text
in the ledger just before calling ``add`` with that one member, and settles the claim right after: ``sent``
with the message SID (``last_message_ids``), released when the text certainly did not go out (a raise, a
REJECTED or RETRYABLE row), ``unknown`` for SENT ``delivery_unknown`` (read timeout, connection dropped
after the request, HTTP 500/502/504: message creation has no idempotency key, so it is never resent
blindly). A claim left ``unknown``, or ``claimed`` by a process that died, is looked up in Twilio's message
log by the next run (``find_sent``): found, the text counts as sent; not found, it is sent then, once. So
this module raises only while nothing of a batch has gone out, and returns RETRYABLE only for rows it
certainly did not send; after a ``delivery_unknown`` row the rest of a batch is RETRYABLE
``twilio_unavailable``.

The log and how a text in doubt is matched there: ``destinations.twilio.message_log``.

Each member, in order (every check before the send is local):

1. ``identifiers["_consent"]`` (``consent_marker``: the engine adds the member's SMS consent) must be
   ``granted``, else REJECTED ``no_consent``. The engine already drops members whose consent is not granted
   unless a sync sets ``send_unknown_consent``; marketing texts need granted consent even then.
2. The phone must be a valid E.164 number, else REJECTED ``invalid_phone``.
3. A recorded opt-out (STOP) for the phone: REJECTED ``opted_out``, no request.
4. Quiet hours in the recipient's local time (``in_quiet_hours``): RETRYABLE ``quiet_hours``, not sent;
   the next run tries again.
5. The send, one recipient per request. Twilio's answers (``classify``): 201 SENT; 21610
   ``RecipientRefused`` (REJECTED ``opted_out``) and the opt-out is recorded; 21211/21614/21612/21635/
   21408/21608 ``RecipientRefused`` with their reason; HTTP 429 or 20429 ``RateLimited`` (raised when nothing
   went out yet, else RETRYABLE ``throttled`` for the rest); 401, 20003, 20404 and sender or body codes
   ``ConfigError`` (same rule, ``twilio_config``); 503 and a refused connection are "not sent"
   ``TransientError`` (same rule, ``twilio_unavailable``); HTTP 500/502/504 ``DeliveryUnknown`` (SENT
   ``delivery_unknown``); any other error ``RecipientRefused`` ``twilio_<code>``, never retried: a text is
   not idempotent, so an unknown refusal is surfaced rather than retried.

Opt-outs (STOP): kept in the ledger through ``Destination.id_cache`` (per destination, key
``sms_opt_out:<sha256 of the E.164 phone>``, value ``opted_out`` or ``opted_in``), written when Twilio answers
21610 and by ``record_opt_out(ledger, destination, phone)``, which `syncer serve` (``syncer.inbound``) calls for
the STOP-family keywords of Twilio's inbound-message webhook, and ``record_opt_in`` for START. Without an
``id_cache`` (a connector used outside the engine) opt-outs are kept in memory.

Quiet hours (47 CFR 64.1200(c)(1) and state rules; ``destinations.twilio.quiet_hours``): 08:00-21:00 local, narrowed for
US numbers whose area code lies in FL, OK, MD, MS, NJ (08-20), CT (09-20), TX (09-21, Sunday 12-21) and RI
(09-18 weekdays, 10-17 weekends). The time zones come from ``phonenumbers.timezone``; a number that maps
to several must be inside the window in every one. State holidays are not modelled.

Clock, first given wins: ``TwilioSmsDestination(config, now=...)``; the class attribute
``TwilioSmsDestination.clock`` (a callable returning an aware datetime) for code that lets the engine build
the connector, e.g. tests; the config's ``sandbox_time``, a fixed instant for runs against the emulator (the
contract suite, a user's CI), refused for Twilio's own API; else the wall clock.

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

import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import ClassVar

import phonenumbers
import requests
from urllib3.exceptions import NewConnectionError

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus, all_sent
from destinations.http import build_session, redact, retry_after
from destinations.pacing import TokenBucket
from destinations.responses import ErrorContext, PlatformResponse
from destinations.twilio.config import CAPABILITIES, SANDBOX_TIME_ON_TWILIO, TwilioSmsConfig, reaches_twilio
from destinations.twilio.message_log import find_in_log
from destinations.twilio.opt_outs import OPTED_OUT, opt_out_key, record_opt_in, record_opt_out
from destinations.twilio.quiet_hours import has_time_zone, in_quiet_hours
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["API_URL", "DeliveryUnknown", "RecipientRefused", "TwilioSmsDestination", "opt_out_key", "record_opt_in",
           "record_opt_out"]

API_URL = "https://api.twilio.com"
ROW_CODES = {21610: "opted_out", 21211: "invalid_phone", 21614: "not_mobile", 21612: "unroutable",
             21635: "landline", 21408: "region_not_permitted", 21608: "unverified_recipient"}
CONFIG_CODES = {20003, 20404, 20005, 10001, 21212, 21602, 21603, 21606, 21617, 21701, 21705}
_PHONE_RUN = re.compile(r"\+?\d[\d\s().-]{5,}\d")  # Twilio's messages may quote the number
_CONNECT_TIMEOUT_S = 10.0


# --- what a send's failure means -----------------------------------------------------------------


class RecipientRefused(PermanentError):
    """Twilio refused this one text for good: the request carried one recipient, so only that member is
    REJECTED (with ``reason``) and the batch goes on."""

    def __init__(self, message: str, *, reason: str, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.reason = reason


class DeliveryUnknown(TransientError):
    """Twilio failed while it held the request (HTTP 500, 502, 504, or no answer once it was sent): the text
    may have gone out. Message creation has no idempotency key, so the member counts as sent
    (``delivery_unknown``) and is never resent."""


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


def _halt_reason(failure: SyncError) -> str:
    """The RETRYABLE reason of the rows left unsent after ``failure`` stopped a batch midway."""
    if isinstance(failure, RateLimited):
        return "throttled"
    return "twilio_config" if isinstance(failure, ConfigError) else "twilio_unavailable"


# --- the connector -------------------------------------------------------------------------------


class TwilioSmsDestination(Destination):
    """Sends one text per segment entry through Twilio; at most once, never in quiet hours or after STOP."""

    kind = "twilio_sms"
    capabilities = CAPABILITIES
    clock: ClassVar[Callable[[], datetime] | None] = None
    """Process-wide clock override (tests); ``now=`` given to the constructor wins."""

    def __init__(self, config: TwilioSmsConfig, *, name: str | None = None, now: Callable[[], datetime] | None = None) -> None:
        """Read the Account SID and token from the environment now.

        Raises:
            ConfigError: an environment variable named in the config is not set, or ``sandbox_time`` is set
                for Twilio's own API.
        """
        self.config = config
        self.name = name or "twilio_sms"  # build_destination sets the file stem after construction
        if config.sandbox_time is not None and reaches_twilio(config.endpoint):  # the endpoint's ${VAR}s expanded
            raise ConfigError(f"destination '{self.name}': {SANDBOX_TIME_ON_TWILIO}")
        what = f"Twilio destination '{self.name}'"
        self._sid = resolve_secret(config.account_sid_env, what=what).get_secret_value()
        token = resolve_secret(config.auth_token_env, what=what).get_secret_value()
        self._base = (config.endpoint or API_URL).rstrip("/")
        self._session = build_session(self._base, auth=(self._sid, token))
        self._now = now
        self._memory_opt_outs: dict[str, str] = {}
        self.last_message_ids: dict[str, str] = {}
        """Twilio's message SID of each text the last ``add`` sent, by member key (the claim records it)."""
        rate = config.requests_per_second
        self._pacer = TokenBucket(rate, burst=1) if rate else None  # burst 1: sends at least 1/rate s apart

    # ----- Destination --------------------------------------------------------------------------
    def check(self) -> None:
        """Verify the credentials and that the account is active; raise ``ConfigError`` with what to fix."""
        try:
            answer = self._session.get(f"{self._base}/2010-04-01/Accounts/{self._sid}.json", timeout=self._timeout())
        except requests.RequestException as exc:
            raise TransientError(f"Cannot reach Twilio at {self._base} ({type(exc).__name__})") from None
        response = _platform_response(answer)
        failure = self.classify(response)
        if failure is not None and not isinstance(failure, (RecipientRefused, DeliveryUnknown)):
            raise failure
        body = response.body if isinstance(response.body, dict) else {}
        if failure is not None or body.get("status") != "active":
            raise ConfigError(f"Twilio account of destination '{self.name}' is not active or not readable"
                              f" (HTTP {response.status})")

    def classify(self, response: PlatformResponse) -> SyncError | None:
        """Twilio's answer to one call, by its error code first; the only reader of Twilio's codes.

        No fallback to the shared table for the rest: a text is not idempotent, so an unknown refusal is
        ``RecipientRefused`` (surfaced, never retried) where the table would stop the sync.
        """
        status, body = response.status, response.body
        if 200 <= status < 300:
            return None
        code = body.get("code") if isinstance(body, dict) else None
        code = code if isinstance(code, int) else None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        detail = f"HTTP {status}; code {code}; message: {redact(message, _PHONE_RUN)[:200]}"
        name, said = self.name, f"code {code or status}"
        if status == 429 or code == 20429:
            return RateLimited(f"Twilio throttled destination '{name}' ({said})",
                               retry_after=retry_after(response.headers, http_date=False), detail=detail)
        if code in ROW_CODES:
            return RecipientRefused(f"Twilio refused a text of destination '{name}' ({said})", reason=ROW_CODES[code],
                                    detail=detail)
        if status == 401 or code == 20003:
            return ConfigError(f"Twilio refused the credentials of destination '{name}' (code 20003): export the"
                               f" Account SID as {self.config.account_sid_env} and a valid auth token as"
                               f" {self.config.auth_token_env}", detail=detail)
        if code in CONFIG_CODES or status in (403, 404):
            return ConfigError(f"Twilio refused every send of destination '{name}' ({said}): check its account,"
                               f" from_number / messaging_service_sid and message bodies"
                               f" (twilio.com/docs/errors/{code or status})", detail=detail)
        if status == 503:  # Twilio did not take the request: nothing was sent
            return TransientError(f"Twilio is unavailable (HTTP 503) for destination '{name}'; retrying", detail=detail)
        if status >= 500:
            return DeliveryUnknown(f"Twilio failed (HTTP {status}) while handling a call of destination '{name}'; a"
                                   " text may have gone out, so it is not resent", detail=detail)
        return RecipientRefused(f"Twilio refused a text of destination '{name}' ({said})",
                                reason=f"twilio_{code}" if code else f"http_{status}", detail=detail)

    def error_context(self) -> ErrorContext:
        return ErrorContext(platform="Twilio", destination=self.name, credential_env=self.config.auth_token_env,
                            target="the account")

    def close(self) -> None:
        self._session.close()

    def now(self) -> datetime:
        """The instant quiet hours are judged at (see "Clock" in the module docstring)."""
        clock = self._now or type(self).clock
        if clock is not None:
            return clock()
        return self.config.sandbox_time or datetime.now(timezone.utc)

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Text each member once (see the module docstring for each case); a remove makes no request."""
        if op == "remove":  # a text cannot be taken back, and Twilio keeps no list to leave
            return all_sent("remove", members, requests=0)
        self.last_message_ids = {}
        body = self._body(audience)
        outcomes: dict[str, RowOutcome] = {}
        candidates = self._screen(members, outcomes)
        requests_made = self._send_all(candidates, body, outcomes)
        sent = sum(1 for o in outcomes.values() if o.status is RowStatus.SENT)
        return BatchResult("add", tuple(outcomes[m.member_key] for m in members), requests=requests_made,
                           platform_counts={"texts_sent": sent})

    def find_sent(self, audience: AudienceRef, member: Member, since: float) -> str | None:
        """The SID of a text of ``audience``'s message to ``member``'s phone, from this account's sender,
        created at or after ``since`` (epoch seconds), as Twilio's message log shows it; None when it shows
        none.

        Raises:
            TransientError: the log cannot tell yet: fewer than ``log_settle_s`` seconds since ``since``,
                Twilio unreachable or failing, or more messages to the phone than are read.
            ConfigError: Twilio refused the credentials or the account.
        """
        phone = member.identifiers.get("phone")
        if not phone:
            return None  # nothing can have gone out to no number
        early = since + self.config.log_settle_s - time.time()
        if early > 0:
            raise TransientError(f"Twilio's message log of destination '{self.name}' is read {self.config.log_settle_s:g} s"
                                 " after a send in doubt; it is looked up by a later run", retry_after=early)
        sender = (("messaging_service_sid", self.config.messaging_service_sid) if self.config.messaging_service_sid
                  else ("from", self.config.from_number or ""))
        return find_in_log(self._session, f"{self._base}/2010-04-01/Accounts/{self._sid}/Messages.json",
                           phone=phone, body=self._body(audience), sender=sender, since=since, timeout=self._timeout(),
                           classify=self.classify, name=self.name)

    def _body(self, audience: AudienceRef) -> str:
        body = self.config.messages.get(audience.audience_id)
        if body is None:
            raise ConfigError(f"destination '{self.name}' has no message for audience_id '{audience.audience_id}'"
                              f" (sync '{audience.sync}'): add it under 'messages'")
        return body

    def _timeout(self) -> tuple[float, float]:
        return min(_CONNECT_TIMEOUT_S, self.config.request_timeout_s), self.config.request_timeout_s

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
            failure, sid = self._send_one(phone, body)
            requests_made += 1
            if failure is None or isinstance(failure, DeliveryUnknown):
                went_out = True
                if sid:
                    self.last_message_ids[key] = sid
                outcomes[key] = RowOutcome(key, RowStatus.SENT, None if failure is None else "delivery_unknown")
                if failure is not None:
                    halted = "twilio_unavailable"
            elif isinstance(failure, RecipientRefused):
                outcomes[key] = RowOutcome(key, RowStatus.REJECTED, failure.reason)
                if failure.reason == OPTED_OUT:
                    self._remember_opt_out(phone)
            elif not went_out:
                raise failure  # nothing of this batch went out: safe to retry it all
            else:
                halted = _halt_reason(failure)
                outcomes[key] = RowOutcome(key, RowStatus.RETRYABLE, halted)
        return requests_made

    def _send_one(self, phone: str, body: str) -> tuple[SyncError | None, str | None]:
        """One text: (None, its message SID) when Twilio accepted it, else (what its failure means, None)."""
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
                return TransientError(f"Cannot reach Twilio at {self._base} ({type(exc).__name__}); nothing was sent,"
                                      " retrying"), None
            return DeliveryUnknown(f"Twilio did not answer a send of destination '{self.name}' ({type(exc).__name__});"
                                   " the text may have gone out, so it is not resent"), None
        answer = _platform_response(response)
        failure = self.classify(answer)
        sid = answer.body.get("sid") if failure is None and isinstance(answer.body, dict) else None
        return failure, sid if isinstance(sid, str) else None

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


def _platform_response(response: requests.Response) -> PlatformResponse:
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    return PlatformResponse(response.status_code, body, response.headers)
