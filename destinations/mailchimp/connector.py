"""Mailchimp audiences: keep a tag (or a static segment) equal to a segment, without ever touching consent.

Membership never touches consent. A member of the segment carries a tag (or sits in a static segment)
of the Mailchimp audience; leaving the segment takes the tag off (or leaves the static segment). The
contact's subscription status is never changed: no PUT of a contact, no PATCH but of its merge fields
(traits), no status in a remove, no archive (DELETE) and no ``update_existing``. Leaving a segment is not an unsubscribe.

audience_id (the sync's) names the audience (list) and what membership means in it
(``destinations.mailchimp.audience``): "LIST_ID:tag:NAME", "LIST_ID:segment:ID" or "LIST_ID:NAME" (a tag,
or a static segment id with ``membership: static_segment``). A bare LIST_ID is refused: membership of
the audience itself could only be undone by archiving or unsubscribing the contact.

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
    list    tag:     GET /lists/{list_id}/tag-search?name=NAME -> the tag's segment id, then as a segment
            segment: GET /lists/{list_id}/segments/{id}/members?count=1000&offset=N&include_cleaned=true
                     &include_transactional=true&include_unsubscribed=true   (``syncer reconcile``)

Traits (``Member.traits``, a sync's ``traits``: merge tag -> value) are ``merge_fields``: in the batch
subscribe row of a NEW contact, beside the identifier merge fields; for an EXISTING contact (reported
``ERROR_CONTACT_EXISTS``) with ``PATCH /lists/{list_id}/members/{hash} {merge_fields}`` and nothing else,
so the status is never touched (the batch subscribe with ``update_existing`` would rewrite it), one call
per contact, ``max_connections`` at once. A trait cleared on purpose is sent as the empty string. The tag
must be one of the audience's merge fields ("Your merge fields were invalid" otherwise: REJECTED
``mailchimp_invalid_merge_fields``); create them in Mailchimp first. Merge field values and the empty
string: https://mailchimp.com/developer/marketing/api/list-members/update-list-member/ (``merge_fields``
object of the member), specs section 4 for the batch row.

Status of a NEW contact (an existing contact's status is never changed):

- consent granted (``Member.identifiers["_consent"] == "granted"``, set by the engine because
  ``consent_marker`` is on): ``granted_status`` from the config, "subscribed" by default, or "pending"
  to have Mailchimp send its double opt-in email;
- anything else (unknown, missing): "transactional", Mailchimp's non-subscribed contact: no permission
  to send marketing email, though the contact can get transactional email and be targeted by ads. Never
  "subscribed" without granted consent. A contact who later grants consent is not subscribed by a sync:
  that is the contact's own opt-in, outside membership.

Limits: 500 members per batch subscribe and per segment call (``max_batch``: the base refuses a larger
batch before any call); 10 simultaneous connections per account (429 above). Mailchimp sends no
rate-limit headers; ``requests_per_second`` in the config adds a client-side cap.

Errors: ``classify`` is the only reader of Mailchimp's answers, and answers as the shared table
(``destinations.responses``) wherever Mailchimp means what it says. Mailchimp's own, read first: a 2xx
carrying ``errors[]`` (batch subscribe, segment calls) is accepted as a call, its errors being per-row
rejections read by the caller, while a 2xx that is not JSON is retried; a 403 without a JSON body comes
from Mailchimp's edge throttle (``RateLimited``); 401 and 403 name the variable to fix; a 4xx about one
contact (the tags call) rejects that row only (``RowRejected``; an address Mailchimp calls "fake or
invalid", in a batch row's ``error`` or a 400's ``detail``, is ``mailchimp_invalid_email``); 409 and
unknown statuses are retried (tag and segment changes are idempotent). A 429 raises ``RateLimited``
(its ``Retry-After`` when sent, which Mailchimp does not: the engine backs off).

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlencode

import requests

from destinations.base import AudienceRef, BatchResult, Destination, ListedMember, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, redact, retry_after, unreachable
from destinations.mailchimp.audience import Membership, parse_audience
from destinations.mailchimp.config import CAPABILITIES, MailchimpAudienceConfig
from destinations.pacing import SlidingWindowLimiter
from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["MailchimpAudienceDestination", "RowRejected", "subscriber_hash"]

NEW_STATUS_WITHOUT_CONSENT = "transactional"
_PAGE = 1000  # records per page of a collection: Mailchimp's maximum ``count``
_DC = re.compile(r"-([a-z]{2,4}\d+)$")
# Mailchimp's words for an address it refuses, in a batch row's ``error`` or a one-contact 400's ``detail``
# ("<address> looks fake or invalid, please enter a real email address.")
_FAKE_OR_INVALID = "fake or invalid"


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of a contact: the MD5 of the lowercased email."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


class RowRejected(PermanentError):
    """Mailchimp refused a call about one contact; ``reason`` is the row's short code."""

    def __init__(self, message: str, *, reason: str, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.reason = reason


class MailchimpAudienceDestination(Destination):
    """Adds and removes members of a Mailchimp tag or static segment; never changes a contact's status."""

    kind = "mailchimp_audience"
    capabilities = CAPABILITIES

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
        self._request("GET", "/ping", None)
        if audience is not None:
            target = parse_audience(audience.audience_id, self._default_kind)
            self._request("GET", f"/lists/{target.list_id}", audience.audience_id)
            if target.kind == "segment":
                self._request("GET", f"/lists/{target.list_id}/segments/{target.target}", audience.audience_id)

    def close(self) -> None:
        self._session.close()

    def list_members(self, audience: AudienceRef) -> Iterator[ListedMember]:
        """Every contact carrying the sync's tag (or in its static segment), whatever its status.

        ``GET /lists/{id}/segments/{segment_id}/members`` (a tag is a static segment; its id comes from
        ``GET /lists/{id}/tag-search?name=``, a prefix search, so the exact name is picked), ``count``
        1,000 (the documented maximum) and ``offset`` pages. Cleaned, transactional and unsubscribed
        contacts are left out unless asked for, and a sync tags transactional contacts itself, so all three
        ``include_*`` flags are set. A tag no contact ever carried does not exist: nobody is listed.
        Sources: https://mailchimp.com/developer/marketing/api/list-segment-members/list-members-in-segment/,
        https://mailchimp.com/developer/marketing/api/list-tags/search-for-tags-on-a-list-by-name/.
        """
        target = parse_audience(audience.audience_id, self._default_kind)
        segment_id = target.target if target.kind == "segment" else self._tag_id(target, audience.audience_id)
        if segment_id is None:
            return
        path = f"/lists/{target.list_id}/segments/{segment_id}/members"
        fields = "members.email_address,members.contact_id,total_items"
        for page in self._pages(path, audience.audience_id, "members", fields=fields, include_cleaned="true",
                                include_transactional="true", include_unsubscribed="true"):
            for member in page:
                email = str(member.get("email_address") or "").strip().lower()
                if email:
                    yield ListedMember({"email": email}, platform_id=str(member.get("contact_id") or "") or None)

    def _tag_id(self, target: Membership, audience_id: str) -> str | None:
        for page in self._pages(f"/lists/{target.list_id}/tag-search", audience_id, "tags", name=target.target):
            for tag in page:
                if tag.get("name") == target.target:
                    return str(tag.get("id"))
        return None

    def _pages(self, path: str, audience_id: str, items: str, **params: str) -> Iterator[list[dict[str, Any]]]:
        """The ``items`` of each page of a count/offset collection, until ``total_items`` are read."""
        offset = 0
        while True:
            query = urlencode({**params, "count": _PAGE, "offset": offset})
            body = self._request("GET", f"{path}?{query}", audience_id)
            page = [item for item in body.get(items) or [] if isinstance(item, dict)]
            yield page
            offset += len(page)
            if not page or offset >= int(body.get("total_items") or 0):
                return

    def classify(self, response: PlatformResponse, *, audience_id: str | None = None,
                 member_call: bool = False) -> SyncError | None:
        """The failure one Mailchimp answer means, or None when the call was accepted.

        The only place that reads Mailchimp's statuses; ``audience_id`` names the sync's audience in
        messages, ``member_call`` says the call was about one contact (its 4xx rejects that row only).
        Mailchimp's own answers first, 2xx bodies before anything (see the module header), then the
        shared table.
        """
        status, body = response.status, response.body
        problem = body if isinstance(body, dict) and "title" in body else {}
        title = str(problem.get("title") or "")
        ctx = self.error_context(audience_id)
        where, detail = f"{ctx.target} of destination '{ctx.destination}'", _detail(status, body, problem)
        if 200 <= status < 300:  # errors[] in a 2xx are per-row refusals, read by the caller
            return None if body is None or isinstance(body, dict) else TransientError(
                f"Mailchimp sent a response that is not JSON (HTTP {status}) for {where}; retrying", detail=detail)
        if status == 403 and not isinstance(body, dict):  # Mailchimp's edge throttle answers 403 without its JSON
            wait = retry_after(response.headers)
            return RateLimited(f"Mailchimp throttled {where} (HTTP 403)" + (f"; retry in {wait:g} s" if wait else ""),
                               retry_after=wait, detail=detail)
        if status in (401, 403):
            return _key_refused(status, title, ctx, detail)
        if status == 404 and member_call:
            return RowRejected(f"Mailchimp has no such contact in {where}", reason="mailchimp_member_not_found", detail=detail)
        if status == 404 and not problem:
            return ConfigError(f"{self._base} answered HTTP 404 with a page that is not Mailchimp's API: check 'endpoint' of"
                               f" destination '{ctx.destination}'", detail=detail)
        if member_call and problem and 400 <= status < 500 and status not in (408, 409, 429):
            if _FAKE_OR_INVALID in str(problem.get("detail") or "").lower():
                return RowRejected(f"Mailchimp refused a contact's email address as fake or invalid in {where}",
                                   reason="mailchimp_invalid_email", detail=detail)
            if "merge_fields" in str(problem.get("errors") or ""):
                return RowRejected(f"Mailchimp refused a contact's merge fields in {where}", reason="mailchimp_invalid_merge_fields",
                                   detail=detail)
            return RowRejected(f"Mailchimp refused a contact's update in {where} ({title})", reason=_code(title), detail=detail)
        if status == 409 or not 400 <= status < 600:
            # A conflict, or a status Mailchimp does not document: tag and segment changes are idempotent, so a retry is harmless.
            return TransientError(f"Mailchimp answered HTTP {status} on {where}; retrying", detail=detail)
        return classify_status(response, ctx, code=title or None)

    def error_context(self, audience_id: str | None = None) -> ErrorContext:
        return ErrorContext(platform="Mailchimp", destination=self.name or self.kind, credential_env=self.config.api_key_env,
                            target=f"audience {audience_id}" if audience_id else "the account")

    # ----- flow -----------------------------------------------------------------------------------
    @property
    def _default_kind(self) -> str:
        return "tag" if self.config.membership == "tag" else "segment"

    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
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
            rejected, counts, existing = self._subscribe_new(target.list_id, audience.audience_id, by_email)
            rejected |= self._update_merge_fields(target.list_id, audience.audience_id,
                                                  {e: by_email[e][0].traits for e in existing if by_email[e][0].traits})
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

    def _subscribe_new(self, list_id: str, audience_id: str, by_email: Mapping[str, list[Member]]
                       ) -> tuple[dict[str, str], dict[str, int], list[str]]:
        """Add the contacts Mailchimp does not have yet, with the status their consent allows; existing ones stay as
        they are. Returns (rejected rows, counts, the emails of existing contacts)."""
        rows = [self._new_contact(email, group[0]) for email, group in by_email.items()]
        body = self._request("POST", f"/lists/{list_id}", audience_id, body={"members": rows, "update_existing": False})
        rejected, existing = {}, []
        for error in body.get("errors") or []:
            email = str(error.get("email_address") or "").strip().lower()
            if error.get("error_code") == "ERROR_CONTACT_EXISTS":
                existing.append(email)
            elif email in by_email:
                rejected[email] = _row_reason(error)
        counts = {"contacts_created": int(body.get("total_created") or len(body.get("new_members") or [])),
                  "contacts_existing": len(existing)}
        return rejected, counts, [e for e in existing if e in by_email]

    def _new_contact(self, email: str, member: Member) -> dict[str, Any]:
        granted = member.identifiers.get("_consent") == "granted"
        row: dict[str, Any] = {"email_address": email, "status": self.config.granted_status if granted else NEW_STATUS_WITHOUT_CONSENT}
        merge = {tag: member.identifiers[kind] for kind, tag in self.config.merge_fields.items() if member.identifiers.get(kind)}
        merge |= _merge_values(member.traits)
        if merge:
            row["merge_fields"] = merge
        return row

    def _update_merge_fields(self, list_id: str, audience_id: str, traits: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
        """Set the traits of existing contacts: PATCH of ``merge_fields`` alone, which leaves the status as it is."""
        rejected: dict[str, str] = {}

        def one(email: str) -> None:
            try:
                self._request("PATCH", f"/lists/{list_id}/members/{subscriber_hash(email)}", audience_id,
                              body={"merge_fields": _merge_values(traits[email])}, member_call=True)
            except RowRejected as exc:
                rejected[email] = exc.reason

        self._in_parallel(list(traits), one, "mailchimp-merge")
        return rejected

    def _tag(self, op: Op, target: Membership, audience_id: str, emails: Sequence[str]) -> dict[str, str]:
        """Set the tag active (add) or inactive (remove) on each contact, ``max_connections`` calls at once."""
        status = "active" if op == "add" else "inactive"
        body = {"tags": [{"name": target.target, "status": status}]}
        rejected: dict[str, str] = {}
        absent: list[str] = []

        def one(email: str) -> None:
            try:
                self._request("POST", f"/lists/{target.list_id}/members/{subscriber_hash(email)}/tags", audience_id, body=body,
                              member_call=True)
            except RowRejected as exc:
                if op == "remove" and exc.reason == "mailchimp_member_not_found":
                    absent.append(email)  # no such contact: no tag to remove
                else:
                    rejected[email] = exc.reason

        self._in_parallel(emails, one, "mailchimp-tags")
        if absent and len(absent) == len(emails):  # Mailchimp answers a missing audience like a missing contact
            self._request("GET", f"/lists/{target.list_id}", audience_id)
        return rejected

    def _in_parallel(self, emails: Sequence[str], one: Callable[[str], None], prefix: str) -> None:
        """``one(email)`` for each contact, ``max_connections`` calls at once; the most severe failure is raised
        (the whole batch is retried: tags and merge fields are idempotent)."""
        if not emails:
            return
        with ThreadPoolExecutor(max_workers=self.config.max_connections, thread_name_prefix=prefix) as pool:
            futures = [pool.submit(one, email) for email in emails]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            failures = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failures:
            raise _most_severe(failures)

    def _segment(self, op: Op, target: Membership, audience_id: str, emails: Sequence[str]) -> dict[str, str]:
        field = "members_to_add" if op == "add" else "members_to_remove"
        body = self._request("POST", f"/lists/{target.list_id}/segments/{target.target}", audience_id,
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
    def _request(self, method: str, path: str, audience_id: str | None, *, body: Any = None,
                 member_call: bool = False) -> dict[str, Any]:
        """One call about ``audience_id`` (and one contact, for ``member_call``); returns the JSON object
        (empty for 204) or raises the classified failure."""
        if self._limiter is not None:
            self._limiter.acquire()
        with self._calls_lock:
            self._calls += 1
        try:
            response = self._session.request(method, self._base + path, timeout=self.config.request_timeout_s,
                                             data=json.dumps(body) if body is not None else None)
        except requests.RequestException as exc:
            raise unreachable("Mailchimp", self._base, exc, redactor=_redact) from None
        answer = PlatformResponse(response.status_code, read_body(response), response.headers)
        failure = self.classify(answer, audience_id=audience_id, member_call=member_call)
        if failure is not None:
            raise failure
        return answer.body if isinstance(answer.body, dict) else {}


def _base_url(config: MailchimpAudienceConfig, key: str) -> str:
    if config.endpoint:
        base = config.endpoint.rstrip("/")
        return base if base.endswith("/3.0") else base + "/3.0"
    match = _DC.search(key)
    if not match:
        raise ConfigError(f"The Mailchimp API key in {config.api_key_env} has no data-center suffix (like -us6): export the"
                          " whole key as Mailchimp shows it, or set 'endpoint'")
    return f"https://{match.group(1)}.api.mailchimp.com/3.0"


def _merge_values(traits: Mapping[str, object]) -> dict[str, object]:
    """Traits as merge field values: a cleared one (None) is the empty string, which is how a merge field is emptied."""
    return {tag: "" if value is None else value for tag, value in traits.items()}


def _row_reason(error: Mapping[str, Any]) -> str:
    """A short code for a batch subscribe error (never the email it names)."""
    text = str(error.get("error") or "").lower()
    field = str(error.get("field") or "")
    if field == "email_address" or _FAKE_OR_INVALID in text or "valid email" in text:
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


def _detail(status: int, body: Any, problem: Mapping[str, Any]) -> str:
    """Mailchimp's words for logs: the problem's title, redacted detail and the fields it names."""
    detail = f"HTTP {status}; {problem.get('title') or ''}: {_redact(str(problem.get('detail') or body))[:300]}"
    if problem.get("errors"):
        detail += "; fields: " + ", ".join(str(e.get("field")) for e in problem["errors"][:5] if isinstance(e, dict))
    return detail


def _key_refused(status: int, title: str, ctx: ErrorContext, detail: str) -> ConfigError:
    """401 (a wrong key) or 403 (a user without access), with what to fix."""
    if status == 401:
        return ConfigError(f"Mailchimp refused the API key of destination '{ctx.destination}' ({title or 'unauthorized'}): export a"
                           f" valid key, with its -usN data-center suffix, as {ctx.credential_env}", detail=detail)
    return ConfigError(f"Mailchimp forbids this for destination '{ctx.destination}' ({title or 'forbidden'}): the key in"
                       f" {ctx.credential_env} needs a user with access to the audience (or the account is disabled)", detail=detail)


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
