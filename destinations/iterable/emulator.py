"""A strict emulator of Iterable's list API (the sandbox's ``iterable`` part).

Served under ``/iterable`` on the sandbox port, so a destination's ``endpoint`` is
``http://127.0.0.1:PORT/iterable`` and the connector calls ``.../iterable/api/lists/subscribe``.

Routes::

    GET  /api/lists                     {"lists": [{"id", "name", "createdAt", "listType"}]}
    GET  /api/lists/getUsers?listId=N   text/plain, one email (or userId, for users without one) per line;
                                        no pages (the whole list); listId required (400 BadParams)
    POST /api/lists/subscribe           {listId, subscribers: [{email | userId, dataFields?, preferUserId?}],
                                         updateExistingUsersOnly?}
    POST /api/lists/unsubscribe         {listId, subscribers: [{email | userId}], campaignId?, channelUnsubscribe?}

What it keeps, in separate compartments (so a test can prove a list removal never touched consent):

    users          email, userId, forgotten (GDPR-deleted: every later call on them fails "forgotten")
    consent        per user: unsubscribedChannelIds, unsubscribedMessageTypeIds, subscribedMessageTypeIds.
                   ``channelUnsubscribe: true`` on a list unsubscribe adds the list's channel to
                   unsubscribedChannelIds (Iterable: "essentially a global unsubscribe"); nothing else does.
    lists          list id -> members

Strictness:

- ``Api-Key`` header on every call (401 ``{"code": "BadApiKey"}`` otherwise); JSON bodies with
  ``Content-Type: application/json`` (400 ``BadJsonBody``); ``listId`` an integer of an existing list
  (404 ``NotFound`` otherwise); at most ``max_subscribers`` (1,000) subscribers per call (400
  ``BatchTooLarge``); each subscriber an object with ``email`` or ``userId`` (400 ``BadParams``).
- Per subscriber, 200 with ``{"successCount", "failCount", "failedUpdates": {...}}`` listing the failed
  values (lowercased) under the ten keys invalidEmails, invalidUserIds, notFoundEmails, notFoundUserIds,
  forgottenEmails, forgottenUserIds, conflictEmails, conflictUserIds, invalidDataEmails,
  invalidDataUserIds. An email must look like local@domain.tld; a userId must be non-empty without
  surrounding whitespace.
- Subscribe creates unknown users by email (an email-based project), and by userId only with
  ``preferUserId: true``; ``updateExistingUsersOnly: true`` reports unknown users as notFound instead.
  An email whose user holds another userId than the one sent is a conflict. Unsubscribe of an unknown
  user is notFound; of a known user not on the list, a success (no-op).
- ``dataFields`` of a subscriber are set on the user (a null sets the field to null, other fields are left
  as they are). A project's user field takes the type of its first value; a later value of another JSON
  type fails that subscriber as ``invalidData*`` and changes nothing ([U]: Iterable documents the
  ``invalidDataEmails``/``invalidDataUserIds`` keys, not what triggers them; a type clash is the strict
  reading of its schema-per-project fields).
- Over ``rate_limit`` (requests per window): 429 ``{"code": "RateLimitExceeded", "msg": "Exceeded rate
  limit for endpoint: ..."}``, without Retry-After (none documented); ``throttle_next`` answers the next
  request that way.

Hand edits, named and shaped as the Klaviyo emulator's: ``remove_from_list``, ``add_to_list``,
``change_email`` (the user keeps its lists).

Test helpers: ``create_list``, ``add_user``, ``forget``, ``list_members``, ``subscription_state``,
``subscription_states``, ``user``; ``payloads`` holds the parsed bodies of the last 200 list calls;
``max_subscribers`` and ``rate_limit`` (off by default) are knobs. ``consent_of`` reads a user's consent
compartment.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from destinations.emulation import Emulator, Request, Response

__all__ = ["FAILED_KEYS", "IterableEmulator", "MAX_SUBSCRIBERS"]

MAX_SUBSCRIBERS = 1000
MARKETING_CHANNEL = 1
FAILED_KEYS = (
    "invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds", "forgottenEmails", "forgottenUserIds",
    "conflictEmails", "conflictUserIds", "invalidDataEmails", "invalidDataUserIds",
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}").fullmatch
_SUBSCRIBER_KEYS = {"subscribe": {"email", "userId", "dataFields", "preferUserId", "mergeNestedObjects"},
                    "unsubscribe": {"email", "userId"}}
_BODY_KEYS = {"subscribe": {"listId", "subscribers", "updateExistingUsersOnly"},
              "unsubscribe": {"listId", "subscribers", "campaignId", "channelUnsubscribe"}}


@dataclass
class _User:
    email: str | None = None
    userId: str | None = None  # noqa: N815 - Iterable's field name
    forgotten: bool = False
    unsubscribedChannelIds: list[int] = field(default_factory=list)  # noqa: N815
    unsubscribedMessageTypeIds: list[int] = field(default_factory=list)  # noqa: N815
    subscribedMessageTypeIds: list[int] = field(default_factory=list)  # noqa: N815
    dataFields: dict[str, Any] = field(default_factory=dict)  # noqa: N815 - the user's profile fields

    def key(self) -> str:
        return self.email or self.userId or ""


class _Failed(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.response = Response(status, {"msg": msg, "code": code, "params": None})


class IterableEmulator(Emulator):
    """Iterable project state behind the list endpoints; thread-safe through ``self.lock``."""

    name = "iterable"

    def reset_state(self) -> None:
        self.users: list[_User] = []
        self.lists: dict[int, dict[str, Any]] = {}  # id -> {name, channel_id, members: set[int] (user index)}
        self.max_subscribers = MAX_SUBSCRIBERS
        self.rate_limit: tuple[int, float] | None = None
        self.project_id = 1
        self.field_types: dict[str, str] = {}  # project-wide: a user field's type, set by its first value
        self._window: deque[float] = deque()
        self.payloads: deque[Any] = deque(maxlen=200)  # parsed bodies of the last subscribe/unsubscribe calls

    # ----- test helpers -------------------------------------------------------------------------
    def create_list(self, list_id: int | None = None, name: str = "sandbox list", channel_id: int = MARKETING_CHANNEL) -> int:
        with self.lock:
            list_id = int(list_id) if list_id is not None else max(self.lists, default=1000) + 1
            self.lists.setdefault(list_id, {"name": name, "channel_id": channel_id, "members": set()})
            return list_id

    def add_user(self, *, email: str | None = None, user_id: str | None = None,
                 unsubscribed_channel_ids: Iterable[int] = (), unsubscribed_message_type_ids: Iterable[int] = (),
                 subscribed_message_type_ids: Iterable[int] = ()) -> None:
        with self.lock:
            self.users.append(_User(email.lower() if email else None, user_id, False, sorted(unsubscribed_channel_ids),
                                    sorted(unsubscribed_message_type_ids), sorted(subscribed_message_type_ids)))

    def forget(self, *, email: str | None = None, user_id: str | None = None) -> None:
        """GDPR-forget a user: every later list call on them fails as forgotten."""
        with self.lock:
            user = self._find(email, user_id)
            if user is None:
                user = _User(email.lower() if email else None, user_id)
                self.users.append(user)
            user.forgotten = True
            for lst in self.lists.values():
                lst["members"].discard(self.users.index(user))

    def user(self, *, email: str | None = None, user_id: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            found = self._find(email, user_id)
            return asdict(found) if found else None

    def list_members(self, list_id: int) -> set[str]:
        """Members of a list, each as its email, else its userId."""
        with self.lock:
            return {self.users[i].key() for i in self.lists[int(list_id)]["members"]}

    # ----- hand edits, as a person makes them in Iterable's web app (named as the Klaviyo emulator's) -----
    def remove_from_list(self, list_id: int | str, email: str) -> None:
        """Take the user out of the list; the user and their consent stay."""
        with self.lock:
            user = self._find(email, None)
            if user is not None:
                self.lists[int(list_id)]["members"].discard(self.users.index(user))

    def add_to_list(self, list_id: int | str, *, email: str) -> None:
        """Put the user (created when unknown) on the list."""
        with self.lock:
            user = self._find(email, None)
            if user is None:
                user = _User(email.lower())
                self.users.append(user)
            self.lists[int(list_id)]["members"].add(self.users.index(user))

    def change_email(self, email: str, new_email: str) -> None:
        """Change a user's email; the user (its lists, userId and consent) stays the same. KeyError for an
        unknown email, ValueError when another user holds the new one."""
        with self.lock:
            user = self._find(email, None)
            if user is None:
                raise KeyError("no user has that email")
            if self._find(new_email, None) is not None:
                raise ValueError("another user has that email")
            user.email = new_email.lower()

    def subscription_state(self, *, email: str | None = None, user_id: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            found = self._find(email, user_id)
            return _consent(found) if found else None

    def subscription_states(self) -> dict[str, dict[str, Any]]:
        """{user key: consent} for every user: compare before and after a sync."""
        with self.lock:
            return {u.key(): _consent(u) for u in self.users}

    # ----- Emulator -----------------------------------------------------------------------------
    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as Iterable throttles: 429 ``RateLimitExceeded`` without Retry-After, so
        the answer states no wait (None), whatever ``retry_after`` asks."""
        self.inject_http(429, 1)
        return None

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """Iterable holds consent per user, whatever the list: the channels and message types the user
        (by email, else userId) is unsubscribed from or subscribed to; None when no user holds them."""
        with self.lock:
            email, user_id = identifiers.get("email"), identifiers.get("external_id")
            found = self._find(email, None) if email else self._find(None, user_id) if user_id else None
            return _consent(found) if found else None

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            lists = {str(k): {**v, "members": sorted(v["members"])} for k, v in self.lists.items()}
            return {"users": [asdict(u) for u in self.users], "lists": lists}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.users = [_User(**u) for u in state.get("users", [])]
            self.lists = {int(k): {**v, "members": set(v["members"])} for k, v in state.get("lists", {}).items()}

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            lists = {k: {"name": v["name"], "members": len(v["members"])} for k, v in self.lists.items()}
            return {"requests": self.request_count, "users": len(self.users), "lists": lists}

    def rows_in(self, request: Request) -> int:
        try:
            body = request.json()
        except ValueError:
            return 0
        return len(body.get("subscribers") or []) if isinstance(body, dict) else 0

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {"msg": "Exceeded rate limit (injected)", "code": "RateLimitExceeded", "params": {}}
        return {"msg": f"Injected HTTP {status}", "code": "GenericError", "params": None}

    def bad_request(self, message: str) -> Response:
        return Response(400, {"msg": message, "code": "BadJsonBody", "params": None})

    def handle(self, request: Request) -> Response:
        if request.headers.get("api-key") != self.key:
            return Response(401, {"msg": "Invalid API key", "code": "BadApiKey", "params": None})
        path = request.path.rstrip("/")
        if not self._allowed():
            return Response(429, {"msg": f"Exceeded rate limit for endpoint: {path}, project: {self.project_id}",
                                  "code": "RateLimitExceeded", "params": {}})
        try:
            if request.method == "GET" and path == "/api/lists":
                return Response(200, {"lists": [{"id": k, "name": v["name"], "createdAt": 0, "listType": "Standard"}
                                                for k, v in sorted(self.lists.items())]})
            if request.method == "GET" and path == "/api/lists/getUsers":
                return self._get_users(request)
            if request.method == "POST" and path in ("/api/lists/subscribe", "/api/lists/unsubscribe"):
                return self._change(request, path.rsplit("/", 1)[-1])
        except _Failed as failed:
            return failed.response
        return Response(404, {"msg": f"No route for {request.method} {request.path}", "code": "NotFound", "params": None})

    # ----- internals ----------------------------------------------------------------------------
    def _allowed(self) -> bool:
        if self.rate_limit is None:
            return True
        limit, window = self.rate_limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= limit:
            return False
        self._window.append(now)
        return True

    def _list(self, value: Any) -> dict[str, Any]:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Failed(400, "BadParams", "listId must be an integer")
        if value not in self.lists:
            raise _Failed(404, "NotFound", f"List {value} does not exist in project {self.project_id}")
        return self.lists[value]

    def _get_users(self, request: Request) -> Response:
        values = request.params().get("listId")
        if not values:
            raise _Failed(400, "BadParams", "listId is required")
        try:
            lst = self._list(int(values[0]))
        except ValueError:
            raise _Failed(400, "BadParams", "listId must be an integer") from None
        lines = sorted(self.users[i].key() for i in lst["members"])
        return Response(200, ("\n".join(lines)).encode(), {"Content-Type": "text/plain"})

    def _change(self, request: Request, op: str) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            raise _Failed(400, "BadJsonBody", "Content-Type must be application/json")
        body = request.json()
        self.payloads.append(body)
        if not isinstance(body, dict) or not set(body) <= _BODY_KEYS[op] or "subscribers" not in body:
            raise _Failed(400, "BadJsonBody", f"expected an object with {sorted(_BODY_KEYS[op])}")
        lst = self._list(body.get("listId"))
        subscribers = body["subscribers"]
        if not isinstance(subscribers, list) or not all(_subscriber_ok(s, op) for s in subscribers):
            raise _Failed(400, "BadParams", "each subscriber must be an object with email or userId")
        if len(subscribers) > self.max_subscribers:
            raise _Failed(400, "BatchTooLarge", f"{len(subscribers)} subscribers; the limit is {self.max_subscribers}")
        failed: dict[str, list[str]] = {k: [] for k in FAILED_KEYS}
        ok = 0
        for subscriber in subscribers:
            if op == "subscribe":
                problem = self._subscribe(lst, subscriber, body.get("updateExistingUsersOnly") is True)
            else:
                problem = self._unsubscribe(lst, subscriber, body.get("channelUnsubscribe") is True)
            if problem:
                failed[problem[0]].append(problem[1].lower())
            else:
                ok += 1
        return Response(200, {"successCount": ok, "failCount": len(subscribers) - ok, "failedUpdates": failed})

    def _subscribe(self, lst: dict[str, Any], s: Mapping[str, Any], existing_only: bool) -> tuple[str, str] | None:
        email, user_id = s.get("email"), s.get("userId")
        kind, value = ("Emails", email) if email is not None else ("UserIds", user_id)
        problem = _invalid(email, user_id)
        if problem:
            return problem
        if "dataFields" in s and (not isinstance(s["dataFields"], dict) or not self._fields_fit(s["dataFields"])):
            return "invalidData" + kind, value
        user = self._find(email, None) if email is not None else self._find(None, user_id)
        if user is not None and user.forgotten:
            return "forgotten" + kind, value
        if email is not None and user_id is not None:
            other = self._find(None, user_id)
            if (other is not None and other is not user) or (user is not None and user.userId not in (None, user_id)):
                return "conflictUserIds", user_id
        if user is None:
            if existing_only or (email is None and s.get("preferUserId") is not True):
                return "notFound" + kind, value
            user = _User(email.lower() if email else None, user_id)
            self.users.append(user)
        elif user_id is not None:
            user.userId = user_id
        self._set_fields(user, s.get("dataFields") or {})
        lst["members"].add(self.users.index(user))
        return None

    def _fields_fit(self, fields: Mapping[str, Any]) -> bool:
        """Each value has the type the project's field already has (its first value set it); null always fits."""
        return all(value is None or self.field_types.get(name, _json_type(value)) == _json_type(value)
                   for name, value in fields.items())

    def _set_fields(self, user: _User, fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if value is not None:
                self.field_types.setdefault(name, _json_type(value))
            user.dataFields[name] = value

    def _unsubscribe(self, lst: dict[str, Any], s: Mapping[str, Any], channel: bool) -> tuple[str, str] | None:
        email, user_id = s.get("email"), s.get("userId")
        kind, value = ("Emails", email) if email is not None else ("UserIds", user_id)
        problem = _invalid(email, user_id)
        if problem:
            return problem
        user = self._find(email, None) if email is not None else self._find(None, user_id)
        if user is None:
            return "notFound" + kind, value
        if user.forgotten:
            return "forgotten" + kind, value
        lst["members"].discard(self.users.index(user))
        if channel and lst["channel_id"] not in user.unsubscribedChannelIds:
            user.unsubscribedChannelIds = sorted([*user.unsubscribedChannelIds, lst["channel_id"]])
        return None

    def _find(self, email: str | None, user_id: str | None) -> _User | None:
        if email is not None:
            return next((u for u in self.users if u.email == email.lower()), None)
        if user_id is not None:
            return next((u for u in self.users if u.userId == user_id), None)
        return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "other")


def _subscriber_ok(s: Any, op: str) -> bool:
    return isinstance(s, dict) and set(s) <= _SUBSCRIBER_KEYS[op] and ("email" in s or "userId" in s)


def _invalid(email: Any, user_id: Any) -> tuple[str, str] | None:
    if email is not None and not (isinstance(email, str) and _EMAIL(email)):
        return "invalidEmails", str(email)
    if user_id is not None and not (isinstance(user_id, str) and user_id and user_id == user_id.strip()):
        return "invalidUserIds", str(user_id)
    return None


def _consent(user: _User) -> dict[str, Any]:
    return {"unsubscribedChannelIds": list(user.unsubscribedChannelIds),
            "unsubscribedMessageTypeIds": list(user.unsubscribedMessageTypeIds),
            "subscribedMessageTypeIds": list(user.subscribedMessageTypeIds)}
