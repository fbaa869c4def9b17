"""A strict emulator of Klaviyo's REST API for lists, profiles and profile bulk import jobs (sandbox ``klaviyo``).

Served under ``/klaviyo``, so a connector's base URL is ``http://127.0.0.1:PORT/klaviyo``. Routes::

    GET    /api/lists/{id}                                   the list (404 when unknown)
    GET    /api/lists/{id}/relationships/profiles            member profile ids (page[size] <= 1000)
    POST   /api/lists/{id}/relationships/profiles            add profiles by id    (<= 1,000; 204)
    DELETE /api/lists/{id}/relationships/profiles            remove profiles by id (<= 1,000; 204)
    GET    /api/profiles[?filter=...]                        equals(f,"v") / any(f,["v",...]) (<= 100 values) on
                                                             id, email, phone_number, external_id (page[size] <= 100)
    POST   /api/profile-bulk-import-jobs                     upsert <= 10,000 profiles, 5 MB; 202 + job
    GET    /api/profile-bulk-import-jobs/{id}                status: queued -> processing -> complete
    GET    /api/profile-bulk-import-jobs/{id}/profiles       profiles the job created or updated (<= 100/page)
    GET    /api/profile-bulk-import-jobs/{id}/relationships/profiles   their ids
    GET    /api/profile-bulk-import-jobs/{id}/import-errors  rows that failed, with source.pointer
    POST   /api/profile-subscription-bulk-create-jobs        subscribe (email/sms marketing consent SUBSCRIBED)
    POST   /api/profile-subscription-bulk-delete-jobs        unsubscribe: consent UNSUBSCRIBED, globally

Consent lives on the profile (``email_consent``/``sms_consent``: NEVER_SUBSCRIBED, SUBSCRIBED,
UNSUBSCRIBED) and list membership in the list, apart: the list relationship routes and the import job
never change consent; only the two subscription job routes do, which is what lets a test prove that a
remove never unsubscribed anyone.

Strictness: ``Authorization: Klaviyo-API-Key <key>`` (401 ``not_authenticated`` /
``authentication_failed``), a ``revision`` header ``YYYY-MM-DD`` (400), a JSON content type on bodies
(415), the batch limits above (400), a JSON:API shape (400 with ``source.pointer``), unknown list (404),
unknown profile id in a relationship call (400 pointing at ``/data/{i}/id``: nothing is applied), and
per-endpoint fixed-window rate limits (1-second burst and 1-minute steady, 429 with ``Retry-After``).
Import rows with an invalid email or a phone not in E.164 become import errors; the job still completes.
Errors use Klaviyo's envelope ``{"errors": [{id, status, code, title, detail, source, links, meta}]}``.

Test helpers: ``create_list``, ``seed_profile``, ``list_members``, ``list_member_ids``,
``subscription_status``, ``profile_id``, ``throttled`` (429s answered by the rate limiter),
``job_polls`` (GETs answered "processing" before a job completes), ``rate_limits`` (on/off), ``scopes``
(when set, the key only has these scopes; others get 403). ``throttle_next`` answers the next request
as the rate limiter does; ``consent_of`` reads the consent of the profile identifiers match.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from destinations.emulation import Emulator, Request, Response

__all__ = ["KlaviyoEmulator", "MAX_IMPORT_PROFILES", "MAX_LIST_PROFILES"]

MAX_LIST_PROFILES = 1_000
MAX_IMPORT_PROFILES = 10_000
MAX_IMPORT_BYTES = 5 * 1024 * 1024
CONSENTS = ("NEVER_SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED")
IDENTIFIERS = ("email", "phone_number", "external_id")
_ATTRIBUTES = ("email", "phone_number", "external_id", "first_name", "last_name")
_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$").match
_E164 = re.compile(r"^\+[1-9]\d{6,14}$").match
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$").match
_FILTER = re.compile(r"^\s*(equals|any)\(\s*([a-z_]+)\s*,\s*(.+)\)\s*$", re.S)
# (method, route) -> (burst per second, steady per minute, scope)
_LIMITS: dict[tuple[str, str], tuple[int, int, str]] = {
    ("GET", "list"): (75, 700, "lists:read"),
    ("GET", "list-profiles"): (75, 700, "lists:read"),
    ("POST", "list-profiles"): (10, 150, "lists:write"),
    ("DELETE", "list-profiles"): (10, 150, "lists:write"),
    ("GET", "profiles"): (75, 700, "profiles:read"),
    ("POST", "import-jobs"): (10, 150, "profiles:write"),
    ("GET", "import-job"): (10, 150, "profiles:read"),
    ("GET", "import-job-profiles"): (10, 150, "profiles:read"),
    ("GET", "import-job-profile-ids"): (10, 150, "profiles:read"),
    ("GET", "import-job-errors"): (10, 150, "profiles:read"),
    ("POST", "subscribe-jobs"): (75, 750, "subscriptions:write"),
    ("POST", "unsubscribe-jobs"): (75, 750, "subscriptions:write"),
}
_ROUTES = [
    (re.compile(r"^/api/lists/([^/]+)/?$"), "list"),
    (re.compile(r"^/api/lists/([^/]+)/relationships/profiles/?$"), "list-profiles"),
    (re.compile(r"^/api/profiles/?$"), "profiles"),
    (re.compile(r"^/api/profile-bulk-import-jobs/?$"), "import-jobs"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/?$"), "import-job"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/profiles/?$"), "import-job-profiles"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/relationships/profiles/?$"), "import-job-profile-ids"),
    (re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/import-errors/?$"), "import-job-errors"),
    (re.compile(r"^/api/profile-subscription-bulk-create-jobs/?$"), "subscribe-jobs"),
    (re.compile(r"^/api/profile-subscription-bulk-delete-jobs/?$"), "unsubscribe-jobs"),
]


class KlaviyoError(Exception):
    """One JSON:API error response."""

    def __init__(self, status: int, code: str, title: str, detail: str, pointer: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.headers = status, dict(headers or {})
        self.items = [_error(status, code, title, detail, pointer)]

    @classmethod
    def of(cls, status: int, items: list[dict[str, Any]]) -> "KlaviyoError":
        error = cls(status, items[0]["code"], items[0]["title"], items[0]["detail"])
        error.items = items
        return error

    def response(self) -> Response:
        return Response(self.status, {"errors": self.items}, self.headers)


def _error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail}
    if pointer is not None:
        item["source"] = {"pointer": pointer}
    item.update(links={}, meta={})
    return item


def _throttled(wait: int) -> dict[str, Any]:
    """The error item of a 429, stating the wait as Klaviyo does."""
    return _error(429, "throttled", "Request was throttled.",
                  f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}.")


def _invalid(detail: str, pointer: str | None = None) -> KlaviyoError:
    return KlaviyoError(400, "invalid", "Invalid input.", detail, pointer)


class KlaviyoEmulator(Emulator):
    """Klaviyo's list, profile and bulk import endpoints, with consent kept apart from list membership."""

    name = "klaviyo"

    # ----- test and admin API -------------------------------------------------------------------
    def reset_state(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.throttled = 0
        self.job_polls = 1
        self.rate_limits = True
        self.scopes: set[str] | None = None
        self._windows: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._index: dict[str, dict[str, str]] = {k: {} for k in IDENTIFIERS}
        self._next_id = 1

    def create_list(self, list_id: str | None = None, name: str = "sandbox list") -> str:
        with self.lock:
            list_id = list_id or f"L{len(self.lists) + 1:05d}"
            self.lists.setdefault(list_id, {"name": name, "members": {}})
            return list_id

    def seed_profile(self, email: str | None = None, phone_number: str | None = None, external_id: str | None = None,
                     *, email_consent: str = "NEVER_SUBSCRIBED", sms_consent: str = "NEVER_SUBSCRIBED",
                     lists: tuple[str, ...] = ()) -> str:
        """Create a profile with the given consent (and list memberships); returns its id."""
        if email_consent not in CONSENTS or sms_consent not in CONSENTS:
            raise ValueError(f"consent must be one of {CONSENTS}")
        with self.lock:
            profile_id, _ = self._upsert({"email": email, "phone_number": phone_number, "external_id": external_id})
            self.profiles[profile_id].update(email_consent=email_consent, sms_consent=sms_consent)
            for list_id in lists:
                self.lists[self.create_list(list_id)]["members"][profile_id] = None
            return profile_id

    def profile_id(self, email: str) -> str | None:
        with self.lock:
            return self._find("email", email)

    def subscription_status(self, email: str, channel: str = "email") -> str | None:
        """Marketing consent of the profile with this email: NEVER_SUBSCRIBED, SUBSCRIBED or UNSUBSCRIBED."""
        with self.lock:
            profile_id = self._find("email", email)
            return self.profiles[profile_id][f"{channel}_consent"] if profile_id else None

    def list_member_ids(self, list_id: str) -> set[str]:
        with self.lock:
            return set(self.lists[list_id]["members"])

    def list_members(self, list_id: str) -> set[str]:
        """Emails (else phone, else external id) of the list's members."""
        with self.lock:
            return {_label(self.profiles[p]) for p in self.lists[list_id]["members"]}

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as Klaviyo throttles: 429 with ``Retry-After`` in whole seconds (at least
        1) and the same wait in the error's detail; returns that wait."""
        wait = max(1, math.ceil(retry_after))
        self.inject_http(429, 1, wait, body={"errors": [_throttled(wait)]})
        return float(wait)

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """Klaviyo holds consent per profile, whatever the list: the email and SMS marketing consent of the
        profile the identifiers match (email, then external_id, then phone, as an import matches); None when
        no profile does."""
        with self.lock:
            kinds = (("email", "email"), ("external_id", "external_id"), ("phone", "phone_number"))
            profile_id = next((p for p in (self._find(field, identifiers.get(kind)) for kind, field in kinds) if p), None)
            if profile_id is None:
                return None
            profile = self.profiles[profile_id]
            return {"email": profile["email_consent"], "sms": profile["sms_consent"]}

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            lists = {k: {"name": v["name"], "members": list(v["members"])} for k, v in self.lists.items()}
            return {"profiles": self.profiles, "lists": lists, "jobs": self.jobs, "next_id": self._next_id}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            for profile_id, profile in state.get("profiles", {}).items():
                self.profiles[profile_id] = dict(profile)
                for key in IDENTIFIERS:
                    if profile.get(key):
                        self._set(profile_id, key, profile[key])
            self.lists = {k: {"name": v["name"], "members": dict.fromkeys(v["members"])} for k, v in state.get("lists", {}).items()}
            self.jobs = {k: dict(v) for k, v in state.get("jobs", {}).items()}
            self._next_id = int(state.get("next_id", len(self.profiles) + 1))

    def admin_view(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.request_count, "profiles": len(self.profiles), "throttled": self.throttled,
                    "lists": {k: len(v["members"]) for k, v in self.lists.items()}}

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
            return {"errors": [_error(429, "throttled", "Request was throttled.", "Request was throttled. Expected available in 1 second.")]}
        if status >= 500:
            return {"errors": [_error(status, "error", "A server error occurred.", "A server error occurred.")]}
        return {"errors": [_error(status, "error", "Injected error.", f"injected HTTP {status}")]}

    def bad_request(self, message: str) -> Response:
        return _invalid(f"The request body is not valid JSON: {message}").response()

    # ----- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            route, args = _route(request.path)
            limits = _LIMITS.get((request.method, route))
            if limits is None:
                raise KlaviyoError(405, "method_not_allowed", "Method not allowed.", f'Method "{request.method}" not allowed.')
            self._authenticate(request, limits[2])
            self._throttle(request.method, route, limits)
            return getattr(self, "_" + request.method.lower() + "_" + route.replace("-", "_"))(request, *args)
        except KlaviyoError as exc:
            return exc.response()

    def _authenticate(self, request: Request, scope: str) -> None:
        auth = request.headers.get("authorization", "")
        if not auth:
            raise KlaviyoError(401, "not_authenticated", "Authentication credentials were not provided.",
                               "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.")
        scheme, _, key = auth.partition(" ")
        if scheme != "Klaviyo-API-Key" or key.strip() != self.key:
            raise KlaviyoError(401, "authentication_failed", "Incorrect authentication credentials.",
                               "Incorrect authentication credentials.")
        if self.scopes is not None and scope not in self.scopes:
            raise KlaviyoError(403, "permission_denied", "You do not have permission to perform this action.",
                               f"This API key is missing required scopes: {scope}.")
        if not _REVISION(request.headers.get("revision", "")):
            raise _invalid("A valid revision header (YYYY-MM-DD) is required.")
        if request.method in ("POST", "PATCH", "DELETE") and request.body:
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            if kind not in ("application/json", "application/vnd.api+json"):
                raise KlaviyoError(415, "unsupported_media_type", "Unsupported media type.",
                                   f'Unsupported media type "{kind}" in request.')

    def _throttle(self, method: str, route: str, limits: tuple[int, int, str]) -> None:
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
            raise KlaviyoError(429, "throttled", "Request was throttled.",
                               f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}.",
                               headers={"Retry-After": str(wait)})

    # ----- lists ------------------------------------------------------------------------------------
    def _list(self, list_id: str) -> dict[str, Any]:
        found = self.lists.get(list_id)
        if found is None:
            raise KlaviyoError(404, "not_found", "Not found.", f"A list with id {list_id} does not exist.")
        return found

    def _get_list(self, request: Request, list_id: str) -> Response:
        found = self._list(list_id)
        return Response(200, {"data": {"type": "list", "id": list_id, "attributes": {"name": found["name"]},
                                       "links": {"self": f"{_base(request, self.name)}/api/lists/{list_id}/"}}})

    def _get_list_profiles(self, request: Request, list_id: str) -> Response:
        ids = list(self._list(list_id)["members"])
        return _page(request, self.name, [{"type": "profile", "id": i} for i in ids], 1000)

    def _post_list_profiles(self, request: Request, list_id: str) -> Response:
        members, ids = self._relationship_ids(request, list_id)
        for profile_id in ids:
            members[profile_id] = None
        return Response(204)

    def _delete_list_profiles(self, request: Request, list_id: str) -> Response:
        members, ids = self._relationship_ids(request, list_id)
        for profile_id in ids:
            members.pop(profile_id, None)
        return Response(204)

    def _relationship_ids(self, request: Request, list_id: str) -> tuple[dict[str, None], list[str]]:
        members = self._list(list_id)["members"]
        body = request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            raise _invalid("'data' must be a non-empty array of profile identifiers.", "/data")
        if len(data) > MAX_LIST_PROFILES:
            raise _invalid(f"Too many profiles: at most {MAX_LIST_PROFILES} may be given per request.", "/data")
        ids, problems = [], []
        for index, item in enumerate(data):
            if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("id"), str):
                problems.append(_error(400, "invalid", "Invalid input.", "Expected {type: 'profile', id: string}.", f"/data/{index}"))
            elif item["id"] not in self.profiles:
                problems.append(_error(400, "invalid", "Invalid input.", f"Profile {item['id']} does not exist.", f"/data/{index}/id"))
            else:
                ids.append(item["id"])
        if problems:
            raise KlaviyoError.of(400, problems)
        return members, ids

    # ----- profiles ---------------------------------------------------------------------------------
    def _get_profiles(self, request: Request) -> Response:
        params = request.params()
        if not params.get("filter", [""])[0]:
            return _page(request, self.name, [self._resource(p, request) for p in self.profiles], 100)
        field, values = _parse_filter(params["filter"][0])
        if field == "id":
            found = [p for p in values if p in self.profiles]
        else:
            found = [p for p in (self._find(field, v) for v in values) if p]
        found = list(dict.fromkeys(found))
        return _page(request, self.name, [self._resource(p, request) for p in found], 100)

    def _resource(self, profile_id: str, request: Request) -> dict[str, Any]:
        profile = self.profiles[profile_id]
        wanted = request.params().get("fields[profile]", [""])[0]
        keys = [k for k in wanted.split(",") if k in _ATTRIBUTES] if wanted else list(_ATTRIBUTES)
        attributes = {k: profile.get(k) for k in keys}
        if "subscriptions" in request.params().get("additional-fields[profile]", [""])[0]:
            attributes["subscriptions"] = {
                "email": {"marketing": {"consent": profile["email_consent"]}},
                "sms": {"marketing": {"consent": profile["sms_consent"]}},
            }
        return {"type": "profile", "id": profile_id, "attributes": attributes,
                "links": {"self": f"{_base(request, self.name)}/api/profiles/{profile_id}/"}}

    def _find(self, field: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        return self._index[field].get(value.lower() if field == "email" else value)

    def _set(self, profile_id: str, key: str, value: str) -> None:
        profile = self.profiles[profile_id]
        if key in IDENTIFIERS:
            index = self._index[key]
            if profile.get(key):
                index.pop(profile[key].lower() if key == "email" else profile[key], None)
            index[value.lower() if key == "email" else value] = profile_id
        profile[key] = value

    def _upsert(self, attributes: Mapping[str, Any]) -> tuple[str, bool]:
        """Match on email, then external_id, then phone; create when none matches. Never touches consent."""
        profile_id = next((p for p in (self._find(k, attributes.get(k)) for k in ("email", "external_id", "phone_number")) if p), None)
        created = profile_id is None
        if created:
            profile_id = f"01HZ{self._next_id:022d}"
            self._next_id += 1
            self.profiles[profile_id] = {k: None for k in _ATTRIBUTES} | {"email_consent": "NEVER_SUBSCRIBED", "sms_consent": "NEVER_SUBSCRIBED"}
        for key in _ATTRIBUTES:
            value = attributes.get(key)
            if value in (None, ""):
                continue
            owner = self._find(key, value) if key in IDENTIFIERS else None
            if owner in (None, profile_id):  # an identifier held by another profile is left alone
                self._set(profile_id, key, str(value))
        return profile_id, created

    # ----- bulk import jobs ---------------------------------------------------------------------------
    def _post_import_jobs(self, request: Request) -> Response:
        if len(request.body) > MAX_IMPORT_BYTES:
            raise KlaviyoError(413, "request_too_large", "Request too large.", "The payload exceeds 5 MB.")
        body = request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise _invalid("'data.type' must be 'profile-bulk-import-job'.", "/data/type")
        rows = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(rows, list) or not rows:
            raise _invalid("'profiles.data' must be a non-empty array.", "/data/attributes/profiles/data")
        if len(rows) > MAX_IMPORT_PROFILES:
            raise _invalid(f"At most {MAX_IMPORT_PROFILES} profiles may be imported per job.", "/data/attributes/profiles/data")
        for index, row in enumerate(rows):
            pointer = f"/data/attributes/profiles/data/{index}"
            if not isinstance(row, dict) or row.get("type") != "profile" or not isinstance(row.get("attributes"), dict):
                raise _invalid("Each profile must be {type: 'profile', attributes: {...}}.", pointer)
            if "subscriptions" in row["attributes"]:
                raise _invalid("'subscriptions' cannot be set through a profile import.", pointer + "/attributes/subscriptions")
        lists = [item.get("id") for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
        for list_id in lists:
            self._list(list_id)
        job_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        now = _now()
        self.jobs[job_id] = {"status": "queued", "polls_left": self.job_polls, "rows": rows, "lists": lists,
                             "profile_ids": [], "errors": [], "created_at": now, "completed_at": None}
        return Response(202, {"data": self._job_resource(request, job_id)})

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise KlaviyoError(404, "not_found", "Not found.", f"A profile bulk import job with id {job_id} does not exist.")
        return job

    def _get_import_job(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        if job["status"] != "complete":
            if job["polls_left"] > 0:
                job["polls_left"] -= 1
                job["status"] = "processing"
            else:
                self._run_job(job)
        return Response(200, {"data": self._job_resource(request, job_id)})

    def _run_job(self, job: dict[str, Any]) -> None:
        for index, row in enumerate(job.pop("rows")):
            attributes = row["attributes"]
            pointer = f"/data/attributes/profiles/data/{index}/attributes"
            problem = _row_problem(attributes, pointer)
            if problem is not None:
                job["errors"].append(problem | {"original_payload": attributes})
                continue
            profile_id, _ = self._upsert(attributes)
            job["profile_ids"].append(profile_id)
            for list_id in job["lists"]:
                self.lists[list_id]["members"][profile_id] = None
        job["profile_ids"] = list(dict.fromkeys(job["profile_ids"]))
        job.update(status="complete", completed_at=_now())

    def _job_resource(self, request: Request, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        total = len(job["rows"]) if "rows" in job else len(job["profile_ids"]) + len(job["errors"])
        done = job["status"] == "complete"
        base = f"{_base(request, self.name)}/api/profile-bulk-import-jobs/{job_id}"
        return {
            "type": "profile-bulk-import-job", "id": job_id,
            "attributes": {"status": job["status"], "created_at": job["created_at"], "total_count": total,
                           "completed_count": total - len(job["errors"]) if done else 0,
                           "failed_count": len(job["errors"]), "completed_at": job["completed_at"],
                           "expires_at": None, "started_at": job["created_at"]},
            "relationships": {"lists": {"data": [{"type": "list", "id": i} for i in job["lists"]]},
                              "profiles": {"links": {"self": f"{base}/relationships/profiles/", "related": f"{base}/profiles/"}},
                              "import-errors": {"links": {"related": f"{base}/import-errors/"}}},
            "links": {"self": base + "/"},
        }

    def _get_import_job_profiles(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        ids = job["profile_ids"] if job["status"] == "complete" else []
        return _page(request, self.name, [self._resource(p, request) for p in ids if p in self.profiles], 100)

    def _get_import_job_profile_ids(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        ids = job["profile_ids"] if job["status"] == "complete" else []
        return _page(request, self.name, [{"type": "profile", "id": p} for p in ids], 100)

    def _get_import_job_errors(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        items = [{"type": "import-error", "id": e["id"], "attributes": {k: e[k] for k in ("code", "title", "detail", "source", "original_payload")}}
                 for e in job["errors"]]
        return _page(request, self.name, items, 100)

    # ----- subscriptions (never used by the connector; here so a test can prove it) ------------------
    def _post_subscribe_jobs(self, request: Request) -> Response:
        return self._consent_job(request, "SUBSCRIBED", 1000)

    def _post_unsubscribe_jobs(self, request: Request) -> Response:
        return self._consent_job(request, "UNSUBSCRIBED", 100)

    def _consent_job(self, request: Request, consent: str, limit: int) -> Response:
        body = request.json()
        try:
            rows = body["data"]["attributes"]["profiles"]["data"]
        except (KeyError, TypeError):
            raise _invalid("Expected data.attributes.profiles.data.", "/data/attributes/profiles/data") from None
        if not isinstance(rows, list) or not 0 < len(rows) <= limit:
            raise _invalid(f"Between 1 and {limit} profiles are allowed per job.", "/data/attributes/profiles/data")
        for row in rows:
            attributes = row.get("attributes") or {}
            profile_id = self._find("email", attributes.get("email")) or self._find("phone_number", attributes.get("phone_number"))
            if profile_id is None:
                profile_id, _ = self._upsert(attributes)
            for channel in ("email", "sms"):
                if (attributes.get("subscriptions") or {}).get(channel) is not None or consent == "UNSUBSCRIBED":
                    self.profiles[profile_id][f"{channel}_consent"] = consent
        return Response(202)


# ----- helpers --------------------------------------------------------------------------------------
def _route(path: str) -> tuple[str, tuple[str, ...]]:
    for pattern, name in _ROUTES:
        match = pattern.match(path)
        if match:
            return name, match.groups()
    raise KlaviyoError(404, "not_found", "Not found.", f"The path {path} was not found.")


def _parse_filter(text: str) -> tuple[str, list[str]]:
    match = _FILTER.match(text)
    if not match:
        raise _invalid("Expected a filter such as equals(email,\"a@b.com\") or any(email,[\"a@b.com\"]).", None)
    operator, field, raw = match.groups()
    if field not in ("id", *IDENTIFIERS):
        raise _invalid(f"Filtering on '{field}' is not supported.", None)
    try:
        value = json.loads(raw)
    except ValueError:
        raise _invalid(f"Cannot parse the filter value {raw[:50]!r}.", None) from None
    values = value if operator == "any" else [value]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or (operator == "equals" and isinstance(value, list)):
        raise _invalid("equals() takes one string; any() takes an array of strings.", None)
    if len(values) > 100:
        raise _invalid("any() takes at most 100 values.", None)
    return field, values


def _row_problem(attributes: Mapping[str, Any], pointer: str) -> dict[str, Any] | None:
    if not any(attributes.get(k) for k in IDENTIFIERS):
        return _error(400, "invalid", "Invalid input.", "One of email, phone_number or external_id is required.", pointer)
    email = attributes.get("email")
    if email and not _EMAIL(str(email)):
        return _error(400, "invalid", "Invalid input.", f"Invalid email address: {email}", pointer + "/email")
    phone = attributes.get("phone_number")
    if phone and not _E164(str(phone)):
        return _error(400, "invalid", "Invalid input.", "Invalid phone number format (Example of a valid format: +13239169023)",
                      pointer + "/phone_number")
    return None


def _page(request: Request, name: str, items: list[dict[str, Any]], max_size: int) -> Response:
    params = request.params()
    try:
        size = int(params.get("page[size]", ["20"])[0])
        offset = int(base64.urlsafe_b64decode(params.get("page[cursor]", [""])[0] + "==").decode() or 0)
    except ValueError:
        raise _invalid("page[size] must be an integer and page[cursor] a cursor from links.next.", None) from None
    if not 1 <= size <= max_size:
        raise _invalid(f"page[size] must be between 1 and {max_size}.", None)
    url = _base(request, name) + request.path
    following = {k: v[0] for k, v in params.items() if k != "page[cursor]"}
    next_url = None
    if offset + size < len(items):
        cursor = base64.urlsafe_b64encode(str(offset + size).encode()).decode().rstrip("=")
        next_url = url + "?" + urlencode(following | {"page[cursor]": cursor})
    self_url = url + ("?" + request.query if request.query else "")
    return Response(200, {"data": items[offset:offset + size], "links": {"self": self_url, "next": next_url, "prev": None}})


def _base(request: Request, name: str) -> str:
    return f"http://{request.headers.get('host', '127.0.0.1')}/{name}"


def _label(profile: Mapping[str, Any]) -> str:
    return profile.get("email") or profile.get("phone_number") or profile.get("external_id") or ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
