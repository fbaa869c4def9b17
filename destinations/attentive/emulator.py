"""A strict emulator of Attentive's REST API v1 (the sandbox's ``attentive`` part), served under ``/attentive``.

Routes (below ``/attentive/v1``, as ``https://api.attentivemobile.com/v1``)::

    GET  /me                           the company behind the key (Attentive's "test authentication" call)
    POST /attributes/custom            {user{phone|email}, properties{name: value}} -> 200, empty body
    GET  /attributes/custom?phone=|email=   [{name, value}] (exactly one of phone or email, else 400)
    POST /subscriptions                subscribe: RECORDED AS A TEXT SENT (Attentive texts the person)
    POST /subscriptions/unsubscribe    unsubscribe: recorded as a text sent too (the confirmation text)
    GET  /subscriptions?phone=&email=  the person's subscriptions

State: a *person* is found by phone, else by email, and holds ``subscriptions`` (the consent state:
[{type: MARKETING|TRANSACTIONAL, channel: TEXT|EMAIL}]) apart from ``attributes`` (custom attributes).
Setting attributes on an unknown phone or email creates a person with no subscription, as Attentive
does for a site visitor; it never subscribes anyone. Every subscribe or unsubscribe call is appended to
``texts_sent``, so a test can prove a connector never texted anybody.

Strictness, from the Custom Attributes and Subscribers reference (docs.attentive.com/openapi/reference):
``Authorization: Bearer <key>`` on every call (401 otherwise; 403 without the ``attributes:write`` scope);
phone strictly E.164; ``user`` takes only phone, email and externalIdentifiers; ``properties`` required,
no arrays or objects as values, names up to 200 characters, case-sensitive; a property defined in the UI
(``define_property``) accepts only its listed values. Rate limit: ``rate_limit`` requests per second
(default 150) over a sliding second; beyond it 429 with no ``Retry-After``, and every answer carries
``x-ratelimit-limit`` and ``x-ratelimit-remaining``.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from destinations.emulation import Emulator, Request, Response

__all__ = ["AttentiveEmulator", "DEFAULT_RATE_LIMIT", "E164"]

DEFAULT_RATE_LIMIT = 150
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAX_ATTRIBUTE_NAME = 200
_WINDOW_S = 1.0  # the rate limit counts requests per second
_USER_KEYS = {"phone", "email", "externalIdentifiers"}
_SUB_TYPES = {"MARKETING", "TRANSACTIONAL"}
_CHANNELS = {"TEXT", "EMAIL"}


class AttentiveEmulator(Emulator):
    """People with subscriptions and custom attributes kept apart; subscribe calls count as texts."""

    name = "attentive"

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.people: list[dict[str, Any]] = []  # {phone, email, subscriptions: [...], attributes: {...}}
        self.texts_sent: list[dict[str, Any]] = []  # {call, phone, email, at}
        self.defined_properties: dict[str, set[str]] = {}
        self.scopes: set[str] = {"attributes:write", "subscriptions:write"}
        self.rate_limit = DEFAULT_RATE_LIMIT
        self._recent: deque[float] = deque()
        self._throttle_next = False

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next authorised request as the rate limit does: 429 without ``Retry-After``.

        Attentive names no wait (``retry_after`` cannot be stated); its limit counts requests per second,
        so the wait its answer implies is one window: 1 s.
        """
        with self.lock:
            self._throttle_next = True
        return _WINDOW_S

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """The person's subscriptions (type and channel), sorted; None when nobody has these identifiers.

        Consent is the same for every attribute, so ``audience_id`` does not matter.
        """
        found = self.person(identifiers.get("phone"), identifiers.get("email"))
        return None if found is None else sorted((s["type"], s["channel"]) for s in found["subscriptions"])

    def add_subscriber(self, phone: str | None = None, email: str | None = None,
                       subscriptions: Iterable[tuple[str, str]] = (("MARKETING", "TEXT"),)) -> dict[str, Any]:
        """Seed a person (no text recorded), e.g. someone who subscribed through a sign-up unit."""
        with self.lock:
            person = self._person(phone, email, create=True)
            for sub_type, channel in subscriptions:
                entry = {"type": sub_type, "channel": channel}
                if entry not in person["subscriptions"]:
                    person["subscriptions"].append(entry)
            return person

    def define_property(self, name: str, values: Iterable[str]) -> None:
        """A property created in the Attentive UI: the API then accepts only these values for it."""
        with self.lock:
            self.defined_properties[name] = set(values)

    def person(self, phone: str | None = None, email: str | None = None) -> dict[str, Any] | None:
        """A copy of the person found by phone, else email; None when unknown."""
        with self.lock:
            found = self._person(phone, email, create=False)
            return None if found is None else _copy(found)

    def attribute(self, name: str, *, phone: str | None = None, email: str | None = None) -> Any:
        found = self.person(phone, email)
        return None if found is None else found["attributes"].get(name)

    def holders(self, name: str, value: Any) -> set[str]:
        """Phones (or emails of people without one) whose attribute ``name`` equals ``value``."""
        with self.lock:
            return {p["phone"] or p["email"] for p in self.people if p["attributes"].get(name) == value}

    # ----- state --------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"people": [_copy(p) for p in self.people], "texts_sent": list(self.texts_sent),
                    "defined_properties": {k: sorted(v) for k, v in self.defined_properties.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            self.people = [_copy(p) for p in state.get("people", [])]
            self.texts_sent = list(state.get("texts_sent", []))
            self.defined_properties = {k: set(v) for k, v in state.get("defined_properties", {}).items()}

    def rows_in(self, request: Request) -> int:
        return 1 if request.method == "POST" else 0

    def fault_body(self, status: int) -> Any:
        return {"errors": [{"message": f"injected HTTP {status}"}]}

    def bad_request(self, message: str) -> Response:
        return Response(400, {"errors": [{"message": message}]})

    # ----- HTTP ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.key}":
            return Response(401, {"errors": [{"message": "Unauthorized"}]})
        limited = self._rate_limited()
        if limited is not None:
            return limited
        response = self._route(request)
        remaining = max(self.rate_limit - len(self._recent), 0)
        response.headers.update({"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": str(remaining)})
        return response

    def _rate_limited(self) -> Response | None:
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - _WINDOW_S:
            self._recent.popleft()
        if len(self._recent) >= self.rate_limit or self._throttle_next:
            self._throttle_next = False
            return Response(429, {"errors": [{"message": "Too Many Requests"}]},
                            {"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": "0"})
        self._recent.append(now)
        return None

    def _route(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/v1/me"):
            return Response(200, {"applicationName": "syncer sandbox", "companyName": "Sandbox Co",
                                  "attentiveDomainName": "sandbox.attn.tv", "companyId": "MDc6Q29tcGFueTE"})
        if route == ("POST", "/v1/attributes/custom"):
            return self._set_attributes(request)
        if route == ("GET", "/v1/attributes/custom"):
            return self._get_attributes(request)
        if route == ("POST", "/v1/subscriptions"):
            return self._subscribe(request)
        if route == ("POST", "/v1/subscriptions/unsubscribe"):
            return self._unsubscribe(request)
        if route == ("GET", "/v1/subscriptions"):
            return self._subscriptions(request)
        return Response(404, {"errors": [{"message": f"no route {request.method} {request.path}"}]})

    def _set_attributes(self, request: Request) -> Response:
        if "attributes:write" not in self.scopes:
            return Response(403, {"errors": [{"message": "Access Denied: missing scope attributes:write"}]})
        body = request.json()
        if not isinstance(body, dict) or set(body) - {"user", "properties"}:
            return self.bad_request("expected {user, properties}")
        user, error = _user(body.get("user"))
        if error:
            return self.bad_request(error)
        properties = body.get("properties")
        if not isinstance(properties, dict) or not properties:
            return self.bad_request("properties must be a non-empty object")
        for name, value in properties.items():
            error = self._property_error(name, value)
            if error:
                return self.bad_request(error)
        person = self._person(user.get("phone"), user.get("email"), create=True)
        person["attributes"].update(properties)
        return Response(200)

    def _property_error(self, name: str, value: Any) -> str | None:
        if not name or len(name) > _MAX_ATTRIBUTE_NAME:
            return f"attribute names must have 1 to {_MAX_ATTRIBUTE_NAME} characters"
        if isinstance(value, (list, dict)) or value is None:
            return f"attribute '{name}' must be a single string, number or boolean (arrays are not supported)"
        allowed = self.defined_properties.get(name)
        if allowed is not None and str(value) not in allowed:
            return f"'{value}' is not a value defined for property '{name}' in the Attentive UI"
        return None

    def _get_attributes(self, request: Request) -> Response:
        phone, email, error = _one_lookup(request)
        if error:
            return self.bad_request(error)
        person = self._person(phone, email, create=False)
        if person is None:
            return Response(404, {"errors": [{"message": "user not found"}]})
        return Response(200, [{"name": k, "value": v} for k, v in person["attributes"].items()])

    def _subscribe(self, request: Request) -> Response:
        body = request.json()
        user, error = _user(body.get("user") if isinstance(body, dict) else None)
        if error:
            return self.bad_request(error)
        if not body.get("signUpSourceId") and not (body.get("locale") and body.get("subscriptionType")):
            return self.bad_request("give signUpSourceId, or locale and subscriptionType")
        person = self._person(user.get("phone"), user.get("email"), create=True)
        entry = {"type": body.get("subscriptionType", "MARKETING"), "channel": "TEXT" if user.get("phone") else "EMAIL"}
        if entry not in person["subscriptions"]:
            person["subscriptions"].append(entry)
        self.texts_sent.append({"call": "subscribe", "phone": user.get("phone"), "email": user.get("email"), "at": time.time()})
        return Response(202, {"user": {"phone": person["phone"], "email": person["email"]},
                              "subscriptionResponses": [{"subscription": entry}]})

    def _unsubscribe(self, request: Request) -> Response:
        body = request.json()
        user, error = _user(body.get("user") if isinstance(body, dict) else None)
        if error:
            return self.bad_request(error)
        wanted = body.get("subscriptions") or [{"type": t, "channel": c} for t in _SUB_TYPES for c in _CHANNELS]
        for sub in wanted:
            if not isinstance(sub, dict) or sub.get("type") not in _SUB_TYPES or sub.get("channel") not in _CHANNELS:
                return self.bad_request("subscriptions: [{type: MARKETING|TRANSACTIONAL, channel: TEXT|EMAIL}]")
        person = self._person(user.get("phone"), user.get("email"), create=False)
        if person is not None:
            person["subscriptions"] = [s for s in person["subscriptions"] if s not in wanted]
        self.texts_sent.append({"call": "unsubscribe", "phone": user.get("phone"), "email": user.get("email"), "at": time.time()})
        return Response(202)

    def _subscriptions(self, request: Request) -> Response:
        params = request.params()
        person = self._person((params.get("phone") or [None])[0], (params.get("email") or [None])[0], create=False)
        subs = [] if person is None else person["subscriptions"]
        return Response(200, {"subscriptionEligibilities": [{"subscription": s, "eligibility": {"isEligible": True}} for s in subs]})

    def _person(self, phone: str | None, email: str | None, *, create: bool) -> dict[str, Any] | None:
        found = None
        if phone:
            found = next((p for p in self.people if p["phone"] == phone), None)
        if found is None and email:
            found = next((p for p in self.people if p["email"] == email), None)
        if found is None and create:
            found = {"phone": phone, "email": email, "subscriptions": [], "attributes": {}}
            self.people.append(found)
        if found is not None and create:
            found["phone"] = found["phone"] or phone
            found["email"] = found["email"] or email
        return found


def _user(user: Any) -> tuple[dict[str, Any], str | None]:
    if not isinstance(user, dict) or not user:
        return {}, "user must be an object with phone, email or externalIdentifiers"
    extra = set(user) - _USER_KEYS
    if extra:
        return {}, f"user takes only phone, email and externalIdentifiers (got {', '.join(sorted(extra))})"
    phone, email = user.get("phone"), user.get("email")
    if phone is not None and (not isinstance(phone, str) or not E164.match(phone)):
        return {}, "phone must be in E.164 format, e.g. +13115552368"
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return {}, "email is not a valid email address"
    if not phone and not email:
        return {}, "give the user's phone or email (an external identifier must first be linked with the Identity API)"
    return user, None


def _one_lookup(request: Request) -> tuple[str | None, str | None, str | None]:
    params = parse_qs(request.query, keep_blank_values=True)
    phone, email = (params.get("phone") or [None])[0], (params.get("email") or [None])[0]
    if bool(phone) == bool(email):
        return None, None, "give exactly one query parameter: phone or email"
    return phone, email, None


def _copy(person: Mapping[str, Any]) -> dict[str, Any]:
    return {"phone": person.get("phone"), "email": person.get("email"),
            "subscriptions": [dict(s) for s in person.get("subscriptions", [])],
            "attributes": dict(person.get("attributes", {}))}
