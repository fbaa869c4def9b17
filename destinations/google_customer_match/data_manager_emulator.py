"""A strict emulator of Google's Data Manager API audience endpoints (the sandbox's ``datamanager`` part).

Served under ``/datamanager`` on the sandbox port, so a destination with ``transport: data_manager`` and
``endpoint: http://127.0.0.1:8510/datamanager`` runs unchanged against it. Routes::

    POST /v1/audienceMembers:ingest            add members          -> {"requestId"}
    POST /v1/audienceMembers:remove            remove members       -> {"requestId"}
    GET  /v1/requestStatus:retrieve?requestId= PROCESSING on the first poll, then SUCCESS with
                                               uploadMatchRateRange (ingest) or a record count (remove)
    GET  /v1/accountTypes/GOOGLE_ADS/accounts/{account}/userLists/{id}
                                               the UserList (userLists.get), its sizeInfo included
    POST /_sandbox/userLists                   {"accountId", "userListId"?} -> {"userListId"} (no token)
    GET  /_sandbox/userLists/{id}              {"accountId", "userListId", "members": [...]} (no token)

Strictness (what Google documents, see ``destinations/google_customer_match`` for the sources):

- ``Authorization: Bearer <key>`` on every API call, else 401 UNAUTHENTICATED. The key is the
  emulator's ``key`` (``$SANDBOX_DATAMANAGER_KEY`` or ``sandbox-datamanager-key``).
- Unknown JSON fields are refused (400, as Google's front end does), so a typo in a client shows up.
- 1-10 destinations, each ``operatingAccount{accountType: GOOGLE_ADS, accountId}`` and a
  ``productDestinationId`` naming a user list created in the emulator (else INVALID_USER_LIST_ID);
  an account linked under a manager (``link_manager``) needs ``loginAccount`` = that manager, else 403.
- 1-10,000 ``audienceMembers`` (TOO_MANY_AUDIENCE_MEMBERS), each with exactly one of ``userData``
  (1-10 ``userIdentifiers``, TOO_MANY_USER_IDENTIFIERS) or ``mobileData`` (1-10 ``mobileIds``); both
  kinds in one request is MULTIPLE_DATA_TYPES_NOT_ALLOWED. ``encoding`` (HEX or BASE64) is required
  with userData; every hashed value must decode to 32 bytes (INVALID_HEX_ENCODING,
  INVALID_SHA256_FORMAT). Ingest needs ``termsOfService.customerMatchTermsOfServiceStatus: ACCEPTED``
  (TERMS_AND_CONDITIONS_NOT_SIGNED).
- Fast fail, as the real API: one bad member fails the whole request (400 INVALID_ARGUMENT with a
  ``google.rpc.BadRequest`` field violation per bad member, ``audience_members.audience_members[i]``)
  and nothing is applied.
- A member whose ``adUserData`` consent (its own, else the request's) is CONSENT_DENIED is accepted
  but not added, as Google drops data it may not use.
- A user list matches members by one upload key type (``create_user_list(..., upload_key_type=)``,
  CONTACT_INFO by default, as the Google Ads API's ``CrmBasedUserListInfo.upload_key_type``: "Mixed data
  types are not allowed on the same list"): CONTACT_INFO takes ``userData``, MOBILE_ADVERTISING_ID
  ``mobileData``, CRM_ID neither (the Data Manager API has no field for a CRM id). Members of another type
  fail the request, each named by a field violation with reason INVALID_USER_LIST_TYPE (ErrorReason: "The
  user list type isn't applicable for this request"); that Google names the members rather than the
  request is this emulator's reading of the fast-fail model [U].
- ``userLists.get`` (developers.google.com/data-manager/api/reference/rest/v1/accountTypes.accounts.userLists/get):
  the optional ``login-account`` header (``accountTypes/{type}/accounts/{id}``, else the path's account) must
  be the manager of a linked account, else 403; an account the emulator holds no list of is 403
  PERMISSION_DENIED ("The user does not have permission or the resource is not found", ErrorReason); a list the
  account does not hold (unknown, or another account's) is 404 NOT_FOUND with ErrorInfo reason NOT_FOUND.
- Size (``sizeInfo``, ``SizeInfo`` in googleapis ``google/ads/datamanager/v1/user_list.proto``):
  ``searchNetworkMembersCount`` and ``displayNetworkMembersCount`` both count the list's persons that
  ``Membership.matches``, from the members it holds now, as the Google Ads emulator's ``user_list_size`` does
  (Google counts people it matched, not rows uploaded). They are plain ``int64`` (no presence), so JSON strings,
  and a zero is left out as proto3 JSON does: "not determined yet" and 0 look the same. Members land at once
  here, and the size with them (hours on Google).
- Faults: ``inject_http(429, retry_after=...)`` answers RESOURCE_EXHAUSTED in Google's error format, naming
  the quota the request counts against (``quota_limit``: IngestionMutateRequestsPerMinutePerProject for
  ingest and remove, IngestionReadRequestsPerMinutePerProject for requestStatus, ManagementReadRequests
  PerMinutePerProject for userLists.get: developers.google.com/data-manager/api/devguides/limits); 500/503
  answer INTERNAL/UNAVAILABLE.

Membership (``Membership``, shared with the Google Ads gRPC emulator): a member is the set of its
identifiers (hashed email, hashed phone, address = first+last name+country+postal code, mobile id,
third-party user id). Adding a member that shares any identifier with held ones merges them; removing
drops every held member sharing any identifier. Changes apply at once (the real API takes hours).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from destinations.emulation import Emulator, Request, Response

__all__ = ["DataManagerEmulator", "MAX_MEMBERS", "MAX_IDENTIFIERS", "Membership", "match_rate_bucket"]

MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
DOMAIN = "datamanager.googleapis.com"
_HEX = re.compile(r"[0-9a-fA-F]+").fullmatch
_DIGITS = re.compile(r"\d{1,20}").fullmatch
_REGION = re.compile(r"[A-Z]{2}").fullmatch
_MOBILE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}").fullmatch
_INGEST_KEYS = {"destinations", "audienceMembers", "consent", "validateOnly", "encoding", "encryptionInfo", "termsOfService"}
_REMOVE_KEYS = {"destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"}
_MEMBER_KEYS = {"destinationReferences", "consent", "userData", "pairData", "mobileData"}
_CONSENT = {"CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"}
_ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER"}
_ADDRESS_KEYS = ("hashed_first_name", "hashed_last_name", "country_code", "postal_code")
UPLOAD_KEY_TYPES = ("CONTACT_INFO", "CRM_ID", "MOBILE_ADVERTISING_ID")
_KEY_TYPE_DATA = {"CONTACT_INFO": {"userData"}, "MOBILE_ADVERTISING_ID": {"mobileData"}, "CRM_ID": set()}
_USER_LIST_PATH = re.compile(r"/v1/accountTypes/([^/]+)/accounts/([^/]+)/userLists/([^/]+)").fullmatch
_LOGIN_ACCOUNT = re.compile(r"accountTypes/([A-Z_]+)/accounts/(\d{1,20})").fullmatch
_UPLOAD_KEY_NAMES = {"CONTACT_INFO": "CONTACT_ID", "MOBILE_ADVERTISING_ID": "MOBILE_ID", "CRM_ID": "USER_ID"}
_QUOTAS = (("/v1/audienceMembers", "IngestionMutate"), ("/v1/requestStatus", "IngestionRead"), ("/v1/accountTypes/", "ManagementRead"))
_STATUS_TEXT = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


# ----- membership shared by both Google emulators ---------------------------------------------------

def match_rate_bucket(rate: float, prefix: str = "MATCH_RANGE_") -> str:
    """Google's match-rate range name for a fraction 0..1 (Ads API ``MATCH_RANGE_``, DM ``MATCH_RATE_RANGE_``)."""
    pct = rate * 100
    if pct < 20:
        return prefix + "LESS_THAN_20"
    for low, high in ((20, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, 80), (81, 90)):
        if pct < high + 1:
            return f"{prefix}{low}_TO_{high}"
    return prefix + "91_TO_100"


