"""A strict emulator of Twilio's Programmable Messaging REST API (the sandbox's ``twilio`` part).

Served under ``/twilio``, so a connector's base URL is ``http://127.0.0.1:PORT/twilio`` in place of
``https://api.twilio.com``. Routes::

    GET  /2010-04-01/Accounts/{Sid}.json                the account (status active)
    POST /2010-04-01/Accounts/{Sid}/Messages.json       send: form To, From | MessagingServiceSid, Body
    GET  /2010-04-01/Accounts/{Sid}/Messages.json       the message log, newest first, page by page

Strictness: HTTP Basic auth with the Account SID (``account_sid``) and the auth token (``key``) on every
call, else 401 with code 20003; another account's SID in the path is 404 (20404). ``To`` must be a valid
E.164 number (21211); ``From`` must be one of the account's ``numbers`` (21606) or a
``MessagingServiceSid`` one of its ``services`` (21705), one of the two required (21603); ``Body`` is
required (21602) and at most 1,600 characters (21617). A number that texted STOP (``opt_out``) answers
21610 until it texts START (``opt_in``). Errors use Twilio's JSON ``{code, message, more_info, status}``.

Every accepted send is recorded in ``messages`` with the time it was accepted: that is what the person
received; ``attempted`` lists the ``To`` of every send that reached the checks, refused or not. A send is
answered as Twilio answers a create (``status`` queued, or accepted through a Messaging Service, no
``date_sent``) and counts as sent at once (``status`` sent, ``date_sent`` set), unless ``deliver_later`` keeps
it queued, with no ``date_sent``, until ``deliver()``. Faults: ``inject_http(429)`` answers code 20429 with
``Retry-After``; ``latency`` delays every call; ``fail_message(n, status, code)`` answers the n-th next send
with that error; ``hold_message(n)`` makes the n-th next send wait (before it is recorded) until
``release()``, so a test can kill the sender, or let its read time out, while the request is in flight;
released, the send goes through as Twilio's would, or with ``release(deliver=False)`` it never reached
Twilio (HTTP 503, nothing recorded).

The log (twilio.com/docs/messaging/api/message-resource, "Read multiple Message resources"; query names as
twilio-python's ``MessageList.page`` sends them): ``To`` and ``From`` filter exactly; ``DateSent``,
``DateSent<`` and ``DateSent>`` take a GMT date ``YYYY-MM-DD`` (the SDK's ``YYYY-MM-DDTHH:MM:SSZ`` is read
by its date) and keep messages sent on, on or before, on or after it, so a message not sent yet (no
``date_sent``) never passes one; ``PageSize`` 1-1000 (default 50), then each page's ``next_page_uri``
(``PageToken`` ``PA`` + the last SID of the page before; null on the last page). Newest first by
``date_sent``, messages not sent yet first [U: where Twilio sorts them]. A malformed ``PageSize``,
``Page``, ``PageToken`` or date is HTTP 400 code 20001 [U: the code Twilio answers].
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import date, datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import phonenumbers

from destinations.emulation import Emulator, Request, Response

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_FROM", "DEFAULT_SERVICE_SID", "TwilioEmulator"]

DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_FROM = "+15005550006"
DEFAULT_SERVICE_SID = "MG" + "0" * 31 + "1"
_MAX_BODY = 1600
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+?)(/Messages)?\.json$")
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}Z)?$")
_DATE_FILTERS = {"DateSent": "on", "DateSent<": "on_or_before", "DateSent>": "on_or_after"}
_PAGE_SIZE, _MAX_PAGE_SIZE = 50, 1000
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21606: "The From phone number is not a valid, SMS-capable inbound phone number or short code for your account.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21705: "The Messaging Service Sid is invalid.",
}


def twilio_error(status: int, code: int, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """Twilio's error envelope."""
    body = {"code": code, "message": message or _MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return Response(status, body, headers or {})


class TwilioEmulator(Emulator):
    """Messages sent, opted-out numbers, and the account's senders."""

    name = "twilio"

    def __init__(self, key: str | None = None, account_sid: str | None = None) -> None:
        self.account_sid = account_sid or os.environ.get("SANDBOX_TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID
        self._hold_lock = threading.Lock()
        self._posts = 0
        self._script: dict[int, tuple[str, dict[str, Any]]] = {}  # message POST number -> action
        self._gate = threading.Event()
        self._drop_held = False
        self.holding = threading.Event()
        self.deliver_later = False
        super().__init__(key)

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.attempted: list[str] = []
        self.opted_out: set[str] = set()
        self.numbers: set[str] = {DEFAULT_FROM}
        self.services: set[str] = {DEFAULT_SERVICE_SID}
        self.release()

    def opt_out(self, phone: str) -> None:
        """Simulate an inbound STOP from ``phone``: Twilio refuses every later send to it with 21610."""
        with self.lock:
            self.opted_out.add(phone)

    def opt_in(self, phone: str) -> None:
        """Simulate an inbound START."""
        with self.lock:
            self.opted_out.discard(phone)

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """``opted_out`` when the phone texted STOP (and not START since), else ``opted_in``; None without a
        phone. Twilio keeps no lists, so ``audience_id`` does not matter."""
        phone = identifiers.get("phone")
        if not phone:
            return None
        with self.lock:
            return "opted_out" if phone in self.opted_out else "opted_in"

    def sent_to(self, phone: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(m) for m in self.messages if m["to"] == phone]

    def hold_message(self, n: int = 1) -> None:
        """Make the n-th send from now wait, before it is recorded, until ``release()``."""
        with self._hold_lock:
            self._gate.clear()
            self._drop_held = False
            self.holding.clear()
            self._script[self._posts + n] = ("hold", {})

    def fail_message(self, n: int = 1, status: int = 429, code: int = 20429, retry_after: float | None = None) -> None:
        """Answer the n-th send from now with Twilio error ``code`` on HTTP ``status`` (nothing is sent)."""
        with self._hold_lock:
            self._script[self._posts + n] = ("fail", {"status": status, "code": code, "retry_after": retry_after})

    def release(self, deliver: bool = True) -> None:
        """Let a held send go on (and every later one); ``deliver=False``: it never reached Twilio."""
        with self._hold_lock:
            self._script = {k: v for k, v in self._script.items() if v[0] != "hold"}
            self._drop_held = not deliver
            self._gate.set()

    def deliver(self) -> None:
        """Send every queued message now (``deliver_later``): it gets its ``date_sent``."""
        with self.lock:
            for message in self.messages:
                if message["sent_at"] is None:
                    message["sent_at"], message["status"] = time.time(), "sent"

    def serve(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.method == "POST" and request.path.endswith("/Messages.json"):
            with self._hold_lock:
                self._posts += 1
                action, args = self._script.pop(self._posts, (None, {}))
            if action == "hold":
                self.holding.set()
                self._gate.wait(timeout=60)
                with self._hold_lock:
                    if self._drop_held:
                        return twilio_error(503, 20503, "Service Unavailable").encode()
            elif action == "fail":
                body = twilio_error(args["status"], args["code"]).body
                self.inject_http(args["status"], times=1, retry_after=args["retry_after"], body=body)
        return super().serve(request)

    # ----- state --------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"messages": [dict(m) for m in self.messages], "opted_out": sorted(self.opted_out),
                    "numbers": sorted(self.numbers), "services": sorted(self.services)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.messages = [{"sent_at": m.get("at"), "status": "sent", "from": DEFAULT_FROM, **m} for m in state.get("messages", [])]
            self.opted_out = set(state.get("opted_out", []))
            self.numbers = set(state.get("numbers", [DEFAULT_FROM]))
            self.services = set(state.get("services", [DEFAULT_SERVICE_SID]))

    def rows_in(self, request: Request) -> int:
        return 1 if request.method == "POST" else 0

    def fault_body(self, status: int) -> Any:
        code = {401: 20003, 404: 20404, 429: 20429}.get(status, 20500)
        return twilio_error(status, code, _MESSAGES.get(code, "Internal Server Error")).body

    def bad_request(self, message: str) -> Response:
        return twilio_error(400, 21600, message)

    # ----- HTTP ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if not self._authorised(request.headers.get("authorization", "")):
            return twilio_error(401, 20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        match = _PATH.match(request.path)
        if match is None:
            return twilio_error(404, 20404)
        if match.group(1) != self.account_sid:
            return twilio_error(404, 20404)
        if match.group(2) is None and request.method == "GET":
            return Response(200, {"sid": self.account_sid, "status": "active", "type": "Full",
                                  "friendly_name": "Sandbox account"})
        if match.group(2) and request.method == "POST":
            return self._send(request)
        if match.group(2) and request.method == "GET":
            return self._list(request)
        return twilio_error(405, 20004, "Method not allowed")

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.key)

    def _send(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in request.form().items()}
        self.attempted.append(form.get("To", ""))
        to, sender, service, body = form.get("To", ""), form.get("From"), form.get("MessagingServiceSid"), form.get("Body")
        if not _valid_number(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return twilio_error(400, 21603)
        if service and service not in self.services:
            return twilio_error(400, 21705)
        if sender and not service and sender not in self.numbers:
            return twilio_error(400, 21606)
        if not body:
            return twilio_error(400, 21602)
        if len(body) > _MAX_BODY:
            return twilio_error(400, 21617)
        if to in self.opted_out:
            return twilio_error(400, 21610)
        now = time.time()
        message = {"sid": "SM" + secrets.token_hex(16), "to": to, "from": sender or DEFAULT_FROM, "messaging_service_sid": service,
                   "body": body, "at": now, "sent_at": None if self.deliver_later else now,
                   "status": "queued" if self.deliver_later else "sent", "status_callback": form.get("StatusCallback")}
        self.messages.append(message)
        created = {**message, "status": "accepted" if service else "queued", "sent_at": None}  # as Twilio answers a create
        return Response(201, self._resource(created))

    def _resource(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A stored message as Twilio's Message resource."""
        sent_at = message.get("sent_at")
        return {"sid": message["sid"], "account_sid": self.account_sid, "to": message["to"], "from": message["from"],
                "messaging_service_sid": message.get("messaging_service_sid"), "body": message["body"],
                "status": message["status"], "direction": "outbound-api", "num_segments": "1", "num_media": "0",
                "date_created": _rfc2822(message["at"]), "date_updated": _rfc2822(sent_at or message["at"]),
                "date_sent": _rfc2822(sent_at) if sent_at is not None else None, "error_code": None,
                "error_message": None, "price": None, "price_unit": "USD", "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message['sid']}.json"}

    def _list(self, request: Request) -> Response:
        """One page of the message log, filtered and paged as the module docstring says."""
        params = {name: values[-1] for name, values in request.params().items()}
        try:
            size, page = _bounded(params.get("PageSize"), _PAGE_SIZE, 1, _MAX_PAGE_SIZE), _bounded(params.get("Page"), 0, 0, None)
            days = {name: _day(params[name]) for name in _DATE_FILTERS if name in params}
        except ValueError as exc:
            return twilio_error(400, 20001, str(exc))
        found = [m for m in self._newest_first() if _passes(m, params, days)]
        start = 0 if "PageToken" not in params else _after(found, params["PageToken"])
        if start is None:
            return twilio_error(400, 20001, "Invalid PageToken")
        if "PageToken" not in params:
            start = page * size
        rows = found[start:start + size]
        query = {k: v for k, v in params.items() if k in ("To", "From", *_DATE_FILTERS)} | {"PageSize": size}
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json?"
        more = start + size < len(found) and rows
        return Response(200, {
            "messages": [self._resource(m) for m in rows], "page": page, "page_size": size, "start": start,
            "end": start + max(len(rows), 1) - 1, "uri": base + urlencode({**params}),
            "first_page_uri": base + urlencode(query | {"Page": 0}),
            "next_page_uri": base + urlencode(query | {"Page": page + 1, "PageToken": "PA" + rows[-1]["sid"]}) if more else None,
            "previous_page_uri": base + urlencode(query | {"Page": page - 1}) if page > 0 else None})

    def _newest_first(self) -> list[dict[str, Any]]:
        """Newest first by date sent; messages not sent yet first, newest first among themselves."""
        order = list(enumerate(self.messages))
        order.sort(key=lambda item: (item[1]["sent_at"] is None, item[1]["sent_at"] or 0.0, item[0]), reverse=True)
        return [message for _, message in order]


def _rfc2822(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, tz=timezone.utc).replace(microsecond=0))


def _bounded(value: str | None, default: int, low: int, high: int | None) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        raise ValueError(f"Invalid paging value {value!r}")
    return int(value)


def _day(value: str) -> date:
    match = _DATE.match(value)
    if match is None:
        raise ValueError("DateSent must be a GMT date, YYYY-MM-DD")
    return date.fromisoformat(match.group(1))


def _passes(message: Mapping[str, Any], params: Mapping[str, str], days: Mapping[str, date]) -> bool:
    if "To" in params and message["to"] != params["To"]:
        return False
    if "From" in params and message["from"] != params["From"]:
        return False
    if not days:
        return True
    if message["sent_at"] is None:  # not sent yet: no date_sent to compare
        return False
    sent = datetime.fromtimestamp(message["sent_at"], tz=timezone.utc).date()
    checks = {"DateSent": sent.__eq__, "DateSent<": sent.__le__, "DateSent>": sent.__ge__}
    return all(checks[name](day) for name, day in days.items())


def _after(found: list[dict[str, Any]], token: str) -> int | None:
    """The index after the message a ``PageToken`` names; None for a token this log never gave."""
    sids = [m["sid"] for m in found]
    sid = token[2:] if token.startswith("PA") else None
    return sids.index(sid) + 1 if sid in sids else None


def _valid_number(value: str) -> bool:
    if not _E164.match(value):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False
