"""Klaviyo's wire format as the sandbox's emulator speaks it: the JSON:API error envelope, profile bodies,
filters, sparse fieldsets and cursor pages (``destinations.klaviyo.emulator`` serves the routes)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from destinations.emulation import Request, Response
from destinations.klaviyo.profile_store import ATTRIBUTES, IDENTIFIERS, DuplicateProfile

__all__ = [
    "DUPLICATE", "E164_OK", "EMAIL_OK", "KlaviyoError", "MAX_PAGE", "base_url", "duplicate", "error_item", "invalid",
    "keyset_page", "no_identifier", "now", "offset_page", "parse_filter", "profile_body", "row_problem", "set_only",
    "sparse_fields", "throttled_item",
]

MAX_PAGE = 100  # page[size] of every collection served here: 1-100, default 20
EMAIL_OK = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$").match
E164_OK = re.compile(r"^\+[1-9]\d{6,14}$").match
_FILTER = re.compile(r"^\s*(equals|any)\(\s*([a-z_]+)\s*,\s*(.+)\)\s*$", re.S)
DUPLICATE = ("Conflict.", "A profile already exists with one of these identifiers.")
"""Title and detail of Klaviyo's ``duplicate_profile`` error."""


class KlaviyoError(Exception):
    """One JSON:API error response (raised inside a route, answered by ``response``)."""

    def __init__(self, status: int, code: str, title: str, detail: str, pointer: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.headers = status, dict(headers or {})
        self.items = [error_item(status, code, title, detail, pointer)]

    @classmethod
    def of(cls, status: int, items: list[dict[str, Any]]) -> "KlaviyoError":
        error = cls(status, items[0]["code"], items[0]["title"], items[0]["detail"])
        error.items = items
        return error

    def response(self) -> Response:
        return Response(self.status, {"errors": self.items}, self.headers)


def error_item(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
    """One item of Klaviyo's error envelope."""
    item: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail}
    if pointer is not None:
        item["source"] = {"pointer": pointer}
    item.update(links={}, meta={})
    return item


def throttled_item(wait: int) -> dict[str, Any]:
    """The error item of a 429, stating the wait as Klaviyo does."""
    return error_item(429, "throttled", "Request was throttled.",
                      f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}.")


def invalid(detail: str, pointer: str | None = None) -> KlaviyoError:
    return KlaviyoError(400, "invalid", "Invalid input.", detail, pointer)


def parse_filter(text: str, fields: tuple[str, ...] = ("id", *IDENTIFIERS)) -> tuple[str, list[str]]:
    match = _FILTER.match(text)
    if not match:
        raise invalid("Expected a filter such as equals(email,\"a@b.com\") or any(email,[\"a@b.com\"]).", None)
    operator, field, raw = match.groups()
    if field not in fields:
        raise invalid(f"Filtering on '{field}' is not supported.", None)
    try:
        value = json.loads(raw)
    except ValueError:
        raise invalid(f"Cannot parse the filter value {raw[:50]!r}.", None) from None
    values = value if operator == "any" else [value]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or (operator == "equals" and isinstance(value, list)):
        raise invalid("equals() takes one string; any() takes an array of strings.", None)
    if len(values) > 100:
        raise invalid("any() takes at most 100 values.", None)
    return field, values


def sparse_fields(params: Mapping[str, list[str]], allowed: frozenset[str]) -> frozenset[str]:
    """The names asked for in ``fields[profile]`` (a dotted name stands for its top-level field); an
    undocumented name is a 400, as Klaviyo answers one."""
    wanted = [name for name in params.get("fields[profile]", [""])[0].split(",") if name]
    unknown = [name for name in wanted if name.split(".")[0] not in allowed]
    if unknown:
        raise invalid(f"'{unknown[0]}' is not a valid field for the resource 'profile'.", None)
    return frozenset(name.split(".")[0] for name in wanted)


def profile_body(request: Request, *, with_id: bool | None) -> tuple[str | None, dict[str, Any]]:
    """(id, attributes) of a profile request body, validated as Klaviyo does; ``with_id`` True requires an
    id, False ignores one, None takes one when given."""
    body = request.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != "profile":
        raise invalid("'data.type' must be 'profile'.", "/data/type")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise invalid("'data.attributes' must be an object.", "/data/attributes")
    profile_id = data.get("id") if with_id is not False else None
    if with_id and not isinstance(profile_id, str):
        raise invalid("'data.id' is required.", "/data/id")
    for field, check, what in (("email", EMAIL_OK, "email address"), ("phone_number", E164_OK, "phone number")):
        value = attributes.get(field)
        if value is not None and not (isinstance(value, str) and check(value)):
            raise invalid(f"Invalid {what}.", f"/data/attributes/{field}")
    for field in IDENTIFIERS:
        if attributes.get(field) is not None and not isinstance(attributes[field], str):
            raise invalid(f"'{field}' must be a string.", f"/data/attributes/{field}")
    if with_id is False and not any(attributes.get(field) for field in IDENTIFIERS):
        raise no_identifier()
    if "properties" in attributes and not isinstance(attributes["properties"], dict):
        raise invalid("'properties' must be an object.", "/data/attributes/properties")
    return profile_id, {k: attributes[k] for k in (*ATTRIBUTES, "properties") if k in attributes}


def unset_keys(request: Request) -> list[str]:
    """``meta.patch_properties.unset`` of a profile body: a key or a list of keys."""
    meta = ((request.json().get("data") or {}).get("meta") or {})
    unset = (meta.get("patch_properties") or {}).get("unset") if isinstance(meta, dict) else None
    if unset is None:
        return []
    keys = [unset] if isinstance(unset, str) else unset
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise invalid("'patch_properties.unset' must be a string or a list of strings.", "/data/meta/patch_properties/unset")
    return keys


def set_only(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v not in (None, "")}


def duplicate(exc: DuplicateProfile) -> KlaviyoError:
    """Klaviyo's 409 for an identifier another profile holds, naming that profile."""
    error = KlaviyoError(409, "duplicate_profile", *DUPLICATE, "/data/attributes")
    error.items[0]["meta"] = {"duplicate_profile_id": exc.profile_id}
    return error


def no_identifier() -> KlaviyoError:
    return invalid("A profile must have at least one of email, phone_number or external_id.", "/data/attributes")


def row_problem(attributes: Mapping[str, Any], pointer: str) -> dict[str, Any] | None:
    if "properties" in attributes and not isinstance(attributes["properties"], dict):
        return error_item(400, "invalid", "Invalid input.", "'properties' must be an object.", pointer + "/properties")
    if not any(attributes.get(k) for k in IDENTIFIERS):
        return error_item(400, "invalid", "Invalid input.", "One of email, phone_number or external_id is required.", pointer)
    email = attributes.get("email")
    if email and not EMAIL_OK(str(email)):
        return error_item(400, "invalid", "Invalid input.", f"Invalid email address: {email}", pointer + "/email")
    phone = attributes.get("phone_number")
    if phone and not E164_OK(str(phone)):
        return error_item(400, "invalid", "Invalid input.", "Invalid phone number format (Example of a valid format: +13239169023)",
                          pointer + "/phone_number")
    return None


def offset_page(request: Request, name: str, items: list[dict[str, Any]], max_size: int) -> Response:
    """A page of a collection that does not change while it is read (a finished job's profiles, a lookup)."""
    params = request.params()
    try:
        size = int(params.get("page[size]", ["20"])[0])
        offset = int(base64.urlsafe_b64decode(params.get("page[cursor]", [""])[0] + "==").decode() or 0)
    except ValueError:
        raise invalid("page[size] must be an integer and page[cursor] a cursor from links.next.", None) from None
    if not 1 <= size <= max_size:
        raise invalid(f"page[size] must be between 1 and {max_size}.", None)
    url = base_url(request, name) + request.path
    following = {k: v[0] for k, v in params.items() if k != "page[cursor]"}
    next_url = None
    if offset + size < len(items):
        cursor = base64.urlsafe_b64encode(str(offset + size).encode()).decode().rstrip("=")
        next_url = url + "?" + urlencode(following | {"page[cursor]": cursor})
    self_url = url + ("?" + request.query if request.query else "")
    return Response(200, {"data": items[offset:offset + size], "links": {"self": self_url, "next": next_url, "prev": None}})


def keyset_page(request: Request, name: str, ids: list[str], seq: Callable[[str], int],
                render: Callable[[str], dict[str, Any]]) -> Response:
    """A page of list members in joined order (``sort=-joined_group_at``: newest first). The cursor names
    the last member served, not an offset, so members joining or leaving between pages shift nothing."""
    params = request.params()
    sort = params.get("sort", ["joined_group_at"])[0]
    if sort not in ("joined_group_at", "-joined_group_at"):
        raise invalid(f"Sorting by '{sort}' is not supported.", None)
    descending = sort.startswith("-")
    try:
        size = int(params.get("page[size]", ["20"])[0])
        raw = params.get("page[cursor]", [""])[0]
        after = int(base64.urlsafe_b64decode(raw + "==").decode()) if raw else None
    except ValueError:
        raise invalid("page[size] must be an integer and page[cursor] a cursor from links.next.", None) from None
    if not 1 <= size <= MAX_PAGE:
        raise invalid(f"page[size] must be between 1 and {MAX_PAGE}.", None)
    ordered = sorted(ids, key=seq, reverse=descending)
    if after is not None:
        ordered = [p for p in ordered if (seq(p) < after if descending else seq(p) > after)]
    page = ordered[:size]
    url = base_url(request, name) + request.path
    next_url = None
    if len(ordered) > size:
        following = {k: v[0] for k, v in params.items() if k != "page[cursor]"}
        cursor = base64.urlsafe_b64encode(str(seq(page[-1])).encode()).decode().rstrip("=")
        next_url = url + "?" + urlencode(following | {"page[cursor]": cursor})
    self_url = url + ("?" + request.query if request.query else "")
    return Response(200, {"data": [render(p) for p in page], "links": {"self": self_url, "next": next_url, "prev": None}})


def base_url(request: Request, name: str) -> str:
    return f"http://{request.headers.get('host', '127.0.0.1')}/{name}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
