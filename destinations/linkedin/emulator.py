"""A strict local emulator of LinkedIn's DMP Segment Users API (Matched Audiences), served under ``/linkedin/``.

Routes (below the mount)::

    GET  /rest/adAccounts/{id}              the ad account, when the token's member may use it
    POST /rest/dmpSegments/{id}/users       X-RestLi-Method: BATCH_CREATE; add or remove users

As LinkedIn does (facts and sources in ``destinations.linkedin.connector``): every call needs
``Authorization: Bearer <token>`` (401 EMPTY_ACCESS_TOKEN without one, 401 INVALID_ACCESS_TOKEN when wrong),
a ``LinkedIn-Version`` of the form YYYYMM (400 VERSION_MISSING without one, 426 NONEXISTENT_VERSION for one
it does not serve) and ``X-Restli-Protocol-Version: 2.0.0`` (400 otherwise); errors are
``{status, serviceErrorCode, code, message}``. The users call also needs ``X-RestLi-Method: BATCH_CREATE``
and a JSON body that is exactly ``{"elements": [...]}`` holding 1 to ``MAX_BATCH`` elements (400 for the
whole request otherwise). A segment it does not hold is 404; one of an ad account the token's member may
not use is 403; throttling is HTTP 429 with no stated wait.

Each element is answered on its own, in order: ``{"status": 201}`` when applied, else
``{"status": 400, "error": {...}}`` and nothing of it is applied: an unknown key, an ``action`` other than
ADD/REMOVE, an unknown ``idType``, an ``idValue`` not in its type's exact format (SHA256_EMAIL: 64 lowercase
hex; SHA512_EMAIL: 128 lowercase hex; GOOGLE_AID/APPLE_IDFA: a lowercase UUID), or neither a user id nor
first and last name. Error texts never echo a value.

Identity: a segment holds people, each known by its ids ((idType, idValue) pairs). An added element whose
ids match people merges them into one person; a removed element removes every person any of its ids
matches. An element with names only is accepted and holds no one we can read back.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from destinations.emulation import Emulator, Request, Response
from destinations.linkedin.config import MAX_BATCH

__all__ = ["ID_FORMATS", "SANDBOX_ACCOUNT", "LinkedInEmulator"]

SANDBOX_ACCOUNT = "500000001"
ID_FORMATS: Mapping[str, Callable[[str], Any]] = {
    "SHA256_EMAIL": re.compile(r"[0-9a-f]{64}").fullmatch,
    "SHA512_EMAIL": re.compile(r"[0-9a-f]{128}").fullmatch,
    "GOOGLE_AID": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch,
    "APPLE_IDFA": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch,
}
_ELEMENT_KEYS = frozenset({"action", "userIds", "firstName", "lastName", "title", "company", "country"})
_VERSION = re.compile(r"\d{6}(\.\d{2})?").fullmatch
_ACCOUNT = re.compile(r"/rest/adAccounts/([^/]+)").fullmatch
_USERS = re.compile(r"/rest/dmpSegments/([^/]+)/users").fullmatch
Pair = tuple[str, str]


class LinkedInError(Exception):
    def __init__(self, status: int, code: str, message: str, service_code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.service_code = service_code if service_code is not None else status

    def body(self) -> dict[str, Any]:
        return _error(self.status, self.code, self.message, self.service_code)


def _error(status: int, code: str, message: str, service_code: int | None = None) -> dict[str, Any]:
    return {"status": status, "serviceErrorCode": service_code if service_code is not None else status,
            "code": code, "message": message}


def _invalid(message: str) -> LinkedInError:
    return LinkedInError(400, "INVALID_VALUE", message, 100)


@dataclass
class _Segment:
    account_id: str
    name: str
    persons: dict[int, set[Pair]] = field(default_factory=dict)
    index: dict[Pair, int] = field(default_factory=dict)

    def add(self, ids: set[Pair], new_pid: Callable[[], int]) -> None:
        found = sorted({pid for pair in ids if (pid := self.index.get(pair)) is not None})
        merged: set[Pair] = set(ids)
        for pid in found:
            merged |= self._drop(pid)
        pid = found[0] if found else new_pid()
        self.persons[pid] = merged
        for pair in merged:
            self.index[pair] = pid

    def remove(self, ids: set[Pair]) -> None:
        for pid in {pid for pair in ids if (pid := self.index.get(pair)) is not None}:
            self._drop(pid)

    def _drop(self, pid: int) -> set[Pair]:
        person = self.persons.pop(pid)
        for pair in person:
            if self.index.get(pair) == pid:
                del self.index[pair]
        return person


class LinkedInEmulator(Emulator):
    """LinkedIn's DMP Segment Users API, strict about tokens, headers, hashes, limits and segments."""

    name = "linkedin"
    default_key = "sandbox-linkedin-token"

    def reset_state(self) -> None:
        self.segments: dict[str, _Segment] = {}
        self.accounts: set[str] = {SANDBOX_ACCOUNT}
        """Ad accounts the token's member holds a role above VIEWER on."""
        self.versions: frozenset[str] | None = None
        """When set, the only ``LinkedIn-Version`` values served (others are sunset: 426)."""
        self._pids = itertools.count(1)
        self.per_minute: int | None = None
        """When set, users calls beyond this many in one minute of ``clock`` are answered 429 (the documented
        per-member limit is 600 a minute)."""
        self.clock: Callable[[], float] = time.monotonic
        self._minute: tuple[int, int] = (-1, 0)

    # ----- test and admin API -------------------------------------------------------------------
    def create_segment(self, segment_id: str, name: str = "sandbox segment", *,
                       account_id: str = SANDBOX_ACCOUNT) -> str:
        """Make a USER DMP segment of ``account_id`` exist, with no HTTP; returns its id."""
        with self.lock:
            self.accounts.add(account_id)
            self.segments.setdefault(str(segment_id), _Segment(account_id, name))
            return str(segment_id)

    def members(self, segment_id: str) -> list[list[Pair]]:
        """People of a segment, each its sorted (idType, idValue) pairs; KeyError if unknown."""
        with self.lock:
            return [sorted(person) for person in self.segments[str(segment_id)].persons.values()]

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request 429; LinkedIn's documentation states no wait, so none is sent."""
        self.inject_http(429, 1, None)
        return None

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"accounts": sorted(self.accounts),
                    "segments": {sid: {"account_id": s.account_id, "name": s.name,
                                       "members": [sorted(p) for p in s.persons.values()]}
                                 for sid, s in self.segments.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            self.accounts.update(state.get("accounts", ()))
            for segment_id, saved in state.get("segments", {}).items():
                self.create_segment(segment_id, saved["name"], account_id=saved["account_id"])
                for person in saved.get("members", []):
                    self.segments[segment_id].add({(t, v) for t, v in person}, lambda: next(self._pids))

    def rows_in(self, request: Request) -> int:
        try:
            elements = request.json().get("elements")
        except (ValueError, AttributeError):
            return 0
        return len(elements) if isinstance(elements, list) else 0

    def fault_body(self, status: int) -> Any:
        code = {429: "TOO_MANY_REQUESTS", 401: "INVALID_ACCESS_TOKEN", 403: "ACCESS_DENIED"}.get(status)
        return _error(status, code or ("INTERNAL_SERVER_ERROR" if status >= 500 else "BAD_REQUEST"),
                      f"injected HTTP {status}")

    def bad_request(self, message: str) -> Response:
        return Response(400, _error(400, "BAD_REQUEST", "Unparsable request body", 100))

    # ----- HTTP ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except LinkedInError as exc:
            return Response(exc.status, exc.body())

    def _route(self, request: Request) -> Response:
        account, users = _ACCOUNT(request.path), _USERS(request.path)
        if not ((request.method == "GET" and account) or (request.method == "POST" and users)):
            raise LinkedInError(404, "NOT_FOUND", f"No resource found for {request.method} {request.path}")
        self._check_headers(request)
        if account:
            return self._account(account.group(1))
        self._throttle()
        return self._users(users.group(1), request)

    def _check_headers(self, request: Request) -> None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:]:
            raise LinkedInError(401, "EMPTY_ACCESS_TOKEN", "Empty oauth2 access token", 65604)
        if authorization[7:] != self.key:
            raise LinkedInError(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        version = request.headers.get("linkedin-version")
        if not version:
            raise LinkedInError(400, "VERSION_MISSING", "A version must be present. Please specify a version by"
                                " adding the LinkedIn-Version header.")
        if not _VERSION(version) or (self.versions is not None and version not in self.versions):
            raise LinkedInError(426, "NONEXISTENT_VERSION", f"Requested version {version} is not active")
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            raise LinkedInError(400, "BAD_REQUEST", "X-Restli-Protocol-Version must be 2.0.0 for this API", 100)

    def _throttle(self) -> None:
        minute = int(self.clock() // 60)
        count = self._minute[1] + 1 if self._minute[0] == minute else 1
        self._minute = (minute, count)
        if self.per_minute is not None and count > self.per_minute:
            raise LinkedInError(429, "TOO_MANY_REQUESTS", "Resource level throttle limit for calls to this resource"
                                " is reached", 101)

    def _account(self, account_id: str) -> Response:
        if account_id not in self.accounts:
            raise LinkedInError(403, "ACCESS_DENIED", f"Not enough permissions to access: adAccounts.GET for"
                                f" account {account_id}", 100)
        return Response(200, {"id": int(account_id), "name": f"sandbox account {account_id}", "status": "ACTIVE",
                              "type": "BUSINESS", "reference": "urn:li:organization:1"})

    def _users(self, segment_id: str, request: Request) -> Response:
        if request.headers.get("x-restli-method", "").upper() != "BATCH_CREATE":
            raise LinkedInError(400, "UNSUPPORTED_METHOD", "This resource supports only BATCH_CREATE:"
                                " set X-RestLi-Method", 100)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise _invalid("Content-Type must be application/json")
        body = request.json()
        if not isinstance(body, dict) or set(body) != {"elements"} or not isinstance(body["elements"], list):
            raise _invalid("The body must be exactly {\"elements\": [...]}")
        elements = body["elements"]
        if not 1 <= len(elements) <= MAX_BATCH:
            raise _invalid(f"elements holds {len(elements)} entries; a batch takes 1 to {MAX_BATCH}")
        segment = self.segments.get(segment_id)
        if segment is None:
            raise LinkedInError(404, "NOT_FOUND", f"DMP segment {segment_id} does not exist", 100)
        if segment.account_id not in self.accounts:
            raise LinkedInError(403, "ACCESS_DENIED", f"Not enough permissions to access DMP segment {segment_id}",
                                100)
        return Response(200, {"elements": [self._apply(segment, element) for element in elements]})

    def _apply(self, segment: _Segment, element: Any) -> dict[str, Any]:
        try:
            action, ids = _element(element)
        except LinkedInError as exc:
            return {"status": exc.status, "error": exc.body()}
        if ids and action == "ADD":
            segment.add(ids, lambda: next(self._pids))
        elif ids:
            segment.remove(ids)
        return {"status": 201}


def _element(element: Any) -> tuple[str, set[Pair]]:
    """(action, ids) of one element, or the LinkedInError that refuses it alone."""
    if not isinstance(element, dict) or not set(element) <= _ELEMENT_KEYS:
        raise _invalid(f"An element is an object with keys from {sorted(_ELEMENT_KEYS)}")
    if element.get("action") not in ("ADD", "REMOVE"):
        raise _invalid("action must be ADD or REMOVE")
    user_ids = element.get("userIds", [])
    if not isinstance(user_ids, list):
        raise _invalid("userIds must be a list")
    ids: set[Pair] = set()
    for user_id in user_ids:
        if not isinstance(user_id, dict) or set(user_id) != {"idType", "idValue"}:
            raise _invalid("Each userIds entry is exactly {idType, idValue}")
        id_type, value = user_id["idType"], user_id["idValue"]
        if id_type not in ID_FORMATS:
            raise _invalid(f"idType must be one of {sorted(ID_FORMATS)}")
        if not isinstance(value, str) or not ID_FORMATS[id_type](value):
            raise _invalid(f"The idValue of a {id_type} is not in its format")
        ids.add((id_type, value))
    if not ids and not (element.get("firstName") and element.get("lastName")):
        raise _invalid("An element needs a user id, or firstName and lastName")
    return element["action"], ids
