"""A strict emulator of Twilio's Programmable Messaging REST API (the sandbox's ``twilio`` part).

Served under ``/twilio``, so a connector's base URL is ``http://127.0.0.1:PORT/twilio`` in place of
``https://api.twilio.com``. Routes::

    GET  /2010-04-01/Accounts/{Sid}.json                the account (status active)
    POST /2010-04-01/Accounts/{Sid}/Messages.json       send: form To, From | MessagingServiceSid, Body
    GET  /2010-04-01/Accounts/{Sid}/Messages.json       messages sent, newest first (?To= filters)

Strictness: HTTP Basic auth with the Account SID (``account_sid``) and the auth token (``key``) on every
call, else 401 with code 20003; another account's SID in the path is 404 (20404). ``To`` must be a valid
E.164 number (21211); ``From`` must be one of the account's ``numbers`` (21606) or a
``MessagingServiceSid`` one of its ``services`` (21705), one of the two required (21603); ``Body`` is
required (21602) and at most 1,600 characters (21617). A number that texted STOP (``opt_out``) answers
21610 until it texts START (``opt_in``). Errors use Twilio's JSON ``{code, message, more_info, status}``.

Every accepted send is recorded in ``messages`` with the time it was accepted: that is what the person
received; ``attempted`` lists the ``To`` of every send that reached the checks, refused or not. Faults:
``inject_http(429)`` answers code 20429 with ``Retry-After``; ``latency`` delays every call;
``fail_message(n, status, code)`` answers the n-th next send with that error; ``hold_message(n)`` makes the
n-th next send wait (before it is recorded) until ``release()``, so a test can kill the sender, or let its
read time out, while the request is in flight; released, the send goes through as Twilio's would.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import phonenumbers

from destinations.emulation import Emulator, Request, Response

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_FROM", "DEFAULT_SERVICE_SID", "TwilioEmulator"]

DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_FROM = "+15005550006"
DEFAULT_SERVICE_SID = "MG" + "0" * 31 + "1"
_MAX_BODY = 1600
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+?)(/Messages)?\.json$")
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
        self.holding = threading.Event()
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
            self.holding.clear()
            self._script[self._posts + n] = ("hold", {})

    def fail_message(self, n: int = 1, status: int = 429, code: int = 20429, retry_after: float | None = None) -> None:
        """Answer the n-th send from now with Twilio error ``code`` on HTTP ``status`` (nothing is sent)."""
        with self._hold_lock:
            self._script[self._posts + n] = ("fail", {"status": status, "code": code, "retry_after": retry_after})

    def release(self) -> None:
        """Let a held send go on (and every later one)."""
        with self._hold_lock:
            self._script = {k: v for k, v in self._script.items() if v[0] != "hold"}
            self._gate.set()

    def serve(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.method == "POST" and request.path.endswith("/Messages.json"):
            with self._hold_lock:
                self._posts += 1
                action, args = self._script.pop(self._posts, (None, {}))
            if action == "hold":
                self.holding.set()
                self._gate.wait(timeout=60)
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
            self.messages = [dict(m) for m in state.get("messages", [])]
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
            to = (request.params().get("To") or [None])[0]
            found = [m for m in reversed(self.messages) if to is None or m["to"] == to]
            return Response(200, {"messages": found, "page": 0, "page_size": len(found)})
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
        message = {"sid": "SM" + secrets.token_hex(16), "to": to, "from": sender, "messaging_service_sid": service,
                   "body": body, "status": "accepted" if service else "queued", "at": time.time(),
                   "status_callback": form.get("StatusCallback")}
        self.messages.append(message)
        return Response(201, {**message, "account_sid": self.account_sid, "num_segments": "1", "direction": "outbound-api",
                              "error_code": None, "error_message": None, "api_version": "2010-04-01"})


def _valid_number(value: str) -> bool:
    if not _E164.match(value):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False
