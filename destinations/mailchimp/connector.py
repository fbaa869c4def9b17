"""Mailchimp audiences: keep a tag (or a static segment) equal to a segment, without ever touching consent.

Membership never touches consent. A member of the segment carries a tag (or sits in a static segment)
of the Mailchimp audience; leaving the segment takes the tag off (or leaves the static segment). The
contact's subscription status is never changed: no PUT or PATCH of a contact, no status in a remove, no
archive (DELETE) and no ``update_existing``. Leaving a segment is not an unsubscribe.

audience_id (the sync's) names the audience (list) and what membership means in it::

    "LIST_ID:tag:NAME"      the tag NAME on contacts of audience LIST_ID
    "LIST_ID:segment:ID"    the static segment ID of audience LIST_ID
    "LIST_ID:NAME"          a tag NAME (config ``membership: tag``, the default) or a static segment
                            id (``membership: static_segment``)

A bare LIST_ID is refused: membership of the audience itself could only be undone by archiving or
unsubscribing the contact.

API flow (``requests``; base ``https://{dc}.api.mailchimp.com/3.0``, dc from the key's ``-usN`` suffix,
or ``endpoint`` + ``/3.0``; HTTP Basic with any user and the key)::

    add     1. POST /lists/{list_id} {members: [{email_address, status, merge_fields}], update_existing: false}
               (<= 500) -> 200 {new_members, errors[]}: ERROR_CONTACT_EXISTS is an existing contact, left
               exactly as it is; any other entry of errors[] rejects that row.
            2. tag:     POST /lists/{list_id}/members/{md5(lower(email))}/tags {tags: [{name, status: "active"}]}
                        -> 204, one call per contact, at most ``max_connections`` (10) at once
               segment: POST /lists/{list_id}/segments/{id} {members_to_add: [...]} (<= 500) -> errors[] rejects rows
    remove  tag:     the same call with status "inactive"; a 404 (no such contact) has no tag to remove: SENT
            segment: {members_to_remove: [...]}; an email that is not on the list is in no segment: SENT
            A remove never creates a contact.
    check   GET /ping; with an audience GET /lists/{list_id} (and GET /lists/{list_id}/segments/{id})

Status of a NEW contact (an existing contact's status is never changed):

- consent granted (``Member.identifiers["_consent"] == "granted"``, set by the engine because
  ``consent_marker`` is on): ``granted_status`` from the config, "subscribed" by default, or "pending"
  to have Mailchimp send its double opt-in email;
- anything else (unknown, missing): "transactional", Mailchimp's non-subscribed contact: no permission
  to send marketing email, though the contact can get transactional email and be targeted by ads. Never
  "subscribed" without granted consent. A contact who later grants consent is not subscribed by a sync:
  that is the contact's own opt-in, outside membership.

Limits: 500 members per batch subscribe and per segment call (``max_batch``); 10 simultaneous
connections per account (429 above). Mailchimp sends no rate-limit headers; ``requests_per_second`` in
the config adds a client-side cap. A 429 raises ``RateLimited`` (its ``Retry-After`` when sent); 5xx and
a bodyless 403 (an edge throttle) ``TransientError``; 401 and 403 ``ConfigError`` naming the variable;
200 responses with ``errors[]`` become per-row rejections. ``classify`` is the only reader of statuses.

Outcomes: one per member. REJECTED reasons: ``no_email``, ``mailchimp_invalid_email``,
``mailchimp_invalid_merge_fields``, ``mailchimp_compliance_state``, ``mailchimp_not_list_member``,
``mailchimp_<error>``. ``platform_counts``: ``contacts_created``, ``contacts_existing``.

Config example::

    # destinations/mailchimp_main.yml
    type: mailchimp_audience
    api_key_env: MAILCHIMP_API_KEY        # "…-us6": the suffix is the data center
    membership: tag
    granted_status: subscribed
    merge_fields: {first_name: FNAME, last_name: LNAME}
    endpoint: http://127.0.0.1:8510/mailchimp   # optional: the local sandbox
    # syncs/vip_mailchimp.yml: audience_id: "a1b2c3d4e5:tag:VIP buyers"
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import requests

from destinations.base import (
    AudienceRef,
    BatchResult,
    Capabilities,
    Destination,
    Member,
    Op,
    RowOutcome,
    RowStatus,
)
from destinations.http import (
    build_session,
    read_body,
    redact,
    retry_after,
    unreachable,
)
from destinations.mailchimp.config import MailchimpAudienceConfig
from destinations.pacing import SlidingWindowLimiter
from syncer.environment import resolve_secret
from syncer.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    SyncError,
    TransientError,
)

__all__ = ["MailchimpAudienceDestination", "MailchimpContext", "Membership", "RowRejected", "classify", "parse_audience",
           "subscriber_hash"]

NEW_STATUS_WITHOUT_CONSENT = "transactional"
_LIST_ID = re.compile(r"^[0-9a-zA-Z]{1,32}$")
_DC = re.compile(r"-([a-z]{2,4}\d+)$")


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of a contact: the MD5 of the lowercased email."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class Membership:
    """What a sync's audience_id means: a tag or a static segment of one audience (list)."""

    list_id: str
    kind: str  # "tag" or "segment"
    target: str  # tag name or segment id


