"""Klaviyo lists: keep a list's members in sync by profile id, without ever touching consent.

Membership never touches consent. A member joins and leaves the list through the list's profile
relationships, which Klaviyo documents as leaving consent unchanged; leaving a segment is not an
unsubscribe. This module never calls the subscription jobs: ``profile-subscription-bulk-delete-jobs``
(bulk unsubscribe) unsubscribes profiles that are not in the given list globally, and
``profile-subscription-bulk-create-jobs`` subscribes and lifts suppressions. The profile import sends
no ``subscriptions`` and no list, so it only creates a profile or updates its identifiers and names.

API flow (our own ``requests`` session: the klaviyo-api SDK retries GET and DELETE on 429 by itself,
which bypasses our wait accounting, see specs section 9)::

    add     1. profile ids from the ledger (``Destination.id_cache``), for the identifiers given (below)
            2. the others upserted: POST /api/profile-bulk-import-jobs (<= 10,000) -> 202 {data.id}
               GET  /api/profile-bulk-import-jobs/{id} every import_poll_interval_s until "complete"
               GET  .../{id}/profiles?page[size]=100 (cursor pages) -> ids, matched back by email,
                    external_id or phone; GET .../{id}/import-errors when failed_count > 0 -> rejected
                    rows, by the index in source.pointer; a row refused as ``duplicate_profile`` (its
                    identifiers name two profiles) is looked up as a remove is, so the member joins as
                    the profile Klaviyo matches first (its email's); the ids are cached before anything else
            2b. traits cleared (``null_traits: clear``): PATCH /api/profiles/{id}
               {data: {type, id, attributes: {}, meta: {patch_properties: {unset: [names]}}}} -> 200
            3. POST   /api/lists/{list_id}/relationships/profiles  {data: [{type: profile, id}]} -> 204
    remove  1. cached ids; the others looked up, never created: GET /api/profiles?filter=any(email,[...])
               (50 values a call; then external_id, phone_number). A member Klaviyo does not know is not
               on the list: SENT without a call.
            2. DELETE /api/lists/{list_id}/relationships/profiles  (same body) -> 204
    list_members  GET /api/lists/{list_id}/profiles?page[size]=100&fields[profile]=email,phone_number,external_id
               (cursor pages; ``ListsMembers``, for ``syncer reconcile``)
    check   GET /api/lists/{list_id} (GET /api/profiles?page[size]=1 without an audience)

Identity: Klaviyo keeps one profile per email, per phone number and per external id, so members sharing
one are one profile (``match_keys``), and taking that profile off the list takes all of them off. A
cached profile id holds only for the identifiers it was resolved from: the ledger keeps it as
``<profile id>#<digest>`` (``identity_digest`` of the member key, email, external id and phone) and a
member whose digest differs is resolved afresh. When a member's email changes, the engine removes the
old identifiers (their cached profile) and adds the new ones (the new email's profile, imported), so the
list never gets the old profile back. An id cached before digests were kept is resolved once more.

Traits (``Member.traits``, a sync's ``traits``) are the profile's custom ``properties`` in the import row
(any JSON value; "Update custom properties" is a documented use of the bulk import:
https://developers.klaviyo.com/en/docs/use_klaviyos_bulk_profile_import_api). A member with traits is
imported even when its profile id is cached, since the import is what sets them. The bulk import "does
not support setting fields to null to clear them" (same page), so a trait cleared on purpose is removed
with Update Profile's ``meta.patch_properties.unset`` ("Remove a key or keys (and their values)
completely from properties": https://developers.klaviyo.com/en/reference/update_profile), one call per
such profile (the profiles group's 75/s, 700/min).

Headers: ``Authorization: Klaviyo-API-Key <key>``, ``revision`` (config), JSON:API content type.

Limits: 1,000 profiles per relationship call (``max_batch``: the base refuses a larger batch before any
call), 10,000 per import job, 100 profiles a page (page[size] 1-100, default 20:
https://developers.klaviyo.com/en/reference/get_profiles_for_list). Rate limits per endpoint, a 1-second
burst and a 1-minute steady window: list relationships and the import job endpoints 10/s and 150/min;
GET /api/profiles, GET /api/lists/{id} and GET /api/lists/{id}/profiles 75/s and 750/min (paced at
700/min). Klaviyo counts in fixed windows; we keep a sliding window per endpoint (with a small margin),
which never exceeds any fixed window, where a token bucket as large as the burst can send twice the
burst inside one window.

Errors: ``classify`` is the only reader of Klaviyo's answers, and answers as the shared table
(``destinations.responses``) wherever Klaviyo means what it says. Klaviyo's own: a 429 states its wait in
``Retry-After`` or in the error's detail ("available in 12 seconds"); 401 and 403 name the variable and
the scopes the key needs; a 400 whose errors all point at rows (``/data/{i}``) is ``RowErrors``; a 404
of an import job is ``ImportJobLost`` (the job is imported again); 409 and unknown statuses are retried
(list adds and removes are idempotent set operations). Lost connections raise ``TransientError``.

Import jobs are asynchronous: a job still running after ``import_timeout_s`` raises ``TransientError``
and the retry resumes polling the same job rather than importing again.

Stale ids: when a relationship call names a profile Klaviyo no longer has (a merged or deleted profile),
the whole call is refused with errors pointing at ``/data/{i}/id``; those members are resolved again
without the cache and the call is sent once more. (The sandbox answers that way; Klaviyo does not
document its answer for an unknown id.)

Outcomes: one per member. REJECTED reasons: ``no_supported_identifier`` (no email, phone or external
id), ``klaviyo_invalid_email`` / ``klaviyo_invalid_phone`` / ``klaviyo_<code>`` (an import error);
RETRYABLE ``klaviyo_profile_not_returned`` (the job reported neither a profile nor an error).
``platform_counts``: ``ids_cached``, ``profiles_imported``, ``profiles_looked_up``.

Config example::

    # destinations/klaviyo_main.yml
    type: klaviyo_list
    api_key_env: KLAVIYO_API_KEY          # private key: lists:read/write, profiles:read/write
    revision: "2026-07-15"
    endpoint: http://127.0.0.1:8510/klaviyo   # optional: the local sandbox
    # syncs/vip_klaviyo.yml: audience_id is the list id, e.g. "Y6nRLr"
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from destinations.base import AudienceRef, BatchResult, Destination, ListedMember, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, unreachable
from destinations.klaviyo.config import ATTRIBUTES, CAPABILITIES, KlaviyoListConfig
from destinations.klaviyo.errors import ImportJobLost, RowErrors, error_detail, error_items, redact_pii, stated_wait
from destinations.klaviyo.profiles import (
    DUPLICATE_CODE,
    MATCH_ORDER,
    errored_member,
    folded,
    identity_digest,
    index_profile,
    listed_identifiers,
    match,
    row_reason,
)
from destinations.pacing import SlidingWindowLimiter
from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, RateLimited, SyncError, TransientError

__all__ = ["API_URL", "ImportJobLost", "KlaviyoListDestination", "RowErrors"]

API_URL = "https://a.klaviyo.com"
IMPORT_MAX = 10_000
PAGE_SIZE = 100
LOOKUP_CHUNK = 50
# endpoint group -> (burst per second, steady per minute)
LIMITS = {"relationships": (10, 150), "import": (10, 150), "profiles": (75, 700), "lists": (75, 700), "list_members": (75, 700)}
_LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_POINTER_ROW = re.compile(r"^/data/(\d+)(/.*)?$")
# What a call is about (``ErrorContext.target``); a list call names its list ("list Y6nRLr").
_PROFILES, _IMPORT, _JOB = "profiles", "a profile import", "a profile import job"
_IDENTIFIER_FIELDS = "email,phone_number,external_id"


class KlaviyoListDestination(Destination):
    """Adds and removes members of Klaviyo lists by profile id; never changes a profile's consent."""

    kind = "klaviyo_list"
    capabilities = CAPABILITIES

    def __init__(self, config: KlaviyoListConfig, *, name: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Open the HTTP session; reads the API key from the environment now.

        Raises:
            ConfigError: the environment variable named by ``api_key_env`` is not set.
        """
        self.config = config
        self.name = name or "klaviyo_list"  # build_destination sets the file stem after construction
        key = resolve_secret(config.api_key_env, what=f"Klaviyo destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or API_URL).rstrip("/")
        self._session = build_session(self._base, headers={
            "Authorization": f"Klaviyo-API-Key {key}", "revision": config.revision,
            "Accept": "application/vnd.api+json", "Content-Type": "application/vnd.api+json"})
        self._sleep, self._clock = sleep, clock
        self._limiters = {group: SlidingWindowLimiter([(burst, 1.0), (steady, 60.0)], clock=clock, sleep=sleep)
                          for group, (burst, steady) in LIMITS.items()}
        if config.requests_per_second:
            self._limiters["account"] = SlidingWindowLimiter.per_second(config.requests_per_second, clock=clock, sleep=sleep)
        self._pending_jobs: dict[str, str] = {}  # fingerprint of an import -> job id still running
        self._local_ids: dict[str, str] = {}  # used when the engine set no id_cache; values as in the ledger
        self._calls = 0

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the key (and the list when given); raise ``ConfigError`` with what to fix."""
        if audience is None:
            self._request("GET", "/api/profiles/", "profiles", _PROFILES, params={"page[size]": 1})
        else:
            list_id = self._list_id(audience)
            self._request("GET", f"/api/lists/{list_id}/", "lists", f"list {list_id}")

    def close(self) -> None:
        self._session.close()

    def list_members(self, audience: AudienceRef) -> Iterator[ListedMember]:
        """Every profile on the list, page by page: its email (lower-cased), phone (E.164) and external id,
        as the connector is sent them, and its profile id. Only those fields are asked for (a sparse
        fieldset); names are left out, as they never decide which profile a member is.

        Raises:
            ConfigError: the list does not exist or the key may not read it.
            TransientError: a page failed (the read can start again; it changes nothing).
        """
        list_id = self._list_id(audience)
        params = {"page[size]": PAGE_SIZE, "fields[profile]": _IDENTIFIER_FIELDS}
        for profile in self._pages(f"/api/lists/{list_id}/profiles/", "list_members", f"list {list_id}", params):
            profile_id = profile.get("id")
            yield ListedMember(listed_identifiers(profile), platform_id=str(profile_id) if profile_id else None)

    def classify(self, response: PlatformResponse, *, target: str = _PROFILES) -> SyncError | None:
        """The failure one Klaviyo answer means, or None when the call was accepted.

        The only place that reads Klaviyo's statuses; ``target`` is what the call was about ("list Y6nRLr",
        ``_JOB``...), named in messages. Klaviyo's own answers first (see the module header), then the
        shared table.
        """
        status, body, errors = response.status, response.body, error_items(response.body)
        ctx = self.error_context(target)
        where, code = f"{target} of destination '{ctx.destination}'", str(errors[0].get("code") or "") if errors else ""
        detail = error_detail(status, body, errors)
        if 200 <= status < 300:
            return None if isinstance(body, dict) else TransientError(
                f"Klaviyo sent a response that is not JSON:API (HTTP {status}) for {where}; retrying", detail=detail)
        if status == 429:
            wait = stated_wait(response.headers, errors)
            return RateLimited(f"Klaviyo throttled {where}" + (f"; retry in {wait:g} s" if wait else ""), retry_after=wait, detail=detail)
        if status in (401, 403):
            return _key_refused(status, code, ctx, detail)
        if status == 404 and target == _JOB:
            return ImportJobLost(f"Klaviyo no longer has the profile import job for {where}; importing again", detail=detail)
        if status in (404, 405) and not errors:
            return ConfigError(f"{self._base} answered HTTP {status} with a page that is not Klaviyo's API: check 'endpoint' of"
                               f" destination '{ctx.destination}'", detail=detail)
        rows = {int(m.group(1)): row_reason(e) for e in errors if (m := _POINTER_ROW.match(str((e.get("source") or {}).get("pointer") or "")))}
        if status == 400 and rows and len(rows) == len(errors):
            return RowErrors(f"Klaviyo refused {where} because of {len(rows)} of its rows; nothing was applied", rows=rows, detail=detail)
        if status == 409 or not 400 <= status < 600:
            # A conflict, or a status Klaviyo does not document: list adds and removes are idempotent, so a retry is harmless.
            return TransientError(f"Klaviyo answered HTTP {status} on {where}; retrying", detail=detail)
        return classify_status(response, ctx, code=code or None)

    def error_context(self, target: str = _PROFILES) -> ErrorContext:
        return ErrorContext(platform="Klaviyo", destination=self.name or self.kind, credential_env=self.config.api_key_env,
                            target=target)

    # ----- flow -----------------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        list_id = self._list_id(audience)
        self._calls = 0
        counts = {"ids_cached": 0, "profiles_imported": 0, "profiles_looked_up": 0}
        outcomes: dict[str, RowOutcome] = {}
        sendable = []
        for member in members:
            if any(member.identifiers.get(kind) for kind in MATCH_ORDER):
                sendable.append(member)
            else:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
        ids = self._resolve(op, sendable, outcomes, counts, use_cache=True)
        if op == "add":
            self._unset_properties(sendable, ids)
        if ids:
            self._send_membership(op, list_id, sendable, ids, outcomes, counts)
        for member in sendable:  # a remove of someone Klaviyo does not know: not on the list, nothing to do
            outcomes.setdefault(member.member_key, RowOutcome(member.member_key, RowStatus.SENT))
        return BatchResult(op, tuple(outcomes[m.member_key] for m in members), requests=self._calls, platform_counts=counts)

    def _send_membership(self, op: Op, list_id: str, members: Sequence[Member], ids: dict[str, str],
                         outcomes: dict[str, RowOutcome], counts: dict[str, int]) -> None:
        try:
            self._relationships(op, list_id, ids)
        except RowErrors as exc:
            order = list(dict.fromkeys(ids.values()))
            stale_ids = {order[i] for i in exc.rows if i < len(order)}
            stale = [m for m in members if ids.get(m.member_key) in stale_ids]
            if not stale:
                raise
            for member in stale:
                del ids[member.member_key]
            ids.update(self._resolve(op, stale, outcomes, counts, use_cache=False))
            if ids:
                self._relationships(op, list_id, ids)  # a second refusal raises: stop, the ledger stays as it is
        for member in members:
            if member.member_key in ids:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.SENT)

    def _relationships(self, op: Op, list_id: str, ids: Mapping[str, str]) -> None:
        data = [{"type": "profile", "id": profile_id} for profile_id in dict.fromkeys(ids.values())]
        method = "POST" if op == "add" else "DELETE"
        self._request(method, f"/api/lists/{list_id}/relationships/profiles/", "relationships", f"list {list_id}",
                      body={"data": data})

    def _resolve(self, op: Op, members: Sequence[Member], outcomes: dict[str, RowOutcome], counts: dict[str, int],
                 *, use_cache: bool) -> dict[str, str]:
        """Member key -> profile id: from the cache, else imported (add) or looked up (remove)."""
        # a member with traits is imported even when its id is cached: the import is what sets them
        cached = self._cache_get([m for m in members if not (op == "add" and m.traits)]) if use_cache else {}
        counts["ids_cached"] += len(cached)
        missing = [m for m in members if m.member_key not in cached]
        if not missing:
            return cached
        if op == "add":
            ambiguous: list[Member] = []
            found = self._import(missing, outcomes, ambiguous)
            counts["profiles_imported"] += len(found)
            found |= self._settle(ambiguous, outcomes, counts)
        else:
            found = self._lookup(missing)
            counts["profiles_looked_up"] += len(found)
        self._cache_put(found, members)
        return cached | found

    def _settle(self, ambiguous: Sequence[Member], outcomes: dict[str, RowOutcome], counts: dict[str, int]) -> dict[str, str]:
        """Members whose identifiers name two profiles join as the profile Klaviyo matches first (their
        email's, else external id's): looked up, as a remove is."""
        if not ambiguous:
            return {}
        found = self._lookup(ambiguous)
        counts["profiles_looked_up"] += len(found)
        for member in ambiguous:
            if member.member_key not in found:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.RETRYABLE, "klaviyo_profile_not_returned")
        return found

    # ----- profiles -------------------------------------------------------------------------------
    def _import(self, members: Sequence[Member], outcomes: dict[str, RowOutcome], ambiguous: list[Member]) -> dict[str, str]:
        """Upsert the members' profiles in one bulk import job; return their ids, rejecting failed rows and
        adding to ``ambiguous`` the members whose identifiers name two profiles."""
        rows = [{"type": "profile", "attributes": _profile_attributes(m)} for m in members]
        fingerprint = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
        job_id = self._pending_jobs.get(fingerprint)
        if job_id is None:
            body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": rows}}}}
            job_id = str(self._request("POST", "/api/profile-bulk-import-jobs/", "import", _IMPORT, body=body)["data"]["id"])
            self._pending_jobs[fingerprint] = job_id
        try:
            found = self._read_job(job_id, members, outcomes, ambiguous)
        except ImportJobLost:
            self._pending_jobs.pop(fingerprint, None)
            raise
        self._pending_jobs.pop(fingerprint, None)  # kept until read: a throttled page resumes this job, never a new one
        return found

    def _read_job(self, job_id: str, members: Sequence[Member], outcomes: dict[str, RowOutcome],
                  ambiguous: list[Member]) -> dict[str, str]:
        """Wait for the job, then map its profiles and import errors back to the members, in the order sent."""
        job = self._wait_for_job(job_id)
        fields = {"page[size]": PAGE_SIZE, "fields[profile]": _IDENTIFIER_FIELDS}
        index: dict[tuple[str, str], str] = {}
        for profile in self._pages(f"/api/profile-bulk-import-jobs/{job_id}/profiles/", "import", _JOB, fields):
            index_profile(index, profile)
        if int(job.get("failed_count") or 0) > 0:
            for error in self._pages(f"/api/profile-bulk-import-jobs/{job_id}/import-errors/", "import", _JOB, {"page[size]": PAGE_SIZE}):
                attributes = error.get("attributes") or {}
                member = errored_member(attributes, members)
                if member is not None and attributes.get("code") == DUPLICATE_CODE:
                    ambiguous.append(member)
                elif member is not None:
                    outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, row_reason(attributes))
        found: dict[str, str] = {}
        unsure = {m.member_key for m in ambiguous}
        for member in members:
            if member.member_key in outcomes or member.member_key in unsure:
                continue
            profile_id = match(index, member)
            if profile_id:
                found[member.member_key] = profile_id
            else:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.RETRYABLE, "klaviyo_profile_not_returned")
        return found

    def _wait_for_job(self, job_id: str) -> dict[str, Any]:
        deadline = self._clock() + self.config.import_timeout_s
        while True:
            self._sleep(self.config.import_poll_interval_s)
            attributes = self._request("GET", f"/api/profile-bulk-import-jobs/{job_id}/", "import", _JOB)["data"]["attributes"]
            status = attributes.get("status")
            if status == "complete":
                return attributes
            if status == "cancelled":
                raise ImportJobLost(f"Klaviyo cancelled the profile import job {job_id} of destination '{self.name}'; importing again")
            if self._clock() >= deadline:
                raise TransientError(f"Klaviyo's profile import job {job_id} is still {status} after {self.config.import_timeout_s:g} s;"
                                     " the retry resumes the same job")

    def _lookup(self, members: Sequence[Member]) -> dict[str, str]:
        """Ids of the members' existing profiles (never creates one); members Klaviyo does not know are left out."""
        found: dict[str, str] = {}
        for kind in MATCH_ORDER:
            pending = [m for m in members if m.member_key not in found and m.identifiers.get(kind) and '"' not in m.identifiers[kind]]
            values = list(dict.fromkeys(folded(kind, m.identifiers[kind]) for m in pending))
            index: dict[tuple[str, str], str] = {}
            for start in range(0, len(values), LOOKUP_CHUNK):
                chunk = values[start:start + LOOKUP_CHUNK]
                params = {"filter": f"any({ATTRIBUTES[kind]},{json.dumps(chunk, ensure_ascii=False)})", "page[size]": PAGE_SIZE,
                          "fields[profile]": _IDENTIFIER_FIELDS}
                for profile in self._pages("/api/profiles/", "profiles", _PROFILES, params):
                    index_profile(index, profile)
            for member in pending:
                profile_id = index.get((kind, folded(kind, member.identifiers[kind])))
                if profile_id:
                    found[member.member_key] = profile_id
        return found

    def _unset_properties(self, members: Sequence[Member], ids: Mapping[str, str]) -> None:
        """Clear the traits a member sends as null (``null_traits: clear``): the bulk import never clears a
        property, so each such profile gets Update Profile with ``meta.patch_properties.unset``."""
        for member in members:
            unset = sorted(name for name, value in member.traits.items() if value is None)
            profile_id = ids.get(member.member_key)
            if not unset or not profile_id:
                continue
            body = {"data": {"type": "profile", "id": profile_id, "attributes": {},
                             "meta": {"patch_properties": {"unset": unset}}}}
            self._request("PATCH", f"/api/profiles/{profile_id}/", "profiles", _PROFILES, body=body)

    def _cache_get(self, members: Sequence[Member]) -> dict[str, str]:
        """Member key -> cached profile id, for members whose identifiers are those the id was resolved from."""
        keys = [m.member_key for m in members]
        stored = self.id_cache.get_many(keys) if self.id_cache is not None else {k: self._local_ids[k] for k in keys if k in self._local_ids}
        found = {}
        for member in members:
            profile_id, _, digest = (stored.get(member.member_key) or "").partition("#")
            if profile_id and digest == identity_digest(member):
                found[member.member_key] = profile_id
        return found

    def _cache_put(self, ids: Mapping[str, str], members: Sequence[Member]) -> None:
        """Cache each member's profile id with the digest of the identifiers it was resolved from."""
        by_key = {m.member_key: m for m in members}
        entries = {key: f"{profile_id}#{identity_digest(by_key[key])}" for key, profile_id in ids.items()}
        if not entries:
            return
        if self.id_cache is not None:
            self.id_cache.put_many(entries)
        else:
            self._local_ids.update(entries)

    # ----- HTTP -----------------------------------------------------------------------------------
    def _pages(self, path: str, group: str, target: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated collection (the cursor is read from ``links.next``)."""
        params = dict(params)
        while True:
            body = self._request("GET", path, group, target, params=params)
            yield from (item for item in body.get("data") or [] if isinstance(item, dict))
            following = (body.get("links") or {}).get("next")
            cursor = parse_qs(urlsplit(following).query).get("page[cursor]", [None])[0] if following else None
            if not cursor:
                return
            params["page[cursor]"] = cursor

    def _request(self, method: str, path: str, group: str, target: str, *, params: Mapping[str, Any] | None = None,
                 body: Any = None) -> dict[str, Any]:
        """One call about ``target``, paced by the endpoint's limiter; returns the JSON object or raises the
        classified failure."""
        if "account" in self._limiters:
            self._limiters["account"].acquire()
        self._limiters[group].acquire()
        self._calls += 1
        try:
            response = self._session.request(method, self._base + path, params=params, timeout=self.config.request_timeout_s,
                                             data=json.dumps(body) if body is not None else None)
        except requests.RequestException as exc:
            raise unreachable("Klaviyo", self._base, exc, redactor=redact_pii) from None
        answer = PlatformResponse(response.status_code, read_body(response, empty={}), response.headers)
        failure = self.classify(answer, target=target)
        if failure is not None:
            raise failure
        return answer.body

    def _list_id(self, audience: AudienceRef) -> str:
        list_id = audience.audience_id.strip()
        if not _LIST_ID.match(list_id):
            raise ConfigError(f"Sync '{audience.sync}': audience_id {audience.audience_id!r} is not a Klaviyo list id (like Y6nRLr)")
        return list_id


def _profile_attributes(member: Member) -> dict[str, Any]:
    """A profile row of the import: the identifiers and names, and the traits set (non-null) as ``properties``."""
    attributes: dict[str, Any] = {ATTRIBUTES[k]: v for k, v in member.identifiers.items() if k in ATTRIBUTES and v}
    properties = {name: value for name, value in member.traits.items() if value is not None}
    if properties:
        attributes["properties"] = properties
    return attributes


def _key_refused(status: int, code: str, ctx: ErrorContext, detail: str) -> ConfigError:
    """401 (a wrong key) or 403 (a key without a scope), with the scopes a private key needs."""
    scopes = "lists:read, lists:write, profiles:read and profiles:write"
    if status == 401:
        return ConfigError(f"Klaviyo refused the API key of destination '{ctx.destination}' ({code or 'unauthorized'}): create a"
                           f" private key with {scopes} and export it as {ctx.credential_env}", detail=detail)
    return ConfigError(f"Klaviyo API key of destination '{ctx.destination}' lacks a scope for {ctx.target}: give the private key"
                       f" {scopes}, then export it as {ctx.credential_env}", detail=detail)
