"""A strict emulator of Braze's REST ``/users/track`` endpoint (the sandbox's ``braze`` part).

Served under ``/braze`` on the sandbox port, so a destination's ``endpoint`` is
``http://127.0.0.1:PORT/braze`` and the connector posts to ``.../braze/users/track``.

Routes::

    POST /users/track      {"attributes": [...], "events": [...], "purchases": [...]}

What it keeps, per user, in separate compartments (so a test can prove a membership change never
touched consent):

    identity       braze_id, external_id, email, phone
    consent        email_subscribe ("subscribed" by default, "opted_in", "unsubscribed") and the state of
                   each subscription group ({group_id: "subscribed" | "unsubscribed"})
    attributes     custom attributes ({"in_vip": true, ...}); null deletes one

Strictness (as documented by Braze, see ``destinations.braze.connector`` for sources):

- ``Authorization: Bearer <key>`` on every call, else 401; a key without the ``users.track`` permission
  gets 403. ``Content-Type: application/json``; a body that is not a JSON object is a 400.
- At most ``max_objects`` (75) objects in total across attributes, events and purchases, else the
  fatal 400 ``Max Input Length Exceeded`` and nothing is applied. A request with no object is a 400.
- Each attribute object needs one of external_id, braze_id, email or phone (user_alias is not emulated
  and is refused per object). Identifier precedence: external_id, braze_id, email, phone; with email and
  phone both given, email identifies and phone is an attribute update. An email or phone identifies the
  most recently updated profile holding it, preferring profiles with an external_id; none: a new
  email-only (phone-only) profile. ``_update_existing_only: true`` never creates a profile (the object is
  silently skipped), as the docs describe.
- Each object is validated whole before anything is applied: a bad email (not local@domain.tld), a phone
  not in E.164, an ``email_subscribe`` value outside the three states, an unknown subscription group or
  state, an attribute name starting with ``$`` or longer than 255 characters, a string value longer than
  255 characters ("Custom attribute keys and values have a maximum length of 255 characters":
  braze.com/docs/developer_guide/platform_integration_guides/web/analytics/setting_custom_attributes). A bad object is skipped and
  reported as a non-fatal error ``{"type", "input_array", "index"}`` next to ``"message": "success"``;
  the rest of the request is applied.
- Answers 201 ``{"message": "success", "attributes_processed": n, ...}`` (202 ``{"message": "queued"}``
  when ``queued`` is set), with ``X-RateLimit-Limit/-Remaining/-Reset`` on every response. Over
  ``rate_limit`` (3,000 requests per 3 s): 429 with those headers and no Retry-After (Braze documents
  none). ``throttle_next(wait)`` answers the next authorised request that way, its reset ``wait`` seconds on.

Test helpers: ``add_user``, ``create_subscription_group``, ``user``, ``attribute_members``,
``attribute_values``, ``subscription_state``, ``subscription_states``; ``payloads`` holds the parsed
bodies of the last 200 calls; ``permissions``, ``max_objects``, ``rate_limit`` and ``queued`` are knobs.
``consent_of`` reads the consent compartment of the profile identifiers resolve to.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from destinations.emulation import Emulator, Request, Response

__all__ = ["BrazeEmulator", "MAX_OBJECTS"]

MAX_OBJECTS = 75
EMAIL_STATES = frozenset({"subscribed", "opted_in", "unsubscribed"})
GROUP_STATES = frozenset({"subscribed", "unsubscribed"})
_IDENTIFIERS = ("external_id", "braze_id", "user_alias", "email", "phone")
_FLAGS = frozenset({"_update_existing_only", "push_token_import"})
_PROFILE_FIELDS = frozenset({
    "first_name", "last_name", "country", "current_location", "date_of_first_session", "date_of_last_session", "dob",
    "gender", "home_city", "image_url", "language", "time_zone", "push_subscribe", "push_tokens",
})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}").fullmatch
_E164 = re.compile(r"\+[1-9]\d{6,14}").fullmatch
_MISSING_ID = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"


@dataclass
class _User:
    braze_id: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    email_subscribe: str = "subscribed"
    subscription_groups: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    updated: int = 0

    def key(self) -> str:
        return self.external_id or self.email or self.phone or self.braze_id


class BrazeEmulator(Emulator):
    """Braze workspace state behind ``/users/track``; thread-safe through ``self.lock``."""

    name = "braze"

    def reset_state(self) -> None:
        self.users: dict[str, _User] = {}
        self.groups: dict[str, str] = {}  # subscription group id -> channel (email, sms)
        self.permissions: set[str] = {"users.track"}
        self.max_objects = MAX_OBJECTS
        self.rate_limit: tuple[int, float] | None = (3000, 3.0)
        self.queued = False
        self._window: deque[float] = deque()
        self._seq = itertools.count(1)
        self.payloads: deque[Any] = deque(maxlen=200)  # parsed bodies of the last /users/track calls
        self._throttle: float | None = None  # the reset, in seconds, of a 429 owed to the next request

    # ----- test helpers -------------------------------------------------------------------------
    def add_user(self, *, external_id: str | None = None, email: str | None = None, phone: str | None = None,
                 email_subscribe: str = "subscribed", subscription_groups: Mapping[str, str] | None = None,
                 **attributes: Any) -> str:
        """Seed a profile; returns its braze_id."""
        with self.lock:
            user = _User(f"braze-{len(self.users) + 1:06d}", external_id, email, phone, email_subscribe,
                         dict(subscription_groups or {}), dict(attributes), next(self._seq))
            self.users[user.braze_id] = user
            return user.braze_id

    def create_subscription_group(self, group_id: str, channel: str = "email") -> str:
        with self.lock:
            self.groups[group_id] = channel
            return group_id

    def user(self, *, external_id: str | None = None, email: str | None = None, phone: str | None = None) -> dict | None:
        """A copy of the profile the identifier resolves to (as /users/track would), or None."""
        with self.lock:
            found = self._find(external_id=external_id, email=email, phone=phone)
            return asdict(found) if found else None

    def attribute_members(self, name: str) -> set[str]:
        """Profiles whose custom attribute ``name`` is true, each as external_id, else email, else phone."""
        with self.lock:
            return {u.key() for u in self.users.values() if u.attributes.get(name) is True}

    def attribute_values(self, name: str) -> dict[str, Any]:
        """{profile key: value} for every profile holding attribute ``name`` (true, false...)."""
        with self.lock:
            return {u.key(): u.attributes[name] for u in self.users.values() if name in u.attributes}

    def subscription_state(self, *, external_id: str | None = None, email: str | None = None,
                           phone: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            found = self._find(external_id=external_id, email=email, phone=phone)
            return _consent(found) if found else None

    def subscription_states(self) -> dict[str, dict[str, Any]]:
        """{profile key: consent} for every profile: compare before and after a sync."""
        with self.lock:
            return {u.key(): _consent(u) for u in self.users.values()}

    # ----- Emulator -----------------------------------------------------------------------------
    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next authorised request as Braze throttles: 429 with ``X-RateLimit-*`` headers whose
        reset is ``retry_after`` seconds away, and no Retry-After; returns that wait."""
        with self.lock:
            self._throttle = retry_after
            return retry_after

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """Braze holds consent per profile, whatever the audience: the email subscription state and each
        subscription group's state of the profile the identifiers resolve to as /users/track resolves them
        (external_id, else email, else phone); None when no profile holds them."""
        with self.lock:
            kind = next((k for k in ("external_id", "email", "phone") if identifiers.get(k)), None)
            found = self._find(**{kind: identifiers[kind]}) if kind else None
            return _consent(found) if found else None

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"users": [asdict(u) for u in self.users.values()], "groups": dict(self.groups)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.users = {u["braze_id"]: _User(**u) for u in state.get("users", [])}
            self.groups = dict(state.get("groups", {}))
            self._seq = itertools.count(max((u.updated for u in self.users.values()), default=0) + 1)

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.request_count, "users": len(self.users), "groups": dict(self.groups)}

    def rows_in(self, request: Request) -> int:
        try:
            body = request.json()
        except ValueError:
            return 0
        return len(body.get("attributes") or []) if isinstance(body, dict) else 0

    def fault_body(self, status: int) -> Any:
        return {"message": "Rate limit exceeded" if status == 429 else f"Internal Server Error (injected HTTP {status})"}

    def bad_request(self, message: str) -> Response:
        return Response(400, {"message": message, "errors": [message]})

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/users/track":
            return Response(404, {"message": f"No route for {request.method} {request.path}"})
        if request.method != "POST":
            return Response(405, {"message": "Method Not Allowed"})
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] != self.key:
            return Response(401, {"message": "Unknown or missing REST API Key"})
        if "users.track" not in self.permissions:
            return Response(403, {"message": "This API key does not have the users.track permission"})
        if self._throttle is not None:
            wait, self._throttle = self._throttle, None
            return Response(429, {"message": "API rate limit exceeded"}, self._throttled_headers(wait))
        headers = self._rate_headers()
        if headers is None:
            return Response(429, {"message": "API rate limit exceeded"}, self._rate_headers(count=False) or {})
        response = self._track(request)
        response.headers.update(headers)
        return response

    # ----- internals ----------------------------------------------------------------------------
    def _rate_headers(self, count: bool = True) -> dict[str, str] | None:
        """Count this request in the sliding window; None when over the limit."""
        if self.rate_limit is None:
            return {}
        limit, window = self.rate_limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        reset_in = (self._window[0] + window - now) if self._window else window
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in))}
        if count and len(self._window) >= limit:
            return None
        if count:
            self._window.append(now)
        headers["X-RateLimit-Remaining"] = str(max(limit - len(self._window), 0))
        return headers

    def _throttled_headers(self, wait: float) -> dict[str, str]:
        limit = self.rate_limit[0] if self.rate_limit else 3000
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(time.time() + wait))}

    def _track(self, request: Request) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            return self.bad_request("Content-Type must be application/json")
        body = request.json()
        self.payloads.append(body)
        if not isinstance(body, dict):
            return self.bad_request("The request body must be a JSON object")
        unknown = set(body) - {"attributes", "events", "purchases", "partner"}
        if unknown:
            return self.bad_request(f"Unknown key(s) in request: {', '.join(sorted(unknown))}")
        arrays = {k: body.get(k) or [] for k in ("attributes", "events", "purchases")}
        if any(not isinstance(v, list) or not all(isinstance(o, dict) for o in v) for v in arrays.values()):
            return self.bad_request("attributes, events and purchases must be arrays of objects")
        total = sum(len(v) for v in arrays.values())
        if total == 0:
            return self.bad_request("The request must contain attributes, events or purchases")
        if total > self.max_objects:
            return Response(400, {"message": "Max Input Length Exceeded",
                                  "errors": [f"{total} objects in one request; the limit is {self.max_objects}"]})
        errors: list[dict[str, Any]] = []
        processed = {k: 0 for k in arrays}
        for array, objects in arrays.items():
            for index, obj in enumerate(objects):
                problem = self._apply(obj) if array == "attributes" else _identifier_problem(obj)
                if problem:
                    errors.append({"type": problem, "input_array": array, "index": index})
                else:
                    processed[array] += 1
        if self.queued:
            return Response(202, {"message": "queued"})
        out: dict[str, Any] = {"message": "success"}
        out.update({f"{k}_processed": n for k, n in processed.items() if arrays[k]})
        if errors:
            out["errors"] = errors
        return Response(201, out)

    def _apply(self, obj: Mapping[str, Any]) -> str | None:
        """Validate one attributes object whole, then apply it; returns the error type or None."""
        problem = _identifier_problem(obj) or self._field_problem(obj)
        if problem:
            return problem
        kind = next(k for k in _IDENTIFIERS if obj.get(k) is not None)
        update_only = obj.get("_update_existing_only") is True
        user = self._find(**{kind: obj[kind]})
        if user is None:
            if update_only or kind == "braze_id":
                return None
            user = _User(f"braze-{len(self.users) + 1:06d}")
            setattr(user, kind, obj[kind])
            self.users[user.braze_id] = user
        for name, value in obj.items():
            if name == kind or name in _FLAGS:
                continue
            if name in ("external_id", "email", "phone"):
                setattr(user, name, value)
            elif name == "email_subscribe":
                user.email_subscribe = value
            elif name == "subscription_groups":
                user.subscription_groups.update({g["subscription_group_id"]: g["subscription_state"] for g in value})
            elif value is None:
                user.attributes.pop(name, None)
            else:
                user.attributes[name] = value
        user.updated = next(self._seq)
        return None

    def _field_problem(self, obj: Mapping[str, Any]) -> str | None:
        for flag in _FLAGS:
            if flag in obj and not isinstance(obj[flag], bool):
                return f"'{flag}' must be a boolean"
        for name, value in obj.items():
            if name in _IDENTIFIERS or name in _FLAGS or name in _PROFILE_FIELDS:
                continue
            if name == "email_subscribe" and value not in EMAIL_STATES:
                return "Invalid 'email_subscribe' value; expected subscribed, opted_in or unsubscribed"
            if name == "subscription_groups":
                problem = self._groups_problem(value)
                if problem:
                    return problem
            elif name.startswith("$") or not name or len(name) > 255:
                return "Invalid custom attribute name"
            elif not isinstance(value, (str, int, float, bool, list, dict, type(None))):
                return "Invalid custom attribute value"
            elif isinstance(value, str) and len(value) > 255:
                return "Invalid custom attribute value"
        return None

    def _groups_problem(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return "'subscription_groups' must be an array"
        for group in value:
            if not isinstance(group, dict) or group.get("subscription_group_id") not in self.groups:
                return "Invalid subscription_group_id"
            if group.get("subscription_state") not in GROUP_STATES:
                return "Invalid subscription_state; expected subscribed or unsubscribed"
        return None

    def _find(self, *, external_id: str | None = None, braze_id: str | None = None, email: str | None = None,
              phone: str | None = None, user_alias: Any = None) -> _User | None:
        if external_id is not None:
            return next((u for u in self.users.values() if u.external_id == external_id), None)
        if braze_id is not None:
            return self.users.get(braze_id)
        kind, value = ("email", email.lower()) if email is not None else ("phone", phone)
        if value is None:
            return None
        holders = [u for u in self.users.values() if (getattr(u, kind) or "").lower() == value.lower()]
        return max(holders, key=lambda u: (u.external_id is not None, u.updated), default=None)


def _identifier_problem(obj: Mapping[str, Any]) -> str | None:
    given = [k for k in _IDENTIFIERS if obj.get(k) is not None]
    if not given:
        return _MISSING_ID
    if given[0] == "user_alias":
        return "user_alias is not supported by the sandbox"
    if given[0] == "external_id" and (not isinstance(obj["external_id"], str) or not obj["external_id"].strip()):
        return "'external_id' must be a non-empty string"
    if "email" in given and not (isinstance(obj["email"], str) and _EMAIL(obj["email"])):
        return "Invalid email address"
    if "phone" in given and not (isinstance(obj["phone"], str) and _E164(obj["phone"])):
        return "Invalid phone number; expected E.164"
    return None


def _consent(user: _User) -> dict[str, Any]:
    return {"email_subscribe": user.email_subscribe, "subscription_groups": dict(user.subscription_groups)}
