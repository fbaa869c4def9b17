"""A strict emulator of Klaviyo's REST API for lists, profiles and profile bulk import jobs (sandbox ``klaviyo``).

Served under ``/klaviyo``, so a connector's base URL is ``http://127.0.0.1:PORT/klaviyo``. Routes::

    GET    /api/lists/{id}                                   the list (404 when unknown)
    GET    /api/lists/{id}/profiles                          the list's profiles (page[size] 1-100, default 20;
                                                             fields[profile], filter on email/phone_number, sort)
    GET    /api/lists/{id}/relationships/profiles            member profile ids (page[size] 1-100)
    POST   /api/lists/{id}/relationships/profiles            add profiles by id    (<= 1,000; 204)
    DELETE /api/lists/{id}/relationships/profiles            remove profiles by id (<= 1,000; 204)
    GET    /api/profiles[?filter=...]                        equals(f,"v") / any(f,["v",...]) (<= 100 values) on
                                                             id, email, phone_number, external_id (page[size] <= 100)
    POST   /api/profiles                                     Create Profile (201; 409 duplicate_profile)
    PATCH  /api/profiles/{id}                                Update Profile (200; 409 duplicate_profile)
    POST   /api/profile-import                               Create or Update Profile (201 / 200; 409 duplicate_profile)
    POST   /api/profile-bulk-import-jobs                     upsert <= 10,000 profiles, 5 MB; 202 + job
    GET    /api/profile-bulk-import-jobs/{id}                status: queued -> processing -> complete
    GET    /api/profile-bulk-import-jobs/{id}/profiles       profiles the job created or updated (<= 100/page)
    GET    /api/profile-bulk-import-jobs/{id}/relationships/profiles   their ids
    GET    /api/profile-bulk-import-jobs/{id}/import-errors  rows that failed, with source.pointer
    POST   /api/profile-subscription-bulk-create-jobs        subscribe (email/sms marketing consent SUBSCRIBED)
    POST   /api/profile-subscription-bulk-delete-jobs        unsubscribe: consent UNSUBSCRIBED, globally

Identity: one profile per email, per phone number and per external id, enforced by
``destinations.klaviyo.profile_store`` (which cites Klaviyo's pages): a create or update that would give
a value to a second profile is a 409 ``duplicate_profile`` naming the holder in
``meta.duplicate_profile_id``; an import row whose identifiers name two profiles is that row's import
error. A list holds profiles, so taking a profile off a list takes off every member of ours that
resolved to it.

Layout: this class holds the state, the test API, authentication, rate limits and the list routes; the
profile routes are ``emulator_profiles``, the job routes ``emulator_jobs`` (mixins), and Klaviyo's wire
format (errors, bodies, filters, pages) ``emulator_wire``.

Consent lives on the profile (``email_consent``/``sms_consent``: NEVER_SUBSCRIBED, SUBSCRIBED,
UNSUBSCRIBED) and list membership in the list, apart: the list relationship routes and the import job
never change consent; only the two subscription job routes do, which is what lets a test prove that a
remove never unsubscribed anyone.

Strictness: ``Authorization: Klaviyo-API-Key <key>`` (401 ``not_authenticated`` /
``authentication_failed``), a ``revision`` header ``YYYY-MM-DD`` (400), a JSON content type on bodies
(415), the batch and page limits above (400), a JSON:API shape (400 with ``source.pointer``), sparse
fieldsets limited to the fields Klaviyo documents (400), unknown list or profile (404), unknown profile id
in a relationship call (400 pointing at ``/data/{i}/id``: nothing is applied), every scope an endpoint
documents (403), and per-endpoint fixed-window rate limits (1-second burst and 1-minute steady, 429 with
``Retry-After``). Import rows with an invalid email or a phone not in E.164 become import errors; the job
still completes. Errors use Klaviyo's envelope ``{"errors": [{id, status, code, title, detail, source,
links, meta}]}``. Limits and fields: Klaviyo's OpenAPI documents for revision 2026-07-15
(klaviyo/openapi: openapi/stable/apis/get_profiles_for_list.json, get_profile_ids_for_list.json,
create_profile.json, update_profile.json, create_or_update_profile.json; the pages are
https://developers.klaviyo.com/en/reference/get_profiles_for_list and the like).

Test helpers: ``create_list``, ``seed_profile``, ``list_members`` (labels), ``list_member_ids``,
``subscription_status``, ``profile_id``, ``throttled`` (429s answered by the rate limiter), ``job_polls``
(GETs answered "processing" before a job completes), ``rate_limits`` (on/off), ``scopes`` (when set, the
key only has these scopes; others get 403). ``throttle_next`` answers the next request as the rate
limiter does; ``consent_of`` reads the consent of the profile identifiers match. For reconciliation
tests, changes made "by hand" in Klaviyo, outside the connector: ``members`` (the list's profiles with
their identifiers), ``add_to_list``, ``remove_from_list`` (by email) and ``change_email`` (refused as
Update Profile refuses a value another profile holds).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from destinations.emulation import Emulator, Request, Response
from destinations.klaviyo import emulator_wire as wire
from destinations.klaviyo.emulator_jobs import MAX_IMPORT_PROFILES, JobRoutes
from destinations.klaviyo.emulator_profiles import LIST_MEMBER_FIELDS, ProfileRoutes
from destinations.klaviyo.profile_store import IDENTIFIERS, DuplicateProfile, MissingIdentifier, ProfileStore

__all__ = ["KlaviyoEmulator", "MAX_IMPORT_PROFILES", "MAX_LIST_PROFILES"]

MAX_LIST_PROFILES = 1_000
CONSENTS = ("NEVER_SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED")
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$").match
_LR, _LW, _PR, _PW = "lists:read", "lists:write", "profiles:read", "profiles:write"
# (method, route) -> (burst per second, steady per minute, scopes), as Klaviyo's OpenAPI (revision 2026-07-15) states them
_LIMITS: dict[tuple[str, str], tuple[int, int, tuple[str, ...]]] = {
    ("GET", "list"): (75, 750, (_LR,)),
    ("GET", "list-members"): (75, 750, (_LR, _PR)),
    ("GET", "list-profiles"): (75, 750, (_LR, _PR)),
    ("POST", "list-profiles"): (10, 150, (_LW, _PW)),
    ("DELETE", "list-profiles"): (10, 150, (_LW, _PW)),
    ("GET", "profiles"): (75, 750, (_PR,)),
    ("POST", "profiles"): (75, 750, (_PW,)),
    ("PATCH", "profile"): (75, 750, (_PW,)),
    ("POST", "profile-import"): (75, 750, (_PW,)),
    ("POST", "import-jobs"): (10, 150, (_LW, _PW)),
    ("GET", "import-job"): (10, 150, (_LR, _PR)),
    ("GET", "import-job-profiles"): (10, 150, (_PR,)),
    ("GET", "import-job-profile-ids"): (10, 150, (_PR,)),
    ("GET", "import-job-errors"): (10, 150, (_PR,)),
    ("POST", "subscribe-jobs"): (75, 750, (_LW, _PW, "subscriptions:write")),
    ("POST", "unsubscribe-jobs"): (75, 750, (_LW, _PW, "subscriptions:write")),
}
_ROUTES = [
    (re.compile(r"^/api/lists/([^/]+)/?$"), "list"),
    (re.compile(r"^/api/lists/([^/]+)/profiles/?$"), "list-members"),
    (re.compile(r"^/api/lists/([^/]+)/relationships/profiles/?$"), "list-profiles"),
    (re.compile(r"^/api/profiles/?$"), "profiles"),
    (re.compile(r"^/api/profiles/([^/]+)/?$"), "profile"),
    (re.compile(r"^/api/profile-import/?$"), "profile-import"),
    (re.compile(r"^/api/profile-bulk-import-jobs/?$"), "import-jobs"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/?$"), "import-job"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/profiles/?$"), "import-job-profiles"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/relationships/profiles/?$"), "import-job-profile-ids"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/import-errors/?$"), "import-job-errors"),
    (re.compile(r"^/api/profile-subscription-bulk-create-jobs/?$"), "subscribe-jobs"),
    (re.compile(r"^/api/profile-subscription-bulk-delete-jobs/?$"), "unsubscribe-jobs"),
]

class KlaviyoEmulator(ProfileRoutes, JobRoutes, Emulator):
    """Klaviyo's list, profile and bulk import endpoints, with consent kept apart from list membership."""

    name = "klaviyo"

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.store = ProfileStore()
        self.lists: dict[str, dict[str, Any]] = {}  # id -> {name, members: {profile id: (join sequence, joined_group_at)}}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.throttled = 0
        self.job_polls = 1
        self.rate_limits = True
        self.scopes: set[str] | None = None
        self._windows: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._joins = 0

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.store.profiles

    def create_list(self, list_id: str | None = None, name: str = "sandbox list") -> str:
        with self.lock:
            list_id = list_id or f"L{len(self.lists) + 1:05d}"
            self.lists.setdefault(list_id, {"name": name, "members": {}})
            return list_id

    def seed_profile(self, email: str | None = None, phone_number: str | None = None, external_id: str | None = None,
                     *, email_consent: str = "NEVER_SUBSCRIBED", sms_consent: str = "NEVER_SUBSCRIBED",
                     lists: tuple[str, ...] = ()) -> str:
        """Create (or update, as an import would) the profile with these identifiers, with the given consent
        and list memberships; returns its id. ValueError when the identifiers name two profiles."""
        if email_consent not in CONSENTS or sms_consent not in CONSENTS:
            raise ValueError(f"consent must be one of {CONSENTS}")
        with self.lock:
            profile_id = self._hand_upsert(email, phone_number, external_id)
            self.profiles[profile_id].update(email_consent=email_consent, sms_consent=sms_consent)
            for list_id in lists:
                self._join(self.create_list(list_id), profile_id)
            return profile_id

    def profile_id(self, email: str) -> str | None:
        with self.lock:
            return self.store.find("email", email)

    def subscription_status(self, email: str, channel: str = "email") -> str | None:
        """Marketing consent of the profile with this email: NEVER_SUBSCRIBED, SUBSCRIBED or UNSUBSCRIBED."""
        with self.lock:
            profile_id = self.store.find("email", email)
            return self.profiles[profile_id][f"{channel}_consent"] if profile_id else None

    def list_member_ids(self, list_id: str) -> set[str]:
        with self.lock:
            return set(self.lists[list_id]["members"])

    def list_members(self, list_id: str) -> set[str]:
        """Emails (else phone, else external id) of the list's members."""
        with self.lock:
            return {_label(self.profiles[p]) for p in self.lists[list_id]["members"]}

    def members(self, list_id: str) -> list[dict[str, str]]:
        """The list's profiles in the order they joined, each ``{id, email, phone_number, external_id}`` with
        the identifiers it holds; KeyError for an unknown list."""
        with self.lock:
            return [{"id": p} | {k: self.profiles[p][k] for k in IDENTIFIERS if self.profiles[p].get(k)}
                    for p in self.lists[list_id]["members"]]

    def add_to_list(self, list_id: str, *, email: str | None = None, phone_number: str | None = None,
                    external_id: str | None = None) -> str:
        """Put the profile these identifiers name (created when none does) on the list by hand, as someone
        working in Klaviyo would; returns its id. ValueError when they name two profiles, KeyError for an
        unknown list."""
        with self.lock:
            if list_id not in self.lists:
                raise KeyError(list_id)
            profile_id = self._hand_upsert(email, phone_number, external_id)
            self._join(list_id, profile_id)
            return profile_id

    def remove_from_list(self, list_id: str, email: str) -> str | None:
        """Take the profile holding ``email`` off the list by hand; returns its id (None when no profile holds
        it; KeyError for an unknown list). Every member of ours resolved to that profile leaves with it."""
        with self.lock:
            members = self.lists[list_id]["members"]
            profile_id = self.store.find("email", email)
            if profile_id is not None:
                members.pop(profile_id, None)
                self.dirty = True
            return profile_id

    def change_email(self, email: str, new_email: str) -> str:
        """Change the email of the profile holding ``email`` by hand; returns its id. Refused as Update
        Profile refuses it (its 409 ``duplicate_profile``) with ValueError when another profile holds
        ``new_email``; KeyError when no profile holds ``email``."""
        with self.lock:
            profile_id = self.store.find("email", email)
            if profile_id is None:
                raise KeyError("no profile holds that email")
            try:
                self.store.update(profile_id, {"email": new_email})
            except DuplicateProfile as exc:
                raise ValueError(f"duplicate_profile: that email is held by profile {exc.profile_id}") from None
            self.dirty = True
            return profile_id

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as Klaviyo throttles: 429 with ``Retry-After`` in whole seconds (at least
        1) and the same wait in the error's detail; returns that wait."""
        wait = max(1, math.ceil(retry_after))
        self.inject_http(429, 1, wait, body={"errors": [wire.throttled_item(wait)]})
        return float(wait)

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """Klaviyo holds consent per profile, whatever the list: the email and SMS marketing consent of the
        profile the identifiers match (email, then external_id, then phone, as an import matches); None when
        no profile does."""
        with self.lock:
            owners = self.store.owners({"email": identifiers.get("email"), "external_id": identifiers.get("external_id"),
                                        "phone_number": identifiers.get("phone")})
            if not owners:
                return None
            profile = self.profiles[owners[0][1]]
            return {"email": profile["email_consent"], "sms": profile["sms_consent"]}

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            lists = {k: {"name": v["name"], "members": [[p, joined[1]] for p, joined in v["members"].items()]}
                     for k, v in self.lists.items()}
            return {"profiles": self.profiles, "lists": lists, "jobs": self.jobs, "next_id": self.store.next_id}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            profiles = state.get("profiles", {})
            self.store = ProfileStore(profiles, int(state.get("next_id", len(profiles) + 1)))
            for list_id, saved in state.get("lists", {}).items():
                self.create_list(list_id, saved["name"])
                for item in saved["members"]:  # [id, joined_group_at]; older states saved the id alone
                    profile_id, joined = (item, None) if isinstance(item, str) else item
                    self._join(list_id, profile_id, joined)
            self.jobs = {k: dict(v) for k, v in state.get("jobs", {}).items()}

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.request_count, "profiles": len(self.profiles), "throttled": self.throttled,
                    "lists": {k: len(v["members"]) for k, v in self.lists.items()}}

    def _hand_upsert(self, email: str | None, phone_number: str | None, external_id: str | None) -> str:
        try:
            profile_id, _ = self.store.upsert(wire.set_only({"email": email, "phone_number": phone_number, "external_id": external_id}))
        except DuplicateProfile as exc:
            raise ValueError(f"duplicate_profile: the identifiers name two profiles ({exc.field} is held by {exc.profile_id})") from None
        except MissingIdentifier:
            raise ValueError("a profile needs an email, a phone number or an external id") from None
        self.dirty = True
        return profile_id

    def _join(self, list_id: str, profile_id: str, joined: str | None = None) -> None:
        """Put a profile on a list; one already on it keeps its place (Klaviyo's add is a set operation)."""
        members = self.lists[list_id]["members"]
        if profile_id not in members:
            self._joins += 1
            members[profile_id] = (self._joins, joined or wire.now())

    def rows_in(self, request: Request) -> int:
        try:
            data = json.loads(request.body or b"null")
        except ValueError:
            return 0
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            return len(data["data"])
        try:
            return len(data["data"]["attributes"]["profiles"]["data"])
        except (KeyError, TypeError):
            return 0

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {"errors": [wire.error_item(429, "throttled", "Request was throttled.", "Request was throttled. Expected available in 1 second.")]}
        if status >= 500:
            return {"errors": [wire.error_item(status, "error", "A server error occurred.", "A server error occurred.")]}
        return {"errors": [wire.error_item(status, "error", "Injected error.", f"injected HTTP {status}")]}

    def bad_request(self, message: str) -> Response:
        return wire.invalid(f"The request body is not valid JSON: {message}").response()

    # ----- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            route, args = _route(request.path)
            limits = _LIMITS.get((request.method, route))
            if limits is None:
                raise wire.KlaviyoError(405, "method_not_allowed", "Method not allowed.", f'Method "{request.method}" not allowed.')
            self._authenticate(request, limits[2])
            self._throttle(request.method, route, limits)
            return getattr(self, "_" + request.method.lower() + "_" + route.replace("-", "_"))(request, *args)
        except wire.KlaviyoError as exc:
            return exc.response()

    def _authenticate(self, request: Request, scopes: tuple[str, ...]) -> None:
        auth = request.headers.get("authorization", "")
        if not auth:
            raise wire.KlaviyoError(401, "not_authenticated", "Authentication credentials were not provided.",
                                    "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.")
        scheme, _, key = auth.partition(" ")
        if scheme != "Klaviyo-API-Key" or key.strip() != self.key:
            raise wire.KlaviyoError(401, "authentication_failed", "Incorrect authentication credentials.",
                                    "Incorrect authentication credentials.")
        missing = [scope for scope in scopes if self.scopes is not None and scope not in self.scopes]
        if missing:
            raise wire.KlaviyoError(403, "permission_denied", "You do not have permission to perform this action.",
                                    f"This API key is missing required scopes: {', '.join(missing)}.")
        if not _REVISION(request.headers.get("revision", "")):
            raise wire.invalid("A valid revision header (YYYY-MM-DD) is required.")
        if request.method in ("POST", "PATCH", "DELETE") and request.body:
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            if kind not in ("application/json", "application/vnd.api+json"):
                raise wire.KlaviyoError(415, "unsupported_media_type", "Unsupported media type.",
                                        f'Unsupported media type "{kind}" in request.')

    def _throttle(self, method: str, route: str, limits: tuple[int, int, tuple[str, ...]]) -> None:
        if not self.rate_limits:
            return
        now = time.monotonic()
        waits = []
        for span, cap in ((1, limits[0]), (60, limits[1])):
            window = int(now // span)
            start, count = self._windows.get((method, route, span), (window, 0))
            count = count if start == window else 0
            if count >= cap:
                waits.append((window + 1) * span - now)
            self._windows[(method, route, span)] = (window, count + 1)
        if waits:
            self.throttled += 1
            wait = max(1, math.ceil(max(waits)))
            raise wire.KlaviyoError(429, "throttled", "Request was throttled.",
                                    f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}.",
                                    headers={"Retry-After": str(wait)})

    # ----- lists ------------------------------------------------------------------------------------
    def _list(self, list_id: str) -> dict[str, Any]:
        found = self.lists.get(list_id)
        if found is None:
            raise wire.KlaviyoError(404, "not_found", "Not found.", f"A list with id {list_id} does not exist.")
        return found

    def _get_list(self, request: Request, list_id: str) -> Response:
        found = self._list(list_id)
        return Response(200, {"data": {"type": "list", "id": list_id, "attributes": {"name": found["name"]},
                                       "links": {"self": f"{wire.base_url(request, self.name)}/api/lists/{list_id}/"}}})

    def _get_list_members(self, request: Request, list_id: str) -> Response:
        """Get Profiles for List: cursor pages in joined order (``sort=-joined_group_at`` reverses it)."""
        members = self._list(list_id)["members"]
        params = request.params()
        ids = list(members)
        if params.get("filter", [""])[0]:
            field, values = wire.parse_filter(params["filter"][0], fields=("email", "phone_number"))
            wanted = {self.store.find(field, value) for value in values}
            ids = [p for p in ids if p in wanted]
        fields = wire.sparse_fields(params, LIST_MEMBER_FIELDS)
        extra = params.get("additional-fields[profile]", [""])[0]
        if extra and set(extra.split(",")) - {"subscriptions"}:
            raise wire.invalid("The sandbox serves only additional-fields[profile]=subscriptions.", None)

        def render(profile_id: str) -> dict[str, Any]:
            return self._resource(profile_id, request, fields=fields, joined=members[profile_id][1])

        return wire.keyset_page(request, self.name, ids, lambda p: members[p][0], render)

    def _get_list_profiles(self, request: Request, list_id: str) -> Response:
        members = self._list(list_id)["members"]
        return wire.keyset_page(request, self.name, list(members), lambda p: members[p][0], lambda p: {"type": "profile", "id": p})

    def _post_list_profiles(self, request: Request, list_id: str) -> Response:
        _, ids = self._relationship_ids(request, list_id)
        for profile_id in ids:
            self._join(list_id, profile_id)
        return Response(204)

    def _delete_list_profiles(self, request: Request, list_id: str) -> Response:
        members, ids = self._relationship_ids(request, list_id)
        for profile_id in ids:
            members.pop(profile_id, None)
        return Response(204)

    def _relationship_ids(self, request: Request, list_id: str) -> tuple[dict[str, Any], list[str]]:
        members = self._list(list_id)["members"]
        body = request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            raise wire.invalid("'data' must be a non-empty array of profile identifiers.", "/data")
        if len(data) > MAX_LIST_PROFILES:
            raise wire.invalid(f"Too many profiles: at most {MAX_LIST_PROFILES} may be given per request.", "/data")
        ids, problems = [], []
        for index, item in enumerate(data):
            if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("id"), str):
                problems.append(wire.error_item(400, "invalid", "Invalid input.", "Expected {type: 'profile', id: string}.", f"/data/{index}"))
            elif item["id"] not in self.profiles:
                problems.append(wire.error_item(400, "invalid", "Invalid input.", f"Profile {item['id']} does not exist.", f"/data/{index}/id"))
            else:
                ids.append(item["id"])
        if problems:
            raise wire.KlaviyoError.of(400, problems)
        return members, ids


# ----- helpers --------------------------------------------------------------------------------------
def _route(path: str) -> tuple[str, tuple[str, ...]]:
    for pattern, name in _ROUTES:
        match = pattern.match(path)
        if match:
            return name, match.groups()
    raise wire.KlaviyoError(404, "not_found", "Not found.", f"The path {path} was not found.")


def _label(profile: Mapping[str, Any]) -> str:
    return profile.get("email") or profile.get("phone_number") or profile.get("external_id") or ""