class Membership:
    """The members of one user list, as sets of (kind, value) identifiers. Not thread-safe: lock outside."""

    __slots__ = ("persons", "index", "next_id", "match_rate")

    def __init__(self, match_rate: float = 0.65) -> None:
        self.persons: dict[int, frozenset[tuple[str, str]]] = {}
        self.index: dict[tuple[str, str], int] = {}
        self.next_id = 1
        self.match_rate = match_rate

    def __len__(self) -> int:
        return len(self.persons)

    def add(self, ids: Iterable[tuple[str, str]]) -> None:
        ids = frozenset(ids)
        found = {pid for pair in ids if (pid := self.index.get(pair)) is not None}
        if len(found) == 1 and ids <= self.persons[next(iter(found))]:
            return  # already held as is
        merged = set(ids)
        for pid in found:
            merged |= self._drop(pid)
        pid = min(found) if found else self.next_id
        if not found:
            self.next_id += 1
        self.persons[pid] = frozenset(merged)
        for pair in merged:
            self.index[pair] = pid

    def remove(self, ids: Iterable[tuple[str, str]]) -> int:
        """Drop every member sharing an identifier; returns how many were dropped."""
        dropped = {pid for pair in ids if (pid := self.index.get(pair)) is not None}
        for pid in dropped:
            self._drop(pid)
        return len(dropped)

    def _drop(self, pid: int) -> frozenset[tuple[str, str]]:
        person = self.persons.pop(pid)
        for pair in person:
            if self.index.get(pair) == pid:
                del self.index[pair]
        return person

    def matches(self, ids: Iterable[tuple[str, str]]) -> bool:
        """Whether Google would match this member to an account (deterministic, ``match_rate`` of them)."""
        digest = hashlib.sha256("\x1e".join(sorted(f"{k}\x1f{v}" for k, v in ids)).encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.match_rate

    def members(self) -> list[dict[str, Any]]:
        """Held members: kind -> value (a sorted tuple when a kind has several); address as a dict."""
        out = []
        for person in self.persons.values():
            view: dict[str, Any] = {}
            for kind, value in sorted(person):
                shown: Any = dict(zip(_ADDRESS_KEYS, value.split("\x1f"))) if kind == "address" else value
                if kind in view:
                    previous = view[kind] if isinstance(view[kind], tuple) else (view[kind],)
                    shown = (*previous, shown)
                view[kind] = shown
            out.append(view)
        return out

    def to_state(self) -> list[list[list[str]]]:
        return [sorted([k, v] for k, v in person) for person in self.persons.values()]

    @classmethod
    def from_state(cls, state: Iterable[Iterable[Iterable[str]]], match_rate: float = 0.65) -> "Membership":
        membership = cls(match_rate)
        for person in state:
            membership.add((k, v) for k, v in person)
        return membership


def address_id(first: str, last: str, country: str, postal: str) -> tuple[str, str]:
    return ("address", "\x1f".join((first.lower(), last.lower(), country, postal)))


# ----- errors ---------------------------------------------------------------------------------------

class ApiError(Exception):
    """A Data Manager error response (google.rpc.Status in JSON)."""

    def __init__(self, status: int, message: str, reason: str | None = None,
                 violations: list[dict[str, str]] | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason
        self.violations, self.metadata = violations or [], dict(metadata or {})

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response(self.status, error_body(self.status, self.message, self.reason, self.violations, self.metadata),
                        headers or {})


def error_body(status: int, message: str, reason: str | None = None, violations: list[dict[str, str]] | None = None,
               metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if reason:
        info: dict[str, Any] = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": DOMAIN}
        if metadata:
            info["metadata"] = dict(metadata)
        details.append(info)
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
    return {"error": {"code": status, "message": message, "status": _STATUS_TEXT.get(status, "UNKNOWN"), "details": details}}


def _invalid(violations: list[dict[str, str]]) -> ApiError:
    return ApiError(400, "There was a problem with the request.", "INVALID_ARGUMENT", violations)


def _violation(field: str, reason: str, description: str = "") -> dict[str, str]:
    found = {"field": field, "reason": reason}
    if description:
        found["description"] = description
    return found


# ----- the emulator ---------------------------------------------------------------------------------

class DataManagerEmulator(Emulator):
    """Data Manager API audience ingestion: user lists keyed by (operating account, user list id)."""

    name = "datamanager"
    default_key = "sandbox-datamanager-key"

    def reset_state(self) -> None:
        self.user_lists: dict[str, tuple[str, Membership]] = {}  # user list id -> (account id, members)
        self.upload_key_types: dict[str, str] = {}  # user list id -> CONTACT_INFO, CRM_ID or MOBILE_ADVERTISING_ID
        self.managers: dict[str, str] = {}  # account id -> manager account id required as loginAccount
        self.statuses: dict[str, dict[str, Any]] = {}  # request id -> status record
        self.bodies: list[dict[str, Any]] = []  # the last 20 ingest/remove bodies, for tests
        self.match_rate = 0.65
        if not hasattr(self, "_serving"):
            self._serving = threading.local()  # the path each server thread is answering, for the quota it counts against
        for spec in filter(None, os.environ.get("SANDBOX_DATAMANAGER_USER_LISTS", "").split(",")):
            account, _, list_id = spec.strip().rpartition(":")
            self.create_user_list(account or "1234567890", list_id)

    # ----- test and admin API -------------------------------------------------------------------
    def create_user_list(self, account_id: str, user_list_id: str | None = None, upload_key_type: str = "CONTACT_INFO") -> str:
        """Create an empty Customer Match user list owned by ``account_id`` matching members by
        ``upload_key_type`` (CONTACT_INFO, CRM_ID or MOBILE_ADVERTISING_ID); returns its id."""
        account_id = str(account_id).replace("-", "")
        if upload_key_type not in UPLOAD_KEY_TYPES:
            raise ValueError(f"unknown upload key type {upload_key_type!r}")
        with self.lock:
            list_id = str(user_list_id or (max((int(i) for i in self.user_lists), default=9000) + 1))
            if not _DIGITS(account_id) or not _DIGITS(list_id):
                raise ValueError("account and user list ids are digits")
            self.user_lists.setdefault(list_id, (account_id, Membership(self.match_rate)))
            self.upload_key_types.setdefault(list_id, upload_key_type)
            self.dirty = True
            return list_id

    def link_manager(self, manager_id: str, account_id: str) -> None:
        """From now on ``account_id`` is reachable only with ``loginAccount`` = ``manager_id``."""
        with self.lock:
            self.managers[str(account_id).replace("-", "")] = str(manager_id).replace("-", "")

    def members(self, user_list_id: str) -> list[dict[str, Any]]:
        """Members held by a user list (see ``Membership.members``)."""
        with self.lock:
            return self.user_lists[str(user_list_id)][1].members()

    def user_list_size(self, user_list_id: str) -> int:
        """What ``sizeInfo`` of a list says now (both networks): the persons it holds that Google matched."""
        with self.lock:
            members = self.user_lists[str(user_list_id)][1]
            return sum(members.matches(person) for person in members.persons.values())

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"user_lists": {i: {"account_id": a, "members": m.to_state(), "upload_key_type": self.upload_key_types[i]}
                                   for i, (a, m) in self.user_lists.items()},
                    "managers": dict(self.managers)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.user_lists = {i: (v["account_id"], Membership.from_state(v.get("members", []), self.match_rate))
                               for i, v in state.get("user_lists", {}).items()}
            self.upload_key_types = {i: v.get("upload_key_type", "CONTACT_INFO") for i, v in state.get("user_lists", {}).items()}
            self.managers = dict(state.get("managers", {}))

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.request_count,
                    "user_lists": [{"account_id": a, "user_list_id": i, "count": len(m)} for i, (a, m) in self.user_lists.items()]}

    # ----- HTTP ---------------------------------------------------------------------------------
    def rows_in(self, request: Request) -> int:
        if request.method != "POST" or not request.path.startswith("/v1/audienceMembers"):
            return 0
        try:
            members = request.json().get("audienceMembers")
        except (ValueError, AttributeError):
            return 0
        return len(members) if isinstance(members, list) else 0

    def serve(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        self._serving.path = request.path
        return super().serve(request)

    def fault_body(self, status: int) -> Any:
        if status == 429:
            path = getattr(self._serving, "path", "")
            quota = next((name for prefix, name in _QUOTAS if path.startswith(prefix)), "IngestionMutate")
            words = re.sub(r"(?<!^)([A-Z])", r" \1", quota).lower()
            return error_body(429, f"Quota exceeded for quota metric '{words.capitalize()} requests' and limit"
                              f" '{words.capitalize()} requests per minute per project'.", "RESOURCE_EXHAUSTED",
                              metadata={"quota_limit": f"{quota}RequestsPerMinutePerProject"})
        if status >= 500:
            return error_body(status, "Internal error encountered." if status == 500 else "The service is currently unavailable.",
                              "INTERNAL_ERROR" if status == 500 else None)
        return error_body(status, f"injected HTTP {status}")

    def bad_request(self, message: str) -> Response:
        return Response(400, error_body(400, f"Invalid JSON payload received. {message}"))

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/_sandbox/"):
            return self._admin(request.method, path, request)
        try:
            self._authenticate(request)
            if request.method == "POST" and path in ("/v1/audienceMembers:ingest", "/v1/audienceMembers:remove"):
                return self._audience_members(path.endswith(":ingest"), request.json())
            if request.method == "GET" and path == "/v1/requestStatus:retrieve":
                return self._request_status(request.params().get("requestId", [""])[0])
            if request.method == "GET" and (found := _USER_LIST_PATH(path)):
                return self._user_list(*found.groups(), login_header=request.headers.get("login-account"))
        except ApiError as exc:
            return exc.response()
        return Response(404, error_body(404, f"Method not found: {request.method} {request.path}"))

    def _admin(self, method: str, path: str, request: Request) -> Response:
        if method == "POST" and path == "/_sandbox/userLists":
            data = request.json() or {}
            try:
                list_id = self.create_user_list(str(data.get("accountId", "1234567890")), data.get("userListId") and str(data["userListId"]),
                                                str(data.get("uploadKeyType", "CONTACT_INFO")))
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
            return Response(200, {"userListId": list_id})
        if method == "GET" and path.startswith("/_sandbox/userLists/"):
            list_id = path.rsplit("/", 1)[1]
            if list_id not in self.user_lists:
                return Response(404, {"error": f"unknown user list {list_id}"})
            return Response(200, {"accountId": self.user_lists[list_id][0], "userListId": list_id,
                                  "uploadKeyType": self.upload_key_types[list_id], "members": self.members(list_id)})
        return Response(404, {"error": f"unknown sandbox endpoint {method} {path}"})

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {self.key}":
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login"
                           " cookie or other valid authentication credential.",
                           "ACCESS_TOKEN_TYPE_UNSUPPORTED" if header else "CREDENTIALS_MISSING")

    def _audience_members(self, ingest: bool, body: Any) -> Response:
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        self.bodies = [*self.bodies[-19:], body]
        unknown = set(body) - (_INGEST_KEYS if ingest else _REMOVE_KEYS)
        if unknown:
            raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\": Cannot find field.")
        lists = self._destinations(body.get("destinations"))
        members = body.get("audienceMembers")
        if not isinstance(members, list) or not members:
            raise _invalid([_violation("audience_members", "REQUIRED_FIELD_MISSING")])
        if len(members) > MAX_MEMBERS:
            raise _invalid([_violation("audience_members", "TOO_MANY_AUDIENCE_MEMBERS",
                                       f"Maximum number of audience members allowed per request is {MAX_MEMBERS:,}.")])
        if ingest and (body.get("termsOfService") or {}).get("customerMatchTermsOfServiceStatus") != "ACCEPTED":
            raise ApiError(400, "Required terms and conditions are not accepted.", "TERMS_AND_CONDITIONS_NOT_SIGNED")
        request_consent = _consent(body.get("consent"), "consent")
        parsed = self._parse_members(members, body.get("encoding"))
        self._check_key_types(lists, members)
        if body.get("validateOnly"):
            return Response(200, {"requestId": str(uuid.uuid4())})
        request_id = str(uuid.uuid4())
        with self.lock:
            for list_id in lists:
                membership = self.user_lists[list_id][1]
                for ids, consent in parsed:
                    if not ingest:
                        membership.remove(ids)
                    elif (consent or request_consent) != "CONSENT_DENIED":
                        membership.add(ids)
            matched = sum(self.user_lists[lists[0]][1].matches(ids) for ids, _ in parsed)
            self.statuses[request_id] = {"ingest": ingest, "lists": lists, "polls": 0, "records": len(parsed),
                                         "identifiers": sum(len(ids) for ids, _ in parsed), "rate": matched / len(parsed)}
        return Response(200, {"requestId": request_id})

    def _destinations(self, destinations: Any) -> list[str]:
        if not isinstance(destinations, list) or not destinations:
            raise _invalid([_violation("destinations", "REQUIRED_FIELD_MISSING")])
        if len(destinations) > MAX_DESTINATIONS:
            raise _invalid([_violation("destinations", "TOO_MANY_DESTINATIONS")])
        lists = []
        for i, dest in enumerate(destinations):
            where = f"destinations[{i}]"
            if not isinstance(dest, dict) or set(dest) - {"reference", "loginAccount", "linkedAccount", "operatingAccount", "productDestinationId"}:
                raise ApiError(400, f"Invalid JSON payload received. Unknown name in {where}.")
            account = _account(dest.get("operatingAccount"), f"{where}.operating_account")
            login = _account(dest["loginAccount"], f"{where}.login_account") if dest.get("loginAccount") else account
            list_id = str(dest.get("productDestinationId") or "")
            known = self.user_lists.get(list_id)
            if known is None or known[0] != account:
                if account not in {a for a, _ in self.user_lists.values()}:
                    raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")
                raise _invalid([_violation(f"{where}.product_destination_id", "INVALID_USER_LIST_ID", "User list is not valid.")])
            if login != self.managers.get(account, account):  # a managed account is reached through its manager
                raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")
            lists.append(list_id)
        return lists

    def _parse_members(self, members: list[Any], encoding: Any) -> list[tuple[frozenset[tuple[str, str]], str | None]]:
        violations: list[dict[str, str]] = []
        parsed: list[tuple[frozenset[tuple[str, str]], str | None]] = []
        kinds = {k for m in members if isinstance(m, dict) for k in ("userData", "mobileData") if k in m}
        if len(kinds) > 1:
            raise _invalid([_violation("audience_members", "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
                                       "Multiple data types are not allowed to be ingested in a single request.")])
        if "userData" in kinds and encoding not in ("HEX", "BASE64"):
            raise _invalid([_violation("encoding", "REQUIRED_FIELD_MISSING" if encoding is None else "INVALID_ENUM_VALUE")])
        for i, member in enumerate(members):
            where = f"audience_members.audience_members[{i}]"
            try:
                parsed.append(_member(member, where, encoding))
            except _Violation as exc:
                violations.append(_violation(exc.field, exc.reason, exc.description))
        if violations:
            raise _invalid(violations)
        return parsed

    def _check_key_types(self, lists: list[str], members: list[Any]) -> None:
        """Refuse members a destination list cannot hold: another upload key type than its own."""
        violations = []
        for i, member in enumerate(members):
            data_type = "mobileData" if "mobileData" in member else "userData"
            if any(data_type not in _KEY_TYPE_DATA[self.upload_key_types[list_id]] for list_id in lists):
                violations.append(_violation(f"audience_members.audience_members[{i}]", "INVALID_USER_LIST_TYPE",
                                             "The user list type isn't applicable for this request."))
        if violations:
            raise _invalid(violations)

    def _user_list(self, account_type: str, account: str, list_id: str, login_header: str | None) -> Response:
        """userLists.get: who may read the list, then the UserList as Google's JSON shows it."""
        if account_type not in _ACCOUNT_TYPES or not _DIGITS(account) or not _DIGITS(list_id):
            raise _invalid([_violation("name", "INVALID_ARGUMENT", "Expected accountTypes/{type}/accounts/{id}/userLists/{id}.")])
        login = _LOGIN_ACCOUNT(login_header) if login_header else None
        if login_header and not login:
            raise _invalid([_violation("login-account", "INVALID_ARGUMENT", "Expected accountTypes/{type}/accounts/{id}.")])
        login_as = login.groups() if login else (account_type, account)
        with self.lock:
            held = {a for a, _ in self.user_lists.values()}
            if account_type != "GOOGLE_ADS" or account not in held or login_as != ("GOOGLE_ADS", self.managers.get(account, account)):
                raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")
            known = self.user_lists.get(list_id)
            if known is None or known[0] != account:
                raise ApiError(404, f"User list {list_id} was not found.", "NOT_FOUND")
            size = self.user_list_size(list_id)
            key_type = self.upload_key_types[list_id]
        sizes = {"displayNetworkMembersCount": str(size), "searchNetworkMembersCount": str(size)} if size else {}
        return Response(200, {
            "name": f"accountTypes/GOOGLE_ADS/accounts/{account}/userLists/{list_id}", "id": list_id,
            "displayName": f"sandbox list {list_id}", "membershipStatus": "OPEN", "accessReason": "OWNED",
            "sizeInfo": sizes, "targetNetworkInfo": {"eligibleForDisplay": True, "eligibleForSearch": True},
            "ingestedUserListInfo": {"uploadKeyTypes": [_UPLOAD_KEY_NAMES[key_type]]}})

    def _request_status(self, request_id: str) -> Response:
        with self.lock:
            record = self.statuses.get(request_id)
            if record is None:
                raise ApiError(404, f"Request {request_id!r} was not found.", "NOT_FOUND")
            record["polls"] += 1
            done = record["polls"] > 1
            per = []
            for list_id in record["lists"]:
                status: dict[str, Any] = {
                    "destination": {"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": self.user_lists[list_id][0]},
                                    "productDestinationId": list_id},
                    "requestStatus": "SUCCESS" if done else "PROCESSING",
                }
                if done and record["ingest"]:
                    status["audienceMembersIngestionStatus"] = {"userDataIngestionStatus": {
                        "recordCount": str(record["records"]), "userIdentifierCount": str(record["identifiers"]),
                        "uploadMatchRateRange": match_rate_bucket(record["rate"], "MATCH_RATE_RANGE_")}}
                elif done:
                    status["audienceMembersRemovalStatus"] = {"userDataRemovalStatus": {
                        "recordCount": str(record["records"]), "userIdentifierCount": str(record["identifiers"])}}
                per.append(status)
        return Response(200, {"requestStatusPerDestination": per})