def parse_audience(audience_id: str, default: str = "tag") -> Membership:
    """Read ``LIST_ID:tag:NAME``, ``LIST_ID:segment:ID`` or ``LIST_ID:NAME``; raise ``ConfigError`` otherwise."""
    list_id, sep, rest = audience_id.strip().partition(":")
    kind, explicit, target = rest.partition(":")
    if explicit and kind in ("tag", "segment"):
        rest = target
    else:
        kind = "tag" if default == "tag" else "segment"
    usage = "write it as 'LIST_ID:tag:NAME' or 'LIST_ID:segment:ID'"
    if not sep or not _LIST_ID.match(list_id):
        raise ConfigError(f"audience_id {audience_id!r} does not name a Mailchimp audience and a tag or static segment: {usage}"
                          " (a whole audience cannot be a sync's membership)")
    rest = rest.strip()
    if kind == "segment" and not rest.isdigit():
        raise ConfigError(f"audience_id {audience_id!r}: a static segment is given by its numeric id; {usage}")
    if kind == "tag" and not 0 < len(rest) <= 100:
        raise ConfigError(f"audience_id {audience_id!r}: a tag name has 1 to 100 characters; {usage}")
    return Membership(list_id, kind, rest)


@dataclass(frozen=True)
class MailchimpContext:
    """What ``classify`` needs to tell the operator what to fix."""

    destination: str = "mailchimp"
    key_env: str = "MAILCHIMP_API_KEY"
    endpoint: str = "https://usX.api.mailchimp.com/3.0"
    audience_id: str | None = None
    member_call: bool = False  # a call about one contact: its 4xx rejects that row only


