"""A strict emulator of Meta's Graph API Custom Audience endpoints (the sandbox's ``meta`` part).

It speaks the wire protocol the official ``facebook-business`` SDK speaks, so a connector runs unchanged
against it with ``FacebookSession.GRAPH`` set to the sandbox URL.

Routes (``vNN.N`` is any version)::

    GET    /vNN.N/act_{id}                   ad account (id, account_id, name, account_status)
    GET    /vNN.N/act_{id}/customaudiences    audiences of the account ({"data": [...]})
    POST   /vNN.N/act_{id}/customaudiences    create (name, subtype=CUSTOM, customer_file_source) -> {"id"}
    GET    /vNN.N/{audience_id}?fields=...    audience fields, approximate counts, operation_status
    GET    /vNN.N/{audience_id}/sessions      upload sessions
    POST   /vNN.N/{audience_id}/users         add      (form: payload, session)
    DELETE /vNN.N/{audience_id}/users         remove   (payload in the query string)
    POST   /vNN.N/{audience_id}/users  method=DELETE   remove (the Graph method override)
    POST   /vNN.N/{audience_id}/usersreplace  replace in sessions (batch_seq=1 starts, last_batch_flag ends)

Strictness: access_token (and appsecret_proof when an app secret is set) on every call; schema, data
shape and the 10,000-row limit checked; a hashed value that is not 64 lowercase hex is counted as an
invalid entry and dropped (``num_invalid_entries``, ``invalid_entry_samples`` = {value: reason}, up to
100), as Meta does; batch_seq must start at 1 and follow on; one replace at a time, and no ``/users``
call while it runs (2650/1870145). Errors use Meta's envelope ``{"error": {message, type, code,
error_subcode, is_transient, fbtrace_id}}`` on HTTP 400, and every response carries
``X-Business-Use-Case-Usage``.

Membership: a person is identified by their strong identifiers (EXTERN_ID, EMAIL, PHONE, MADID). Adding
a row that shares one (same key, same value) with a person updates that person (and merges persons it
links); removing a row removes every person sharing any of them. Weak fields (names, city, zip, country,
gender, birth date) only describe a person: a common country or first name must not link strangers. A
row with weak fields only is a person identified by that exact combination. Members are reported keyed
by the multi-key names (EMAIL, PHONE, MADID, EXTERN_ID, FN...), whichever schema added them.
Approximate counts are exact here.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["MAX_ROWS", "MULTI_KEYS", "SINGLE_KEYS", "MetaEmulator"]

MAX_ROWS = 10_000
SINGLE_KEYS = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID", "EXTERN_ID": "EXTERN_ID"}
MULTI_KEYS = ("EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "MADID", "COUNTRY")
STRONG_KEYS = ("EXTERN_ID", "EMAIL", "PHONE", "MADID")
_STRONG = frozenset(STRONG_KEYS)
_UNHASHED = {"EXTERN_ID", "MADID"}
_HEX64 = re.compile(r"[0-9a-f]{64}").fullmatch
_MADID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}").fullmatch
_PATH = re.compile(r"^/v\d+\.\d+/([^/]+)(?:/([^/]+))?/?$")
_HEX_LINES = re.compile(r"[0-9a-f\n]*").fullmatch
_BOUNDARY = re.compile(r';\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r';?\s*([\w*-]+)=(?:"([^"]*)"|([^\s;"]*))')
_FILE_SOURCES = {"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"}
_AUDIENCE_FIELDS = {
    "id", "name", "description", "subtype", "customer_file_source", "account_id", "operation_status",
    "approximate_count_lower_bound", "approximate_count_upper_bound", "time_created", "time_updated",
}
_THROTTLE_CODES = {4, 17, 32, 613, *range(80000, 80015)}
_MAX_AUDIENCES_PER_ACCOUNT = 500
_SAMPLES = 100
_REPLACE_TIMEOUT_S = 90 * 60
_THROTTLE_SUBCODES = {80003: 2446289, 17: 2446079, 613: 1487742}
_FAULT_MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "Application request limit reached",
    17: "User request limit reached",
    32: "Page request limit reached",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "Permissions error",
    613: "Calls to this api have exceeded the rate limit.",
    80003: "There have been too many calls for this ad-account. Wait a bit and try again.",
}


class GraphError(Exception):
    """A Graph API error response."""

    def __init__(self, code: int, message: str, *, subcode: int | None = None, kind: str = "OAuthException",
                 status: int = 400, transient: bool = False, eta_minutes: int = 0) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode, self.kind = code, message, subcode, kind
        self.status, self.transient, self.eta_minutes = status, transient, eta_minutes

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.transient
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(15)
        return {"error": error}


def _invalid(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, f"(#100) {message}", subcode=subcode, kind="OAuthException")


def _no_object(object_id: str, method: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded due to"
        " missing permissions, or does not support this operation. Please read the Graph API documentation at"
        " https://developers.facebook.com/docs/graph-api",
        subcode=33, kind="GraphMethodException",
    )


def _session_error(subcode: int, message: str, transient: bool = False) -> GraphError:
    return GraphError(2650, message, subcode=subcode, transient=transient)


class _Store:
    """Members of one audience. A person is a flat tuple (key, value, key, value, ...) of non-empty fields."""

    __slots__ = ("persons", "index", "next_pid")

    def __init__(self) -> None:
        self.persons: dict[int, tuple[str, ...]] = {}
        # per strong key (and "_ROW" for weak-only persons): value -> person id
        self.index: dict[str, dict[str, int]] = {k: {} for k in (*STRONG_KEYS, "_ROW")}
        self.next_pid = 1

    def __len__(self) -> int:
        return len(self.persons)

    @staticmethod
    def _ids(person: tuple[str, ...]) -> list[tuple[str, str]]:
        ids = [(person[i], person[i + 1]) for i in range(0, len(person), 2) if person[i] in _STRONG]
        return ids or [("_ROW", "\x1f".join(person))]

    def _link(self, pid: int, person: tuple[str, ...]) -> None:
        self.persons[pid] = person
        for key, value in self._ids(person):
            self.index[key][value] = pid

    def _drop(self, pid: int) -> None:
        person = self.persons.pop(pid)
        for key, value in self._ids(person):
            if self.index[key].get(value) == pid:
                del self.index[key][value]

    def add(self, row: tuple[str, ...]) -> None:
        if len(row) == 2 and row[0] in _STRONG:  # fast path: one strong identifier
            index = self.index[row[0]]
            if row[1] in index:
                return  # that person already holds this value: nothing changes
            pid, self.next_pid = self.next_pid, self.next_pid + 1
            self.persons[pid] = row
            index[row[1]] = pid
            return
        ids = self._ids(row)
        found = {pid for key, value in ids if (pid := self.index[key].get(value)) is not None}
        if not found:
            pid, self.next_pid = self.next_pid, self.next_pid + 1
            self._link(pid, row)
            return
        merged: dict[str, str] = {}
        for pid in sorted(found):  # oldest first; the new row wins
            person = self.persons[pid]
            merged.update(zip(person[::2], person[1::2]))
        merged.update(zip(row[::2], row[1::2]))
        person = _flat(merged)
        for pid in found:
            self._drop(pid)
        self._link(min(found), person)

    def add_many(self, rows: list[tuple[str, ...]]) -> None:
        """``add`` each row in turn; a batch of new people all of one shape goes in at once."""
        if not self._add_new(rows):
            for row in rows:
                self.add(row)

    def _add_new(self, rows: list[tuple[str, ...]]) -> bool:
        """Add ``rows`` as new people, in order, when every identifier is unknown and distinct, so no row
        links to another person; returns False (adding nothing) otherwise."""
        columns = _strong_columns(rows)
        if columns is None:
            return False
        for key, values in columns:
            if len(set(values)) != len(values) or not self.index[key].keys().isdisjoint(values):
                return False
        pids = range(self.next_pid, self.next_pid + len(rows))
        self.persons.update(zip(pids, rows))
        for key, values in columns:
            self.index[key].update(zip(values, pids))
        self.next_pid += len(rows)
        return True

    def remove_many(self, rows: list[tuple[str, ...]]) -> None:
        """``remove`` each row in turn. Removing only unlinks, so the people found by looking every row up
        first are exactly those the rows remove one by one."""
        columns = _strong_columns(rows)
        if columns is None:
            columns = [(key, [value]) for row in rows for key, value in self._ids(row)]
        found = set()
        for key, values in columns:
            found.update(map(self.index[key].get, values))
        found.discard(None)
        for pid in found:
            self._drop(pid)

    def remove(self, row: tuple[str, ...]) -> None:
        for key, value in self._ids(row):
            pid = self.index[key].get(value)
            if pid is not None:
                self._drop(pid)

    def members(self) -> list[dict[str, str]]:
        return [dict(zip(p[::2], p[1::2])) for p in self.persons.values()]


_ORDER = {k: i for i, k in enumerate(MULTI_KEYS)}


def _strong_columns(rows: list[tuple[str, ...]]) -> list[tuple[str, tuple[str, ...]]] | None:
    """[(key, values)] when every row holds the same strong keys and nothing else, else None."""
    if not rows or len(set(map(len, rows))) != 1:
        return None
    columns = list(zip(*rows))
    keys = [column[0] for column in columns[::2]]
    if not _STRONG.issuperset(keys) or any(len(set(column)) != 1 for column in columns[::2]):
        return None  # weak fields link by the whole row (or not at all): the general path
    return list(zip(keys, columns[1::2]))


def _flat(member: Mapping[str, str]) -> tuple[str, ...]:
    """A person as a flat (key, value, ...) tuple in schema order, without empty values."""
    return tuple(itertools.chain.from_iterable(sorted(((k, v) for k, v in member.items() if v), key=lambda kv: _ORDER[kv[0]])))


@dataclass
class _Session:
    seq: int
    received: int = 0
    invalid: int = 0
    finished: bool = False
    started: float = field(default_factory=time.monotonic)
    replace: bool = False
    staging: _Store | None = None  # the membership a replace is building


@dataclass
class _Audience:
    id: str
    account_id: str
    name: str
    description: str = ""
    customer_file_source: str = "USER_PROVIDED_ONLY"
    time_created: int = field(default_factory=lambda: int(time.time()))
    time_updated: int = field(default_factory=lambda: int(time.time()))
    store: _Store = field(default_factory=_Store)
    sessions: dict[int, _Session] = field(default_factory=dict)
    replace: int | None = None  # session id of the replace in progress

    def replacing(self, now: float) -> bool:
        if self.replace is None:
            return False
        if now - self.sessions[self.replace].started > _REPLACE_TIMEOUT_S:
            self.replace = None  # abandoned: the old membership stays
            return False
        return True


@dataclass
class _Fault:
    times: int
    http_status: int | None = None
    error: GraphError | None = None


class MetaEmulator:
    """State and request handling for the Meta part of the sandbox (thread-safe)."""

    def __init__(self, token: str, app_secret: str | None = None) -> None:
        self.token = token
        self.app_secret = app_secret
        self.latency = 0.0
        self.hourly_call_budget: int | None = None
        """When set, more calls than this per ad account and hour get 80003, as the BUC limit does."""
        self._lock = threading.RLock()
        self.reset()

    # ----- test and admin API -------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._audiences: dict[str, _Audience] = {}
            self._faults: list[_Fault] = []
            self._usage: dict[str, tuple[float, int]] = {}  # account -> (window start, calls)
            self._next_id = 23850000000000001
            self.request_count = 0
            self.requests: list[tuple[str, str, int]] = []
            self.dirty = False

    def create_audience(self, audience_id: str | None = None, name: str = "sandbox audience", *,
                        ad_account_id: str | None = None, description: str = "",
                        customer_file_source: str = "USER_PROVIDED_ONLY") -> str:
        """Create a customer-file audience directly (no HTTP) unless it exists; returns its id.

        Without ``ad_account_id`` the audience answers calls made for any ad account and does not report
        an ``account_id``.
        """
        account = (ad_account_id or "").removeprefix("act_")
        with self._lock:
            if audience_id is None:
                audience_id, self._next_id = str(self._next_id), self._next_id + 1
            audience_id = str(audience_id)
            if not audience_id.isdigit() or not (account == "" or account.isdigit()):
                raise ValueError("audience and ad account ids are digits (the account may start with act_)")
            self._audiences.setdefault(audience_id, _Audience(audience_id, account, name, description, customer_file_source))
            self.dirty = True
            return audience_id

    def audiences(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": a.id, "account_id": a.account_id, "name": a.name, "count": len(a.store)} for a in self._audiences.values()]

    def members(self, audience_id: str) -> list[dict[str, str]]:
        """Current members of an audience, each {key: value} with multi-key names; KeyError if unknown."""
        with self._lock:
            return self._audiences[str(audience_id)].store.members()

    def inject(self, code: int = 80003, times: int = 2, status: int = 400, is_transient: bool = True,
               subcode: int | None = None, eta_minutes: int = 0, message: str | None = None) -> None:
        """Make the next ``times`` Graph requests fail with this Meta error."""
        subcode = subcode if subcode is not None else _THROTTLE_SUBCODES.get(code)
        text = message or _FAULT_MESSAGES.get(code, "An unknown error occurred")
        error = GraphError(int(code), text, subcode=subcode, status=int(status), transient=bool(is_transient),
                           eta_minutes=int(eta_minutes))
        with self._lock:
            self._faults.append(_Fault(int(times), error=error))

    def inject_http(self, status: int = 503, times: int = 1) -> None:
        """Make the next ``times`` Graph requests get an HTML error page, as a front end sends."""
        with self._lock:
            self._faults.append(_Fault(int(times), http_status=int(status)))

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as Meta throttles: HTTP 400, code 80003 (the ad account's Custom Audience
        call budget), and the wait in ``X-Business-Use-Case-Usage`` as ``estimated_time_to_regain_access``,
        which Meta states in whole minutes; returns that wait in seconds (``retry_after`` rounded up)."""
        minutes = max(1, math.ceil(retry_after / 60))
        self.inject(code=80003, times=1, eta_minutes=minutes)
        return minutes * 60.0

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """None: a Custom Audience holds membership only, no consent."""
        return None

    def to_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "next_id": self._next_id,
                "audiences": [
                    {"id": a.id, "account_id": a.account_id, "name": a.name, "description": a.description,
                     "customer_file_source": a.customer_file_source, "time_created": a.time_created,
                     "time_updated": a.time_updated, "members": a.store.members()}
                    for a in self._audiences.values()
                ],
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self.reset()
            self._next_id = int(state.get("next_id", self._next_id))
            for saved in state.get("audiences", []):
                item = dict(saved)
                members = item.pop("members", [])
                audience = _Audience(**item)
                for member in members:
                    audience.store.add(_flat(member))
                self._audiences[audience.id] = audience

    # ----- HTTP ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        """Serve one Graph request; returns (status, headers, body)."""
        if self.latency:
            time.sleep(self.latency)
        try:
            params: dict[str, Any] = _parse_params(query, body, content_type)
            unreadable = None
        except GraphError as exc:
            params, unreadable = {}, exc
        with self._lock:
            self.request_count += 1
            self.requests.append((method, path, _row_count(params)))
            if len(self.requests) > 100_000:
                del self.requests[:50_000]
            account = self._account_of(path)
            try:
                fault = self._take_fault()
                if fault is not None and fault.http_status is not None:
                    return fault.http_status, {"Content-Type": "text/html"}, _html(fault.http_status)
                if fault is not None and fault.error is not None:
                    raise fault.error
                if unreadable is not None:
                    raise unreadable
                self._count_call(account)
                self._authenticate(params)
                result = self._route(method, path, params)
            except GraphError as exc:
                eta = exc.eta_minutes if exc.code in _THROTTLE_CODES else None
                return exc.status, self._headers(account, eta), json.dumps(exc.body()).encode()
            return 200, self._headers(account), json.dumps(result).encode()

    def _take_fault(self) -> _Fault | None:
        while self._faults and self._faults[0].times <= 0:
            self._faults.pop(0)
        if not self._faults:
            return None
        self._faults[0].times -= 1
        return self._faults[0]

    def _account_of(self, path: str) -> str:
        match = _PATH.match(path)
        if not match:
            return "0"
        node = match.group(1)
        if node.startswith("act_"):
            return node[4:]
        audience = self._audiences.get(node)
        return audience.account_id or "0" if audience else "0"

    def _count_call(self, account: str) -> None:
        now = time.monotonic()
        start, calls = self._usage.get(account, (now, 0))
        if now - start > 3600:
            start, calls = now, 0
        self._usage[account] = (start, calls + 1)
        if self.hourly_call_budget is not None and calls + 1 > self.hourly_call_budget:
            eta = max(1, int((3600 - (now - start)) // 60))
            raise GraphError(80003, _FAULT_MESSAGES[80003], subcode=2446289, transient=True, eta_minutes=eta)

    def _headers(self, account: str, eta_minutes: int | None = None) -> dict[str, str]:
        _, calls = self._usage.get(account, (0.0, 0))
        audiences = sum(1 for a in self._audiences.values() if a.account_id == account)
        budget = self.hourly_call_budget or min(190_000 + 40 * audiences, 700_000)
        pct = min(100, -(-calls * 100 // budget)) if eta_minutes is None else 100
        usage = {"type": "custom_audience", "call_count": pct, "total_cputime": min(pct, 1), "total_time": min(pct, 1),
                 "estimated_time_to_regain_access": eta_minutes or 0}
        return {
            "Content-Type": "application/json; charset=UTF-8",
            "X-Business-Use-Case-Usage": json.dumps({account: [usage]}),
            "facebook-api-version": "v26.0",
        }

    def _authenticate(self, params: Mapping[str, Any]) -> None:
        token = params.get("access_token")
        if not token or token != self.token:
            raise GraphError(190, _FAULT_MESSAGES[190])
        if self.app_secret is not None:
            expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(str(params.get("appsecret_proof") or ""), expected):
                raise GraphError(100, "Invalid appsecret_proof provided in the API argument", kind="GraphMethodException")

    # ----- routing ------------------------------------------------------------------------------
    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        match = _PATH.match(path)
        if not match:
            raise GraphError(2500, f"Unknown path components: {path}")
        node, edge = match.groups()
        override = str(params.get("method", "")).upper()
        if method == "POST" and override in ("DELETE", "GET"):
            method = override
        if node.startswith("act_"):
            return self._account_route(method, node, edge, params)
        audience = self._audiences.get(node)
        if audience is None:
            raise _no_object(node, method)
        if edge is None and method == "GET":
            return _audience_fields(audience, params.get("fields"))
        if edge == "sessions" and method == "GET":
            return {"data": [{"session_id": sid, "num_received": s.received, "num_invalid_entries": s.invalid,
                              "stage": "finished" if s.finished else "uploading"} for sid, s in audience.sessions.items()]}
        if edge == "users" and method in ("POST", "DELETE"):
            return self._users(audience, "add" if method == "POST" else "remove", params)
        if edge == "usersreplace" and method == "POST":
            return self._replace(audience, params)
        if edge is None:
            raise _no_object(node, method)
        raise GraphError(2500, f"Unknown path components: /{edge}")

    def _account_route(self, method: str, node: str, edge: str | None, params: dict[str, Any]) -> dict[str, Any]:
        account = node[4:]
        if not account.isdigit():
            raise _no_object(node, method)
        if edge is None and method == "GET":
            return {"id": node, "account_id": account, "name": f"Sandbox ad account {account}", "account_status": 1, "currency": "USD"}
        if edge != "customaudiences":
            raise GraphError(2500, f"Unknown path components: /{edge}")
        if method == "GET":
            mine = [a for a in self._audiences.values() if a.account_id == account]
            return {"data": [_audience_fields(a, params.get("fields") or "id,name") for a in mine]}
        if method != "POST":
            raise _no_object(node, method)
        return {"id": self._create(account, params)}

    def _create(self, account: str, params: dict[str, Any]) -> str:
        name = params.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("The parameter name is required")
        subtype = params.get("subtype", "CUSTOM")
        if subtype != "CUSTOM":
            raise _invalid(f"The sandbox only emulates customer-file audiences (subtype CUSTOM), got {subtype!r}")
        source = params.get("customer_file_source")
        if source not in _FILE_SOURCES:
            raise _invalid(f"customer_file_source must be one of {sorted(_FILE_SOURCES)}")
        if sum(1 for a in self._audiences.values() if a.account_id == account) >= _MAX_AUDIENCES_PER_ACCOUNT:
            # The code is unverified; the limit of 500 customer-file audiences per account is documented.
            raise GraphError(2654, "Failed to create custom audience: the ad account holds 500 customer-file audiences")
        return self.create_audience(name=name, ad_account_id=account, description=str(params.get("description", "")),
                                    customer_file_source=source)

    # ----- membership ---------------------------------------------------------------------------
    def _users(self, audience: _Audience, op: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if audience.replacing(time.monotonic()):
            raise _session_error(1870145, "An update is in progress for this audience; try again later", transient=True)
        rows, invalid, samples = _validate(_json_param(params, "payload"))
        session = self._session(audience, _json_param(params, "session"), required=False, replace=False)
        if op == "add":
            audience.store.add_many(rows)
        else:
            audience.store.remove_many(rows)
        return self._result(audience, session, len(rows) + invalid, invalid, samples, "audience_id", audience.id)

    def _replace(self, audience: _Audience, params: Mapping[str, Any]) -> dict[str, Any]:
        rows, invalid, samples = _validate(_json_param(params, "payload"))
        session = self._session(audience, _json_param(params, "session"), required=True, replace=True)
        assert session is not None and session[1].staging is not None
        state = session[1]
        staging = state.staging
        staging.add_many(rows)
        if state.finished:  # the replace ends: members not sent in it are gone
            audience.store, state.staging, audience.replace = staging, None, None
        return self._result(audience, session, len(rows) + invalid, invalid, samples, "account_id", audience.account_id)

    def _result(self, audience: _Audience, session: tuple[int, _Session] | None, received: int, invalid: int,
                samples: dict[str, str], id_key: str, id_value: str) -> dict[str, Any]:
        audience.time_updated = int(time.time())
        self.dirty = True
        result: dict[str, Any] = {id_key: id_value}
        if session is not None:
            sid, state = session
            state.received += received
            state.invalid += invalid
            result.update(session_id=sid, num_received=state.received)
        else:
            result["num_received"] = received
        result.update(num_invalid_entries=invalid, invalid_entry_samples=samples)
        return result

    def _session(self, audience: _Audience, raw: Any, *, required: bool, replace: bool) -> tuple[int, _Session] | None:
        if raw is None:
            if required:
                raise _invalid("The parameter session is required")
            return None
        if not isinstance(raw, dict):
            raise _invalid("param session must be a JSON object")
        sid, seq, last = raw.get("session_id"), raw.get("batch_seq"), raw.get("last_batch_flag", False)
        if type(sid) is not int or not 0 < sid < 2**64:
            raise _invalid("session_id must be a positive 64-bit integer")
        if type(seq) is not int or seq < 1:
            raise _invalid("batch_seq must be a positive integer")
        if not isinstance(last, bool):
            raise _invalid("last_batch_flag must be a boolean")
        now = time.monotonic()
        state = audience.sessions.get(sid)
        if state is not None and state.replace != replace:
            raise _invalid(f"session {sid} was used on another edge of this audience")
        if state is None:
            if seq != 1:
                raise _session_error(1870147, "The first batch of a session must have batch_seq 1")
            if replace:
                if audience.replacing(now) and audience.replace != sid:
                    raise _session_error(1870145, "Another replace is in progress for this audience; try again later", transient=True)
                audience.replace = sid
            state = audience.sessions[sid] = _Session(seq=0, replace=replace, staging=_Store() if replace else None)
        if state.finished:
            raise _session_error(1870159, "This session has already finished (last_batch_flag was sent)")
        if now - state.started > _REPLACE_TIMEOUT_S:
            raise _session_error(1870158, "The session timed out (90 minutes without last_batch_flag)")
        if seq != state.seq + 1:
            raise _invalid(f"batch_seq {seq} out of order for session {sid}: expected {state.seq + 1}")
        state.seq, state.finished = seq, last
        if len(audience.sessions) > 1000:  # keep memory bounded: forget the oldest finished sessions
            for old in [s for s, st in audience.sessions.items() if st.finished][:500]:
                del audience.sessions[old]
        return sid, state


def _validate(payload: Any) -> tuple[list[tuple[str, ...]], int, dict[str, str]]:
    """Check the payload; return valid rows as flat tuples, the invalid count and samples {value: reason}."""
    if payload is None:
        raise _invalid("The parameter payload is required")
    if not isinstance(payload, dict):
        raise _invalid("param payload must be a JSON object")
    unknown = set(payload) - {"schema", "data", "is_raw", "app_ids", "page_ids", "data_source"}
    if unknown:
        raise _invalid(f"Unknown fields in payload: {sorted(unknown)}")
    schema, data = payload.get("schema"), payload.get("data")
    if not isinstance(data, list) or not data:
        raise _invalid("payload.data must be a non-empty array")
    if len(data) > MAX_ROWS:
        raise _invalid(f"Too many rows in one request: {len(data)}; at most {MAX_ROWS}")
    if isinstance(schema, str):
        if schema not in SINGLE_KEYS:
            raise _invalid(f"Invalid schema {schema!r}: expected one of {sorted(SINGLE_KEYS)} or a list of multi-key fields")
        return _validate_single(SINGLE_KEYS[schema], data)
    if not isinstance(schema, list) or not schema or any(not isinstance(k, str) or k not in _ORDER for k in schema) or len(set(schema)) != len(schema):
        raise _invalid(f"Invalid schema: expected a list of distinct fields from {list(MULTI_KEYS)}")
    return _validate_multi(schema, data)


def _check(key: str, value: Any) -> str | None:
    """The reason a non-empty value is invalid, or None."""
    if not isinstance(value, str):
        return f"{key}: not a string"
    if key == "EXTERN_ID":
        return None
    if key == "MADID":
        return None if _MADID(value) else "MADID: not a lowercase mobile advertiser id"
    return None if _HEX64(value) else f"{key}: not a lowercase hex SHA-256"


def _column_valid(key: str, values: Sequence[Any]) -> bool:
    """Whether every value is a string that is "" or valid for ``key``, checked over the whole column at once.

    True means no value has a reason from ``_check``; False means look value by value.
    """
    try:
        joined = "\n".join(values)
    except TypeError:  # a value that is not a string
        return False
    if key == "EXTERN_ID":
        return True
    if key == "MADID":
        return all(not v or _MADID(v) for v in values)
    # no value holds "\n" (the count), so each is "" or 64 characters, all lowercase hex
    return joined.count("\n") == len(values) - 1 and set(map(len, values)) <= {0, 64} and _HEX_LINES(joined) is not None


def _validate_single(key: str, data: list[Any]) -> tuple[list[tuple[str, ...]], int, dict[str, str]]:
    if _column_valid(key, data) and "" not in data:  # the usual batch: every value valid
        return list(zip(itertools.repeat(key), data)), 0, {}
    rows: list[tuple[str, ...]] = []
    invalid = 0
    samples: dict[str, str] = {}
    check = _HEX64 if key not in _UNHASHED else None
    for value in data:
        if check is not None and type(value) is str and check(value):
            rows.append((key, value))
            continue
        reason = "empty value" if value == "" else _check(key, value)
        if reason is None:
            rows.append((key, value))
            continue
        invalid += 1
        if len(samples) < _SAMPLES:
            samples[str(value)] = reason
    return rows, invalid, samples


def _validate_multi(schema: list[str], data: list[Any]) -> tuple[list[tuple[str, ...]], int, dict[str, str]]:
    width = len(schema)
    if set(map(type, data)) != {list} or set(map(len, data)) != {width}:  # JSON arrays are exactly list
        raise _invalid(f"Each payload.data row must be an array of {width} values aligned to the schema")
    order = sorted(range(width), key=lambda i: _ORDER[schema[i]])
    columns = list(zip(*data))
    if all(_column_valid(schema[i], columns[i]) for i in order):
        return _rows_of_valid(schema, order, columns)
    rows: list[tuple[str, ...]] = []
    invalid = 0
    samples: dict[str, str] = {}
    for row in data:
        flat: list[str] = []
        bad: tuple[str, str] | None = None
        for i in order:
            value = row[i]
            if value == "":
                continue
            key = schema[i]
            if key in _UNHASHED or type(value) is not str or not _HEX64(value):  # slow path: the rare keys and the bad values
                reason = _check(key, value)
                if reason is not None:
                    bad = (str(value), reason)
                    break
            flat += (key, value)
        if bad is None and not flat:
            bad = ("", "all values empty")
        if bad is not None:
            invalid += 1
            if len(samples) < _SAMPLES:
                samples[bad[0]] = bad[1]
            continue
        rows.append(tuple(flat))
    return rows, invalid, samples


def _rows_of_valid(schema: list[str], order: list[int], columns: list[tuple[str, ...]]) -> tuple[list[tuple[str, ...]], int, dict[str, str]]:
    """What ``_validate_multi`` returns for columns whose values are all valid or "": only empty rows fail."""
    interleaved = [part for i in order for part in (itertools.repeat(schema[i]), columns[i])]
    if not any("" in columns[i] for i in order):
        return list(zip(*interleaved)), 0, {}
    rows: list[tuple[str, ...]] = []
    invalid = 0
    for flat in zip(*interleaved):
        if "" in flat:
            flat = tuple(itertools.chain.from_iterable((k, v) for k, v in zip(flat[::2], flat[1::2]) if v))
            if not flat:
                invalid += 1
                continue
        rows.append(flat)
    return rows, invalid, {"": "all values empty"} if invalid else {}


def _audience_fields(audience: _Audience, fields: Any) -> dict[str, Any]:
    wanted = [f.strip() for f in str(fields or "id").split(",") if f.strip()]
    unknown = [f for f in wanted if f not in _AUDIENCE_FIELDS]
    if unknown:
        raise _invalid(f"Tried accessing nonexisting field ({unknown[0]}) on node type (CustomAudience)")
    count = len(audience.store)
    status = ({"code": 300, "description": "Replace in progress"} if audience.replacing(time.monotonic())
              else {"code": 200, "description": "Normal"})
    values = {
        "id": audience.id, "name": audience.name, "description": audience.description, "subtype": "CUSTOM",
        "customer_file_source": audience.customer_file_source, "account_id": audience.account_id,
        "operation_status": status, "approximate_count_lower_bound": count, "approximate_count_upper_bound": count,
        "time_created": audience.time_created, "time_updated": audience.time_updated,
    }
    if not audience.account_id:  # an audience made without an account answers for any account
        del values["account_id"]
    return {"id": audience.id} | {f: values[f] for f in wanted if f in values}


def _parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    if body:
        kind = content_type.split(";")[0].strip().lower()
        try:
            if kind == "application/json":
                loaded = json.loads(body)
                if not isinstance(loaded, dict):
                    raise ValueError("not an object")
                params.update(loaded)
            elif kind in ("application/x-www-form-urlencoded", ""):
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            elif kind == "multipart/form-data":
                params.update(_parse_multipart(body, content_type))
            else:
                raise ValueError(kind)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid(f"Could not parse the request body ({type(exc).__name__})") from None
    return params


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The form fields of a multipart/form-data body (RFC 7578), as ``curl -F`` and the SDK's ``files`` send them.

    A part with a ``filename`` is an uploaded file, not a parameter, so it is left out. Raises ValueError
    (or UnicodeDecodeError) on a body that does not follow the format.
    """
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"\r\n--" + (match.group(1) or match.group(2)).encode("ascii")
    parts = (b"\r\n" + body).split(delimiter)  # parts[0] is the preamble, which RFC 2046 says to ignore
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        raise ValueError("multipart body without its closing delimiter")
    fields: list[tuple[str, str]] = []
    for part in parts[1:-1]:
        head, end, value = part.partition(b"\r\n\r\n")
        padding, *headers = head.split(b"\r\n")
        if not end or padding.strip(b" \t"):
            raise ValueError("malformed multipart part")
        disposition = {}
        for line in headers:
            name, colon, text = line.partition(b":")
            if colon and name.strip().lower() == b"content-disposition":
                disposition = _form_data_params(text.decode("utf-8"))
        if "name" not in disposition:
            raise ValueError("multipart part without Content-Disposition: form-data; name=...")
        if "filename" not in disposition:
            fields.append((disposition["name"], value.decode("utf-8")))
    return fields


def _form_data_params(disposition: str) -> dict[str, str]:
    kind, _, rest = disposition.strip().partition(";")
    if kind.strip().lower() != "form-data":
        raise ValueError("multipart part is not form-data")
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _DISPOSITION_PARAM.finditer(rest)}


def _row_count(params: dict[str, Any]) -> int:
    """Rows in the payload, for the request log (0 when unreadable); keeps the parsed payload in ``params``."""
    payload = params.get("payload")
    if isinstance(payload, str):
        try:
            payload = params["payload"] = json.loads(payload)
        except ValueError:
            return 0  # reported as code 100 once the token is checked
    data = payload.get("data") if isinstance(payload, dict) else None
    return len(data) if isinstance(data, list) else 0


def _json_param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _invalid(f"param {name} must be JSON") from None
    return value


def _html(status: int) -> bytes:
    titles = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
    title = f"{status} {titles.get(status, 'Error')}"
    return f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n".encode()

