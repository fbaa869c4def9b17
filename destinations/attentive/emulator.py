"""A strict emulator of Attentive's REST API v1 (the sandbox's ``attentive`` part), served under ``/attentive``.

Routes (below ``/attentive/v1``, as ``https://api.attentivemobile.com/v1``)::

    GET  /me                           the company behind the key (Attentive's "test authentication" call)
    POST /attributes/custom            {user{phone|email}, properties{name: value}} -> 200, empty body
    GET  /attributes/custom?phone=|email=   [{name, value}] (exactly one of phone or email, else 400)
    POST /subscriptions                subscribe: RECORDED AS A TEXT SENT (Attentive texts the person)
    POST /subscriptions/unsubscribe    unsubscribe: recorded as a text sent too (the confirmation text)
    GET  /subscriptions?phone=&email=  the person's subscriptions

State: a *person* is Attentive's shopper profile: it holds several phones and several emails ("Can link
multiple phone numbers, emails [...] to one person", help.attentivemobile.com/hc/en-us/articles/
50431006248724-Understanding-Attentive-s-Identity-Platform), ``subscriptions`` (the consent state:
[{type: MARKETING|TRANSACTIONAL, channel: TEXT|EMAIL}]) and, apart from them, ``attributes`` (custom
attributes). Identity, as Attentive documents it:

- A write (custom attributes, subscribe) links every identifier its ``user`` carries to one person: the
  person one of them already names, else a new one (a visitor: "does not need to be actively subscribed",
  docs.attentive.com/openapi/reference/tag/Custom-Attributes). Identifiers naming *different* people
  bridge those people into one ("Sending duplicate values could lead to unintentionally bridging users
  together", docs.attentivemobile.com/openapi/reference/tag/Identity/ and the ``identifiers`` notes of
  docs.attentivemobile.com/openapi/reference-v2/tag/User-Properties). Which attribute value survives a
  bridge is not documented [U]: here the person named by the phone keeps its own.
- Nothing unlinks or replaces a phone or an email: no call does (the Identity API only adds a
  clientUserId or custom identifiers; User Properties v2 "creates or updates" a user found by its
  identifiers; the Custom Attributes and Subscribers calls set attributes and subscriptions). So an
  email once linked to a person stays that person's, whatever is sent later.
- A read names one identifier and finds the person holding it (admin helpers: the phone's, else the email's).

Setting attributes never subscribes anyone. Every subscribe or unsubscribe call is appended to
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
    """People (several phones and emails each) with subscriptions and custom attributes kept apart; a write
    links the identifiers it carries for good; subscribe calls count as texts."""

    name = "attentive"

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.people: list[dict[str, Any]] = []  # {phones: [...], emails: [...], subscriptions: [...], attributes: {...}}
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
        """Seed a person (no text recorded), e.g. someone who subscribed through a sign-up unit; a phone and
        an email given together are linked, as a sign-up with both links them."""
        with self.lock:
            person = self._link(phone, email)
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
        """A copy of the person holding the phone, else of the one holding the email; None when unknown."""
        with self.lock:
            found = self._find(phone, email)
            return None if found is None else _copy(found)

    def attribute(self, name: str, *, phone: str | None = None, email: str | None = None) -> Any:
        found = self.person(phone, email)
        return None if found is None else found["attributes"].get(name)

    def holders(self, name: str, value: Any) -> set[str]:
        """The phones (the emails, for people without one) of the people whose attribute ``name`` is ``value``."""
        with self.lock:
            return {ident for p in self.people if p["attributes"].get(name) == value
                    for ident in (p["phones"] or p["emails"])}

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
        self._link(user.get("phone"), user.get("email"))["attributes"].update(properties)
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
        person = self._find(phone, email)
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
        person = self._link(user.get("phone"), user.get("email"))
        entry = {"type": body.get("subscriptionType", "MARKETING"), "channel": "TEXT" if user.get("phone") else "EMAIL"}
        if entry not in person["subscriptions"]:
            person["subscriptions"].append(entry)
        self.texts_sent.append({"call": "subscribe", "phone": user.get("phone"), "email": user.get("email"), "at": time.time()})
        return Response(202, {"user": {"phone": user.get("phone"), "email": user.get("email")},
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
        person = self._find(user.get("phone"), user.get("email"))
        if person is not None:
            person["subscriptions"] = [s for s in person["subscriptions"] if s not in wanted]
        self.texts_sent.append({"call": "unsubscribe", "phone": user.get("phone"), "email": user.get("email"), "at": time.time()})
        return Response(202)

    def _subscriptions(self, request: Request) -> Response:
        params = request.params()
        person = self._find((params.get("phone") or [None])[0], (params.get("email") or [None])[0])
        subs = [] if person is None else person["subscriptions"]
        return Response(200, {"subscriptionEligibilities": [{"subscription": s, "eligibility": {"isEligible": True}} for s in subs]})

    def _find(self, phone: str | None, email: str | None) -> dict[str, Any] | None:
        """The person holding ``phone``, else the one holding ``email``; never creates or links."""
        return next(iter(self._named(phone, email)), None)

    def _named(self, phone: str | None, email: str | None) -> list[dict[str, Any]]:
        """The distinct people holding ``phone`` or ``email``, the phone's first."""
        found: list[dict[str, Any]] = []
        for kind, value in (("phones", phone), ("emails", email)):
            person = next((p for p in self.people if value and value in p[kind]), None)
            if person is not None and not any(person is f for f in found):
                found.append(person)
        return found

    def _link(self, phone: str | None, email: str | None) -> dict[str, Any]:
        """The one person a write names: identifiers sent together are linked to it for good, and people
        named by different ones are bridged into the first (the phone's)."""
        named = self._named(phone, email)
        if not named:
            named = [{"phones": [], "emails": [], "subscriptions": [], "attributes": {}}]
            self.people.append(named[0])
        person = named[0]
        for other in named[1:]:
            _bridge(person, other)
            self.people.remove(other)
        for kind, value in (("phones", phone), ("emails", email)):
            if value and value not in person[kind]:
                person[kind].append(value)
        return person


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


def _bridge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Merge ``other`` into ``into``: every identifier and subscription of both; ``into``'s attribute values win."""
    for kind in ("phones", "emails", "subscriptions"):
        into[kind].extend(v for v in other[kind] if v not in into[kind])
    into["attributes"] = {**other["attributes"], **into["attributes"]}


def _copy(person: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy; a state saved with one ``phone`` and one ``email`` per person loads as lists of them."""
    def listed(kind: str, single: str) -> list[str]:
        return list(person.get(kind) or ([person[single]] if person.get(single) else []))

    return {"phones": listed("phones", "phone"), "emails": listed("emails", "email"),
            "subscriptions": [dict(s) for s in person.get("subscriptions", [])],
            "attributes": dict(person.get("attributes", {}))}