class _Violation(Exception):
    def __init__(self, field: str, reason: str, description: str = "") -> None:
        super().__init__(reason)
        self.field, self.reason, self.description = field, reason, description


def _account(value: Any, where: str) -> str:
    if not isinstance(value, dict) or value.get("accountType") not in _ACCOUNT_TYPES or not _DIGITS(str(value.get("accountId", ""))):
        raise _invalid([_violation(where, "INVALID_ARGUMENT", "accountType and a digits-only accountId are required.")])
    return str(value["accountId"])


def _consent(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"adUserData", "adPersonalization"} or any(v not in _CONSENT for v in value.values()):
        raise _invalid([_violation(where, "INVALID_ENUM_VALUE")])
    return value.get("adUserData")


def _member(member: Any, where: str, encoding: Any) -> tuple[frozenset[tuple[str, str]], str | None]:
    if not isinstance(member, dict) or set(member) - _MEMBER_KEYS:
        raise _Violation(where, "INVALID_AUDIENCE_MEMBER")
    consent = member.get("consent")
    if consent is not None and (not isinstance(consent, dict) or any(v not in _CONSENT for v in consent.values())):
        raise _Violation(f"{where}.consent", "INVALID_ENUM_VALUE")
    if "mobileData" in member:
        mobile_ids = (member["mobileData"] or {}).get("mobileIds") if isinstance(member["mobileData"], dict) else None
        if not isinstance(mobile_ids, list) or not mobile_ids:
            raise _Violation(f"{where}.mobile_data.mobile_ids", "REQUIRED_FIELD_MISSING")
        if len(mobile_ids) > MAX_IDENTIFIERS:
            raise _Violation(f"{where}.mobile_data.mobile_ids", "TOO_MANY_USER_IDENTIFIERS")
        if not all(isinstance(m, str) and _MOBILE_ID(m) for m in mobile_ids):
            raise _Violation(f"{where}.mobile_data.mobile_ids", "INVALID_MOBILE_ID_FORMAT")
        return frozenset(("mobile_id", m.lower()) for m in mobile_ids), (consent or {}).get("adUserData")
    user_data = member.get("userData")
    identifiers = user_data.get("userIdentifiers") if isinstance(user_data, dict) else None
    if not isinstance(identifiers, list) or not identifiers:
        raise _Violation(where, "REQUIRED_FIELD_MISSING", "userData, mobileData or another data field is required.")
    if len(identifiers) > MAX_IDENTIFIERS:
        raise _Violation(f"{where}.user_data.user_identifiers", "TOO_MANY_USER_IDENTIFIERS",
                         f"Maximum number of user identifiers allowed per audience member is {MAX_IDENTIFIERS}.")
    ids = frozenset(_identifier(ident, f"{where}.user_data.user_identifiers", where, encoding) for ident in identifiers)
    return ids, (consent or {}).get("adUserData")


