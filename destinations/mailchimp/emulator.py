"""A strict emulator of the Mailchimp Marketing API for audiences, tags and static segments (sandbox ``mailchimp``).

Served under ``/mailchimp``; the API lives below ``/3.0`` as on ``https://usN.api.mailchimp.com/3.0``, so a
connector's endpoint is ``http://127.0.0.1:PORT/mailchimp`` (``/3.0`` appended). Routes::

    GET  /3.0/ping                                       health check
    GET  /3.0/lists/{list_id}                            the audience (404 problem when unknown)
    POST /3.0/lists/{list_id}                            batch subscribe: {members[<=500], update_existing}
                                                         -> 200 {new_members, updated_members, errors[], ...}
    POST /3.0/lists/{list_id}/members                    add one contact: {email_address, status, merge_fields}
                                                         -> 200 the contact, or 400 problem ("Member Exists", ...)
    GET  /3.0/lists/{list_id}/members/{hash}             one contact (hash = md5 of the lowercased email)
    PATCH /3.0/lists/{list_id}/members/{hash}            update a contact: {merge_fields?, status?} -> 200 the contact;
                                                         an unknown merge tag is a 400 "Invalid Resource"
    POST /3.0/lists/{list_id}/members/{hash}/tags        {tags: [{name, status: active|inactive}]} -> 204
    GET  /3.0/lists/{list_id}/segments/{segment_id}      a tag or static segment
    GET  /3.0/lists/{list_id}/segments/{segment_id}/members   its contacts, count (<= 1000) / offset pages,
                                                         include_cleaned / _transactional / _unsubscribed
    GET  /3.0/lists/{list_id}/tag-search?name=           tags whose name starts with ``name``
    POST /3.0/lists/{list_id}/segments/{segment_id}      {members_to_add[<=500], members_to_remove[<=500]}
                                                         -> 200 {members_added, members_removed, errors[], ...}

Model: a contact's subscription status (subscribed, unsubscribed, cleaned, pending, transactional) is kept
on the contact; tags are static segments by name (one id space, as in Mailchimp), and membership of a tag
or segment is kept in the segment. Only the batch subscribe route writes a status: a new contact gets the
status sent, and an existing one changes only with ``update_existing: true`` (else it is reported in
``errors[]`` with ``ERROR_CONTACT_EXISTS``) or a PATCH that names a status. Merge fields are the audience's
own (``create_list(merge_fields=...)``, FNAME, LNAME, ADDRESS, PHONE and BIRTHDAY by default): a tag it
does not have is refused, as Mailchimp does ("Your merge fields were invalid"). Tags and segments never change a status, which is what lets
a test prove that leaving a segment unsubscribed nobody.

Strictness: HTTP Basic auth (any user, the key as password) or ``Bearer <key>`` (401 "API Key
Invalid"/"API Key Missing"); JSON bodies (400 "JSON Parse Exception"); the 500-row limits and the
documented statuses (400 "Invalid Resource" with ``errors[{field, message}]``); the addresses Mailchimp
refuses, by its published rules only (``destinations.mailchimp.email_rules``: an ASCII local part, any
IDN domain), and unknown merge fields: per-row ``errors[]`` on HTTP 200 from the batch subscribe, a 400
"Invalid Resource" problem ("... looks fake or invalid ...") from the one-contact add; a tag or segment
member must be on the list (404 for the tags route, ``errors[]`` for the segment route); at most
``max_connections`` (10) requests in flight, else 429 "Too Many Requests". Errors are
``application/problem+json`` ``{type, title, status, detail, instance}``.

The read-back routes and the hand edits a test makes (``remove_from_list``, ``add_to_list``,
``change_email``, as the Klaviyo emulator names them) live in ``destinations.mailchimp.emulator_listing``.

Test helpers: ``create_list``, ``create_segment``, ``seed_member``, ``subscription_status``,
``list_members``, ``tag_members``, ``segment_members``, ``member_tags``, ``peak_connections``,
``throttled``, ``max_connections``, ``bodies`` (the JSON of every write, for asserting on payloads).
``throttle_next`` answers the next request as the connection cap does; ``consent_of`` reads a contact's
status in the audience an audience_id names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from destinations.emulation import Emulator, Request, Response
from destinations.mailchimp.email_rules import INVALID_RESOURCE, batch_error, looks_fake_or_invalid
from destinations.mailchimp.emulator_listing import ListingRoutes

__all__ = ["MAX_BATCH", "MailchimpEmulator", "STATUSES", "subscriber_hash"]

MAX_BATCH = 500
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
DEFAULT_MERGE_FIELDS = ("FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY")
ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"
_HASH = re.compile(r"^[0-9a-f]{32}$").match
_ROUTES = [
    (re.compile(r"^/3\.0/ping/?$"), "ping"),
    (re.compile(r"^/3\.0/lists/([^/]+)/?$"), "list"),
    (re.compile(r"^/3\.0/lists/([^/]+)/members/?$"), "members"),
    (re.compile(r"^/3\.0/lists/([^/]+)/members/([^/]+)/?$"), "member"),
    (re.compile(r"^/3\.0/lists/([^/]+)/members/([^/]+)/tags/?$"), "member_tags"),
    (re.compile(r"^/3\.0/lists/([^/]+)/segments/([^/]+)/?$"), "segment"),
    (re.compile(r"^/3\.0/lists/([^/]+)/segments/([^/]+)/members/?$"), "segment_members"),
    (re.compile(r"^/3\.0/lists/([^/]+)/tag-search/?$"), "tag_search"),
]


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of a contact: the MD5 of the lowercased email."""
    return hashlib.md5(email.lower().encode()).hexdigest()