class RowRejected(PermanentError):
    """Mailchimp refused a call about one contact; ``reason`` is the row's short code."""

    def __init__(self, message: str, *, reason: str, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.reason = reason


def classify(status: int, body: Any, headers: Mapping[str, str] | None = None, ctx: MailchimpContext | None = None) -> SyncError | None:
    """Map one Mailchimp response to the failure to raise, or None when it succeeded.

    ``body`` is the parsed JSON (problem+json for errors) or the raw text. A 200 carrying ``errors[]``
    succeeded as a call: its row errors are read by the caller. The only place that reads statuses.
    """
    ctx = ctx or MailchimpContext()
    if 200 <= status < 300:
        return None
    problem = body if isinstance(body, dict) and "title" in body else {}
    title = str(problem.get("title") or "")
    detail = f"HTTP {status}; {title}: {_redact(str(problem.get('detail') or body))[:300]}"
    if problem.get("errors"):
        detail += "; fields: " + ", ".join(str(e.get("field")) for e in problem["errors"][:5] if isinstance(e, dict))
    name, where = ctx.destination, f"audience {ctx.audience_id or '?'} of destination '{ctx.destination}'"
    if status == 429 or (status == 403 and not problem):  # a bodyless 403 comes from Mailchimp's edge throttle
        wait_s = retry_after(headers)
        return RateLimited(f"Mailchimp throttled {where} (HTTP {status})" + (f"; retry in {wait_s:g} s" if wait_s else ""),
                           retry_after=wait_s, detail=detail)
    if status == 401:
        return ConfigError(f"Mailchimp refused the API key of destination '{name}' ({title or 'unauthorized'}): export a valid key,"
                           f" with its -usN data-center suffix, as {ctx.key_env}", detail=detail)
    if status == 403:
        return ConfigError(f"Mailchimp forbids this for destination '{name}' ({title}): the key in {ctx.key_env} needs a user with"
                           " access to the audience (or the account is disabled)", detail=detail)
    if status == 404 and ctx.member_call:
        return RowRejected(f"Mailchimp has no such contact in {where}", reason="mailchimp_member_not_found", detail=detail)
    if status == 404:
        if not problem:
            return ConfigError(f"{ctx.endpoint} answered HTTP 404 with a page that is not Mailchimp's API: check 'endpoint' of"
                               f" destination '{name}'", detail=detail)
        return ConfigError(f"Mailchimp {where.replace('audience ', 'audience/tag/segment ', 1)} does not exist (or the key cannot"
                           " see it): check the sync's audience_id", detail=detail)
    if status >= 500 or status in (408, 409):
        return TransientError(f"Mailchimp had a temporary failure (HTTP {status}) on {where}; retrying", detail=detail)
    if 400 <= status < 500 and ctx.member_call and problem:
        return RowRejected(f"Mailchimp refused a contact's update in {where} ({title})", reason=_code(title), detail=detail)
    if 400 <= status < 500:
        return PermanentError(f"Mailchimp refused the call on {where} (HTTP {status}, {title or 'no title'}); nothing was applied:"
                              " see the detail", detail=detail)
    # Unknown: tag and segment changes are idempotent, so a retry is harmless.
    return TransientError(f"Mailchimp answered HTTP {status} on {where}; retrying", detail=detail)


class MailchimpAudienceDestination(Destination):
    """Adds and removes members of a Mailchimp tag or static segment; never changes a contact's status."""

    kind = "mailchimp_audience"
    capabilities = Capabilities(
        platform="plain",
        identifiers=frozenset({"email", "phone", "first_name", "last_name"}),
        max_batch=500,
        channel="email",
        consent_marker=True,
    )

    def __init__(self, config: MailchimpAudienceConfig, *, name: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        """Open the HTTP session; reads the API key from the environment now.

        Raises:
            ConfigError: the variable named by ``api_key_env`` is not set, or the key names no data center.
        """
        self.config = config
        self.name = name or "mailchimp_audience"  # build_destination sets the file stem after construction
        key = resolve_secret(config.api_key_env, what=f"Mailchimp destination '{self.name}'").get_secret_value()
        self._base = _base_url(config, key)
        self._session = build_session(self._base, auth=("syncer", key), pool_maxsize=config.max_connections,
                                      headers={"Content-Type": "application/json", "Accept": "application/json"})
        self._limiter = None
        if config.requests_per_second:
            self._limiter = SlidingWindowLimiter.per_second(config.requests_per_second, clock=clock, sleep=sleep)
        self._calls = 0
        self._calls_lock = threading.Lock()

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the key (and the audience, tag or segment when given); raise ``ConfigError`` with what to fix."""
        self._request("GET", "/ping", self._ctx(None))
        if audience is not None:
            target = parse_audience(audience.audience_id, self._default_kind)
            self._request("GET", f"/lists/{target.list_id}", self._ctx(audience.audience_id))
            if target.kind == "segment":
                self._request("GET", f"/lists/{target.list_id}/segments/{target.target}", self._ctx(audience.audience_id))

    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._apply("add", audience, members)

    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._apply("remove", audience, members)

    def close(self) -> None:
        self._session.close()

    # ----- flow -----------------------------------------------------------------------------------
    @property
    def _default_kind(self) -> str:
        return "tag" if self.config.membership == "tag" else "segment"

    def _apply(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if not members:
            return BatchResult(op, (), requests=0)
        if len(members) > self.capabilities.max_batch:
            raise PermanentError(f"Refusing to send {len(members)} members in one Mailchimp call; the limit is"
                                 f" {self.capabilities.max_batch} (the caller must split batches)")
        target = parse_audience(audience.audience_id, self._default_kind)
        self._calls = 0
        outcomes: dict[str, RowOutcome] = {}
        by_email: dict[str, list[Member]] = {}
        for member in members:
            email = (member.identifiers.get("email") or "").strip().lower()
            if email:
                by_email.setdefault(email, []).append(member)
            else:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_email")
        counts: dict[str, int] = {}
        rejected: dict[str, str] = {}
        if by_email and op == "add":
            rejected, counts = self._subscribe_new(target.list_id, audience.audience_id, by_email)
        ready = [e for e in by_email if e not in rejected]
        if ready:
            send = self._tag if target.kind == "tag" else self._segment
            rejected |= send(op, target, audience.audience_id, ready)
        for email, group in by_email.items():
            for member in group:
                reason = rejected.get(email)
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, reason) if reason \
                    else RowOutcome(member.member_key, RowStatus.SENT)
        return BatchResult(op, tuple(outcomes[m.member_key] for m in members), requests=self._calls, platform_counts=counts)

    def _subscribe_new(self, list_id: str, audience_id: str, by_email: Mapping[str, list[Member]]) -> tuple[dict[str, str], dict[str, int]]:
        """Add the contacts Mailchimp does not have yet, with the status their consent allows; existing ones stay as they are."""
        rows = [self._new_contact(email, group[0]) for email, group in by_email.items()]
        body = self._request("POST", f"/lists/{list_id}", self._ctx(audience_id), body={"members": rows, "update_existing": False})
        rejected, existing = {}, 0
        for error in body.get("errors") or []:
            email = str(error.get("email_address") or "").strip().lower()
            if error.get("error_code") == "ERROR_CONTACT_EXISTS":
                existing += 1
            elif email in by_email:
                rejected[email] = _row_reason(error)
        counts = {"contacts_created": int(body.get("total_created") or len(body.get("new_members") or [])), "contacts_existing": existing}
        return rejected, counts

    def _new_contact(self, email: str, member: Member) -> dict[str, Any]:
        granted = member.identifiers.get("_consent") == "granted"
        row: dict[str, Any] = {"email_address": email, "status": self.config.granted_status if granted else NEW_STATUS_WITHOUT_CONSENT}
        merge = {tag: member.identifiers[kind] for kind, tag in self.config.merge_fields.items() if member.identifiers.get(kind)}
        if merge:
            row["merge_fields"] = merge
        return row

    def _tag(self, op: Op, target: Membership, audience_id: str, emails: Sequence[str]) -> dict[str, str]:
        """Set the tag active (add) or inactive (remove) on each contact, ``max_connections`` calls at once."""
        status = "active" if op == "add" else "inactive"
        body = {"tags": [{"name": target.target, "status": status}]}
        ctx = self._ctx(audience_id, member_call=True)
        rejected: dict[str, str] = {}
        absent: list[str] = []

        def one(email: str) -> None:
            try:
                self._request("POST", f"/lists/{target.list_id}/members/{subscriber_hash(email)}/tags", ctx, body=body)
            except RowRejected as exc:
                if op == "remove" and exc.reason == "mailchimp_member_not_found":
                    absent.append(email)  # no such contact: no tag to remove
                else:
                    rejected[email] = exc.reason

        with ThreadPoolExecutor(max_workers=self.config.max_connections, thread_name_prefix="mailchimp-tags") as pool:
            futures = [pool.submit(one, email) for email in emails]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            failures = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failures:  # the whole batch is retried; tagging is idempotent
            raise _most_severe(failures)
        if absent and len(absent) == len(emails):  # Mailchimp answers a missing audience like a missing contact
            self._request("GET", f"/lists/{target.list_id}", self._ctx(audience_id))
        return rejected

    def _segment(self, op: Op, target: Membership, audience_id: str, emails: Sequence[str]) -> dict[str, str]:
        field = "members_to_add" if op == "add" else "members_to_remove"
        body = self._request("POST", f"/lists/{target.list_id}/segments/{target.target}", self._ctx(audience_id),
                             body={field: list(emails)})
        rejected: dict[str, str] = {}
        wanted = set(emails)
        for error in body.get("errors") or []:
            reason = _segment_reason(str(error.get("error") or ""))
            for email in error.get("email_addresses") or []:
                email = str(email).strip().lower()
                if email in wanted and not (op == "remove" and reason == "mailchimp_not_list_member"):
                    rejected[email] = reason
        return rejected

    # ----- HTTP -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, ctx: MailchimpContext, *, body: Any = None) -> dict[str, Any]:
        """One call; returns the JSON object (empty for 204) or raises the classified failure."""
        if self._limiter is not None:
            self._limiter.acquire()
        with self._calls_lock:
            self._calls += 1
        try:
            response = self._session.request(method, self._base + path, timeout=self.config.request_timeout_s,
                                             data=json.dumps(body) if body is not None else None)
        except requests.RequestException as exc:
            raise unreachable("Mailchimp", self._base, exc, redactor=_redact) from None
        parsed = read_body(response, empty={})
        failure = classify(response.status_code, parsed, response.headers, ctx)
        if failure is not None:
            raise failure
        if not isinstance(parsed, dict):
            raise TransientError(f"Mailchimp sent a response that is not JSON (HTTP {response.status_code}); retrying",
                                 detail=_redact(str(parsed))[:300])
        return parsed

    def _ctx(self, audience_id: str | None, *, member_call: bool = False) -> MailchimpContext:
        return MailchimpContext(self.name, self.config.api_key_env, self._base, audience_id, member_call)


def _base_url(config: MailchimpAudienceConfig, key: str) -> str:
    if config.endpoint:
        base = config.endpoint.rstrip("/")
        return base if base.endswith("/3.0") else base + "/3.0"
    match = _DC.search(key)
    if not match:
        raise ConfigError(f"The Mailchimp API key in {config.api_key_env} has no data-center suffix (like -us6): export the"
                          " whole key as Mailchimp shows it, or set 'endpoint'")
    return f"https://{match.group(1)}.api.mailchimp.com/3.0"


def _row_reason(error: Mapping[str, Any]) -> str:
    """A short code for a batch subscribe error (never the email it names)."""
    text = str(error.get("error") or "").lower()
    field = str(error.get("field") or "")
    if field == "email_address" or "fake or invalid" in text or "valid email" in text:
        return "mailchimp_invalid_email"
    if field == "merge_fields" or "merge field" in text:
        return "mailchimp_invalid_merge_fields"
    if "compliance state" in text:
        return "mailchimp_compliance_state"
    return "mailchimp_" + str(error.get("error_code") or "error").lower()


def _segment_reason(text: str) -> str:
    lowered = text.lower()
    if any(hint in lowered for hint in ("not belong", "not found", "not exist", "not a member", "not a list member")):
        return "mailchimp_not_list_member"
    return "mailchimp_segment_error"


def _code(title: str) -> str:
    return "mailchimp_" + (re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40] or "error")


def _most_severe(failures: Sequence[BaseException]) -> BaseException:
    for kind in (ConfigError, PermanentError, RateLimited, TransientError):
        for failure in failures:
            if isinstance(failure, kind) and not isinstance(failure, RowRejected):
                return failure
    return failures[0]


# Emails, E.164 phones and subscriber hashes (the MD5 in member URLs); narrower than the shared default
# for digit runs, so ids and dates in Mailchimp's problem details stay readable.
_PII = re.compile(r"[^\s@'\"<>:,]+@[^\s@'\"<>,]+|\+\d{7,15}|\b[0-9a-f]{32}\b")


def _redact(text: str) -> str:
    """Hide email addresses, phone numbers and subscriber hashes in text bound for logs."""
    return redact(text, _PII)