def _identifier(ident: Any, field: str, member_field: str, encoding: str) -> tuple[str, str]:
    if not isinstance(ident, dict) or len(ident) != 1:
        raise _Violation(field, "INVALID_FORMAT", "Exactly one identifier must be set.")
    (kind, value), = ident.items()
    if kind == "emailAddress":
        return "hashed_email", _sha256(value, encoding, field, member_field)
    if kind == "phoneNumber":
        return "hashed_phone_number", _sha256(value, encoding, field, member_field)
    if kind == "address" and isinstance(value, dict):
        if set(value) - {"givenName", "familyName", "regionCode", "postalCode"}:
            raise _Violation(f"{field}.address", "INVALID_FORMAT")
        region, postal = value.get("regionCode", ""), value.get("postalCode", "")
        if not isinstance(region, str) or not _REGION(region):
            raise _Violation(f"{field}.address.region_code", "INVALID_COUNTRY_CODE")
        if not isinstance(postal, str) or not postal.strip():
            raise _Violation(f"{field}.address.postal_code", "INVALID_POSTAL_CODE")
        first = _sha256(value.get("givenName", ""), encoding, f"{field}.address.given_name", member_field)
        last = _sha256(value.get("familyName", ""), encoding, f"{field}.address.family_name", member_field)
        return address_id(first, last, region, postal)
    raise _Violation(field, "INVALID_FORMAT", f"Unknown identifier {kind!r}.")


def _sha256(value: Any, encoding: str, field: str, member_field: str) -> str:
    """The value as lowercase hex of a 32-byte digest, or the documented violation."""
    if not isinstance(value, str) or not value:
        raise _Violation(field, "REQUIRED_FIELD_MISSING")
    if encoding == "HEX":
        if not _HEX(value) or len(value) % 2:
            raise _Violation(field, "INVALID_HEX_ENCODING", "Value is not hex encoded.")
        raw = bytes.fromhex(value)
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _Violation(field, "INVALID_BASE64_ENCODING") from None
    if len(raw) != 32:
        raise _Violation(member_field, "INVALID_SHA256_FORMAT")
    return raw.hex()