class Problem(Exception):
    """A problem+json error response."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors

    def response(self) -> Response:
        return _problem(self.status, self.title, self.detail, self.errors)


def _problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"type": ERRORS_DOC, "title": title, "status": status, "detail": detail, "instance": str(uuid.uuid4())}
    if errors:
        body["errors"] = errors
    return Response(status, body, {"Content-Type": "application/problem+json"})


def _not_found() -> Problem:
    return Problem(404, "Resource Not Found", "The requested resource could not be found.")


def _invalid(field: str, message: str) -> Problem:
    return Problem(400, INVALID_RESOURCE,
                   "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
                   [{"field": field, "message": message}])


class MailchimpEmulator(ListingRoutes, Emulator):
    """Mailchimp audiences with contacts' statuses kept apart from tag and segment membership."""

    name = "mailchimp"
    not_found = staticmethod(_not_found)
    invalid = staticmethod(_invalid)
    digest = staticmethod(subscriber_hash)

    def __init__(self, key: str | None = None) -> None:
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self.max_connections = 10
        super().__init__(key)

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.lists: dict[str, dict[str, Any]] = {}
        self.bodies: list[tuple[str, str, Any]] = []
        self.peak_connections = 0
        self.throttled = 0
        self._throttle_owed = False  # a 429 owed to the next request (throttle_next)
        self._next_segment = 1001

    def create_list(self, list_id: str | None = None, name: str = "sandbox audience",
                    merge_fields: tuple[str, ...] = DEFAULT_MERGE_FIELDS) -> str:
        with self.lock:
            list_id = list_id or uuid.uuid4().hex[:10]
            self.lists.setdefault(list_id, {"name": name, "members": {}, "segments": {}, "merge_fields": list(merge_fields)})
            return list_id

    def create_segment(self, list_id: str, name: str, segment_id: int | None = None) -> int:
        """A static segment (a tag is one too); returns its id."""
        with self.lock:
            segments = self.lists[list_id]["segments"]
            segment_id = segment_id if segment_id is not None else self._new_segment_id()
            segments.setdefault(str(segment_id), {"name": name, "members": {}})
            return int(segment_id)

    def seed_member(self, list_id: str, email: str, status: str = "subscribed", tags: tuple[str, ...] = ()) -> str:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self.lock:
            digest = subscriber_hash(email)
            self.lists[list_id]["members"][digest] = {"email_address": email, "status": status, "merge_fields": {},
                                                      "contact_id": uuid.uuid4().hex}
            for tag in tags:
                self._tag_segment(list_id, tag, create=True)["members"][digest] = None
            return digest

    def subscription_status(self, email: str, list_id: str | None = None) -> str | None:
        with self.lock:
            for key, audience in self.lists.items():
                member = audience["members"].get(subscriber_hash(email))
                if member and list_id in (None, key):
                    return member["status"]
            return None

    def list_members(self, list_id: str) -> dict[str, str]:
        """Email -> subscription status of every contact on the list."""
        with self.lock:
            return {m["email_address"]: m["status"] for m in self.lists[list_id]["members"].values()}

    def tag_members(self, list_id: str, tag: str) -> set[str]:
        with self.lock:
            segment = self._tag_segment(list_id, tag, create=False)
            return self._emails(list_id, segment["members"]) if segment else set()

    def segment_members(self, list_id: str, segment_id: int | str) -> set[str]:
        with self.lock:
            return self._emails(list_id, self.lists[list_id]["segments"][str(segment_id)]["members"])

    def member_tags(self, list_id: str, email: str) -> set[str]:
        with self.lock:
            digest = subscriber_hash(email)
            return {s["name"] for s in self.lists[list_id]["segments"].values() if digest in s["members"]}

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as Mailchimp throttles: 429 "Too Many Requests" problem+json without
        Retry-After (Mailchimp states no wait), so None whatever ``retry_after`` asks."""
        with self.lock:
            self._throttle_owed = True
        return None

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """Mailchimp holds consent per contact of an audience (list): the status (subscribed, unsubscribed,
        cleaned, pending, transactional) of the contact with this email in the list ``audience_id`` names
        ("LIST_ID:tag:NAME"); None when that list has no such contact."""
        email = identifiers.get("email")
        with self.lock:
            audience = self.lists.get(audience_id.strip().partition(":")[0])
            member = audience["members"].get(subscriber_hash(email.strip())) if audience and email else None
            return member["status"] if member else None

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            lists = {}
            for list_id, audience in self.lists.items():
                segments = {k: {"name": v["name"], "members": list(v["members"])} for k, v in audience["segments"].items()}
                lists[list_id] = dict(audience, segments=segments)
            return {"lists": lists, "next_segment": self._next_segment}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            for list_id, audience in state.get("lists", {}).items():
                segments = {k: {"name": v["name"], "members": dict.fromkeys(v["members"])} for k, v in audience.get("segments", {}).items()}
                self.lists[list_id] = dict(audience, segments=segments)
            self._next_segment = int(state.get("next_segment", 1001))

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.request_count, "peak_connections": self.peak_connections, "throttled": self.throttled,
                    "lists": {k: {"members": len(v["members"]), "segments": {s["name"]: len(s["members"]) for s in v["segments"].values()}}
                              for k, v in self.lists.items()}}

    def rows_in(self, request: Request) -> int:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            return 0
        if not isinstance(body, dict):
            return 0
        counted = [body.get(k) for k in ("members", "members_to_add", "members_to_remove", "tags")]
        return sum(len(v) for v in counted if isinstance(v, list))

    def fault_body(self, status: int) -> Any:
        titles = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        return {"type": ERRORS_DOC, "title": titles.get(status, "Injected Error"), "status": status,
                "detail": f"injected HTTP {status}", "instance": str(uuid.uuid4())}

    def bad_request(self, message: str) -> Response:
        return _problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")

    # ----- HTTP -----------------------------------------------------------------------------------
    def serve(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """Count connections in flight: above ``max_connections`` (or when ``throttle_next`` owes one) the
        request is refused with 429."""
        with self._flight_lock:
            self._in_flight += 1
            in_flight = self._in_flight
            self.peak_connections = max(self.peak_connections, in_flight)
        try:
            if in_flight > self.max_connections or self._take_throttle():
                with self.lock:
                    self.throttled += 1
                    self.request_count += 1
                    self.requests.append((request.method, request.path, self.rows_in(request)))
                return _problem(429, "Too Many Requests",
                                f"You have exceeded the limit of {self.max_connections} simultaneous connections.").encode()
            return super().serve(request)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def _take_throttle(self) -> bool:
        with self.lock:
            owed, self._throttle_owed = self._throttle_owed, False
            return owed

    def handle(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            for pattern, name in _ROUTES:
                match = pattern.match(request.path)
                if match:
                    method = getattr(self, f"_{request.method.lower()}_{name}", None)
                    if method is None:
                        raise Problem(405, "Method Not Allowed", "The requested method and resource are not compatible.")
                    if request.method != "GET":
                        self.bodies.append((request.method, request.path, self._json(request)))
                    return method(request, *match.groups())
            raise _not_found()
        except Problem as exc:
            return exc.response()

    def _authenticate(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if not auth:
            raise Problem(401, "API Key Missing", "Your request did not include an API key.")
        scheme, _, value = auth.partition(" ")
        key = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(value.strip()).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                key = None
        elif scheme.lower() == "bearer":
            key = value.strip()
        if key != self.key:
            raise Problem(401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")

    @staticmethod
    def _json(request: Request) -> Any:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise Problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.") from None
        if not isinstance(body, dict):
            raise Problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")
        return body

    def _list(self, list_id: str) -> dict[str, Any]:
        audience = self.lists.get(list_id)
        if audience is None:
            raise _not_found()
        return audience

    # ----- routes ---------------------------------------------------------------------------------
    def _get_ping(self, request: Request) -> Response:
        return Response(200, {"health_status": "Everything's Chimpy!"})

    def _get_list(self, request: Request, list_id: str) -> Response:
        audience = self._list(list_id)
        return Response(200, {"id": list_id, "name": audience["name"], "stats": {"member_count": len(audience["members"])}})

    def _post_list(self, request: Request, list_id: str) -> Response:
        audience = self._list(list_id)
        body = self._json(request)
        members, update = body.get("members"), body.get("update_existing", False)
        if not isinstance(members, list):
            raise _invalid("members", "Required field 'members' must be an array.")
        if len(members) > MAX_BATCH:
            raise _invalid("members", f"Schema describes array, maximum {MAX_BATCH} items, {len(members)} found.")
        if not isinstance(update, bool):
            raise _invalid("update_existing", "Schema describes boolean.")
        for index, row in enumerate(members):
            if not isinstance(row, dict) or not isinstance(row.get("email_address"), str):
                raise _invalid(f"members.item:{index}.email_address", "Required field email_address is missing.")
            if row.get("status") not in STATUSES:
                raise _invalid(f"members.item:{index}.status", "Data did not match any of the schemas described in the documentation.")
        new, updated, errors, seen = [], [], [], set()
        for row in members:
            digest = subscriber_hash(row["email_address"])
            if digest in seen:  # a duplicate in one batch: the first occurrence wins
                continue
            seen.add(digest)
            result = self._subscribe(list_id, audience, row, update)
            (new if result == "new" else updated if result == "updated" else errors).append(
                self._member(list_id, digest) if result in ("new", "updated") else result)
        return Response(200, {"new_members": new, "updated_members": updated, "errors": errors,
                              "total_created": len(new), "total_updated": len(updated), "error_count": len(errors), "_links": []})

    def _post_members(self, request: Request, list_id: str) -> Response:
        """Add one contact: the batch subscribe's checks, each refusal a 400 problem instead of an ``errors[]`` row."""
        audience = self._list(list_id)
        row = self._json(request)
        if not isinstance(row.get("email_address"), str):
            raise _invalid("email_address", "This value should not be blank.")
        if row.get("status") not in STATUSES:
            raise _invalid("status", "Data did not match any of the schemas described in the documentation.")
        result = self._subscribe(list_id, audience, row, update=False)
        if isinstance(result, dict):
            title = "Member Exists" if result["error_code"] == "ERROR_CONTACT_EXISTS" else INVALID_RESOURCE
            fields = [{"field": result["field"], "message": result["field_message"]}] if result["field"] == "merge_fields" else None
            raise Problem(400, title, result["error"], fields)
        return Response(200, self._member(list_id, subscriber_hash(row["email_address"])))

    def _subscribe(self, list_id: str, audience: dict[str, Any], row: dict[str, Any], update: bool) -> str | dict[str, str]:
        email = row["email_address"]
        if looks_fake_or_invalid(email):
            return batch_error(email)
        merge = row.get("merge_fields") or {}
        unknown = sorted(k for k in merge if k not in audience["merge_fields"])
        if unknown:
            return {"email_address": email, "error": "Your merge fields were invalid.", "error_code": "ERROR_GENERIC",
                    "field": "merge_fields", "field_message": f"Unknown merge field: {unknown[0]}"}
        digest = subscriber_hash(email)
        existing = audience["members"].get(digest)
        if existing is not None and not update:
            return {"email_address": email, "error": f"{email} is already a list member. Use PUT to insert or update list members.",
                    "error_code": "ERROR_CONTACT_EXISTS", "field": "", "field_message": ""}
        if existing is not None:
            existing.update(status=row["status"], merge_fields=existing["merge_fields"] | merge)
            return "updated"
        audience["members"][digest] = {"email_address": email, "status": row["status"], "merge_fields": dict(merge),
                                       "contact_id": uuid.uuid4().hex}
        return "new"

    def _member(self, list_id: str, digest: str) -> dict[str, Any]:
        member = self.lists[list_id]["members"][digest]
        tags = [{"id": int(k), "name": s["name"]} for k, s in self.lists[list_id]["segments"].items() if digest in s["members"]]
        # contact_id stays when the email changes (the id, the MD5 of the email, does not)
        return {"id": digest, "contact_id": member.get("contact_id") or digest, "email_address": member["email_address"],
                "status": member["status"], "merge_fields": member["merge_fields"], "list_id": list_id,
                "tags_count": len(tags), "tags": tags}

    def _patch_member(self, request: Request, list_id: str, digest: str) -> Response:
        """Update one contact: the fields given, merge fields one by one ("" empties one); unknown merge tags
        and statuses are a 400 "Invalid Resource" problem and change nothing."""
        audience = self._list(list_id)
        member = audience["members"].get(digest)
        if member is None:
            raise _not_found()
        row = self._json(request)
        merge = row.get("merge_fields", {})
        if not isinstance(merge, dict):
            raise _invalid("merge_fields", "Data did not match any of the schemas described in the documentation.")
        unknown = sorted(k for k in merge if k not in audience["merge_fields"])
        if unknown:
            raise Problem(400, INVALID_RESOURCE, "Your merge fields were invalid.",
                          [{"field": "merge_fields", "message": f"Unknown merge field: {unknown[0]}"}])
        if "status" in row and row["status"] not in STATUSES:
            raise _invalid("status", "Data did not match any of the schemas described in the documentation.")
        member["merge_fields"] = member["merge_fields"] | merge
        if "status" in row:
            member["status"] = row["status"]
        return Response(200, self._member(list_id, digest))

    def _get_member(self, request: Request, list_id: str, digest: str) -> Response:
        if digest not in self._list(list_id)["members"]:
            raise _not_found()
        return Response(200, self._member(list_id, digest))

    def _post_member_tags(self, request: Request, list_id: str, digest: str) -> Response:
        audience = self._list(list_id)
        body = self._json(request)
        tags = body.get("tags")
        if not isinstance(tags, list) or not tags:
            raise _invalid("tags", "Required field 'tags' must be a non-empty array.")
        for index, tag in enumerate(tags):
            if not isinstance(tag, dict) or not isinstance(tag.get("name"), str) or not tag["name"].strip() or len(tag["name"]) > 100:
                raise _invalid(f"tags.item:{index}.name", "A tag name is a string of 1 to 100 characters.")
            if tag.get("status") not in ("active", "inactive"):
                raise _invalid(f"tags.item:{index}.status", "Value must be one of: active, inactive.")
        if not _HASH(digest) or digest not in audience["members"]:
            raise _not_found()
        for tag in tags:
            segment = self._tag_segment(list_id, tag["name"], create=tag["status"] == "active")
            if segment is None:
                continue
            if tag["status"] == "active":
                segment["members"][digest] = None
            else:
                segment["members"].pop(digest, None)
        return Response(204)

    def _get_segment(self, request: Request, list_id: str, segment_id: str) -> Response:
        segment = self._list(list_id)["segments"].get(segment_id)
        if segment is None:
            raise _not_found()
        return Response(200, {"id": int(segment_id), "name": segment["name"], "member_count": len(segment["members"]),
                              "type": "static", "list_id": list_id})

    def _post_segment(self, request: Request, list_id: str, segment_id: str) -> Response:
        audience = self._list(list_id)
        segment = audience["segments"].get(segment_id)
        if segment is None:
            raise _not_found()
        body = self._json(request)
        adds, removes = body.get("members_to_add", []), body.get("members_to_remove", [])
        for field, emails in (("members_to_add", adds), ("members_to_remove", removes)):
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise _invalid(field, "Schema describes array of strings.")
            if len(emails) > MAX_BATCH:
                raise _invalid(field, f"Schema describes array, maximum {MAX_BATCH} items, {len(emails)} found.")
        added, removed, unknown = [], [], []
        for emails, target in ((adds, added), (removes, removed)):
            for email in emails:
                digest = subscriber_hash(email)
                if digest not in audience["members"]:
                    unknown.append(email)
                elif target is added:
                    segment["members"][digest] = None
                    added.append(self._member(list_id, digest))
                elif segment["members"].pop(digest, False) is None:
                    removed.append(self._member(list_id, digest))
        errors = [{"email_addresses": unknown, "error": "Email addresses do not belong to this list"}] if unknown else []
        return Response(200, {"members_added": added, "members_removed": removed, "errors": errors,
                              "total_added": len(added), "total_removed": len(removed), "error_count": len(unknown), "_links": []})

    # ----- helpers --------------------------------------------------------------------------------
    def _new_segment_id(self) -> int:
        self._next_segment += 1
        return self._next_segment

    def _tag_segment(self, list_id: str, tag: str, *, create: bool) -> dict[str, Any] | None:
        segments = self.lists[list_id]["segments"]
        for segment in segments.values():
            if segment["name"] == tag:
                return segment
        if not create:
            return None
        segments[str(self._new_segment_id())] = segment = {"name": tag, "members": {}}
        return segment

    def _emails(self, list_id: str, digests: Mapping[str, None]) -> set[str]:
        members = self.lists[list_id]["members"]
        return {members[d]["email_address"] for d in digests if d in members}
