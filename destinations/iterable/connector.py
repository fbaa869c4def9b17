"""Iterable: keep a static list's membership in sync through the list subscribe and unsubscribe calls.

Membership never touches consent
    The sync's ``audience_id`` is the list id. An add subscribes the member to that list; a remove
    unsubscribes them from that list only, always with ``"channelUnsubscribe": false`` (true would
    unsubscribe the person from the list's whole message channel, "essentially a global unsubscribe").
    No call here ever writes ``unsubscribedChannelIds``, ``unsubscribedMessageTypeIds`` or
    ``subscribedMessageTypeIds``, and no ``campaignId`` is sent (it would attribute an unsubscribe to a
    campaign). Leaving a segment is not an unsubscribe.

API flow (plain ``requests`` session, pooled)::

    add     POST {base}/api/lists/subscribe    {"listId": 1001, "subscribers": [{"email": "...", "dataFields"?: {...}} |
                                                 {"userId": "...", "preferUserId": true}],
                                                 "updateExistingUsersOnly"?: true}
    remove  POST {base}/api/lists/unsubscribe  {"listId": 1001, "subscribers": [{"email"} | {"userId"}],
                                                 "channelUnsubscribe": false}
    check   GET  {base}/api/lists               the key works and (given an audience) the list exists
    list    GET  {base}/api/lists/getUsers?listId=1001   text, one email (or userId) per line (``syncer reconcile``)

    Api-Key: <server-side key>; base = ``endpoint``, else https://api.iterable.com (US) or
    https://api.eu.iterable.com (EU, ``data_center``).

- Traits (``Member.traits``, a sync's ``traits``) go in the subscriber's ``dataFields`` on add ("subscribers":
  [{email|userId, dataFields, preferUserId}], specs section 6); a trait cleared on purpose is sent as null.
  A value whose type differs from the project's field fails that subscriber as ``invalidData*`` (REJECTED,
  like any failedUpdates key).
- One identifier per subscriber: ``email``, else ``userId`` (our ``external_id``); ``prefer_user_id``
  swaps the order. Sending both could re-key a profile or fail as a conflict. A userId subscriber carries
  ``preferUserId: true`` so an unknown userId gets a user, as an unknown email does (unless
  ``update_existing_users_only``).

Limits: 1,000 subscribers per request (``max_batch``: one batch is one request). Iterable throttles with a leaky bucket per
project and endpoint and answers 429 ``{"code": "RateLimitExceeded"}``; we pace client-side with a token
bucket at 10 requests/s (burst 10), lowered by ``requests_per_second``.

Outcomes: 200 ``{"successCount", "failCount", "failedUpdates": {...}}``. A member whose sent email or
userId appears (case-insensitively: Iterable echoes values lowercased) under a failedUpdates key is
REJECTED with that key as reason (``iterable: invalidEmails``, ``iterable: forgottenUserIds``...), except
on a remove, where notFound* and forgotten* mean the person is not on the list, which is what a remove
wants: SENT. Failures the lists do not tie to a member leave rows SENT and are counted in
``platform_counts["unmapped_failures"]``. Members with neither identifier are REJECTED
``no_supported_identifier`` without a request. Whole-call failures go through ``classify``, which reads
Iterable's ``code`` first, whatever HTTP status carries it (``BadApiKey`` and ``NotFound`` come on 400
too): ``RateLimitExceeded`` is ``RateLimited`` (``Retry-After`` when sent, else the engine's backoff);
``BadApiKey``/``BadAuthorizationHeader``/``InvalidJwtPayload`` and ``Forbidden`` are ``ConfigError``
naming ``api_key_env``; ``NotFound`` is ``ConfigError`` naming the list; a 2xx carrying another code, or
a body that is not JSON, fails too. The rest is the shared table: 401/403 ``ConfigError`` naming
``api_key_env``, 404 ``ConfigError`` naming the list, 429 ``RateLimited``, 408 and 5xx
``TransientError``, other 4xx ``PermanentError``.

Sources. The official reference (api.iterable.com/api/docs) was not available to read; what we have:
- [3P] RudderStack's ``iterable_audience`` destination (rudder-transformer README and its recorded
  network mocks): Api-Key header (query-string keys are throttled harder), US/EU hosts, 1,000 subscribers
  per request, ``channelUnsubscribe: false`` on removes, the ten failedUpdates keys, lowercased echoes,
  401 ``{"code": "BadApiKey"}``, notFound on unsubscribe treated as success, forgotten users never retried.
- [3P] iterable-go's ``types.FailedUpdates`` (same ten keys) and its list tests (request and 200 shapes).
- [3P] Fivetran's Iterable note: 429 with ``{"code": "RateLimitExceeded", "msg": "Exceeded rate limit for
  endpoint: ..."}``; DataGrail's note: limits enforced with a leaky bucket.
- Assumed [U]: the per-endpoint rate (10/s is a conservative guess: raise ``requests_per_second`` only with
  Iterable's figure for your project), whether 429 carries Retry-After, HTTP 404 ``NotFound`` for an
  unknown list, 400 ``BatchTooLarge`` above 1,000 subscribers.

Config example::

    # destinations/iterable_main.yml
    type: iterable_list
    api_key_env: ITERABLE_API_KEY
    data_center: US
    endpoint: http://127.0.0.1:8510/iterable    # optional: the local sandbox
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests

from destinations.base import AudienceRef, BatchResult, Destination, ListedMember, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, retry_after, unreachable
from destinations.iterable.config import CAPABILITIES, RATE_PER_SECOND, IterableListConfig
from destinations.pacing import TokenBucket
from destinations.responses import ErrorContext, PlatformResponse, classify_status, describe
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["HOSTS", "IterableListDestination"]

HOSTS = {"US": "https://api.iterable.com", "EU": "https://api.eu.iterable.com"}
_FIELD = {"email": "email", "external_id": "userId"}
_GONE_ON_REMOVE = ("notFound", "forgotten")
_KEY_CODES = frozenset({"BadApiKey", "BadAuthorizationHeader", "InvalidJwtPayload"})
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+").fullmatch


class IterableListDestination(Destination):
    """Subscribes and unsubscribes members of one Iterable static list per sync."""

    kind = "iterable_list"
    capabilities = CAPABILITIES

    def __init__(self, config: IterableListConfig, *, name: str | None = None) -> None:
        """Read the key from the environment now and open a pooled session.

        Raises:
            ConfigError: the environment variable named by ``api_key_env`` is not set.
        """
        self.config = config
        self.name = name or "iterable"
        key = resolve_secret(config.api_key_env, what=f"Iterable destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or HOSTS[config.data_center]).rstrip("/")
        rate = min(RATE_PER_SECOND, config.requests_per_second or RATE_PER_SECOND)
        self._bucket = TokenBucket(rate, rate)
        self._session = build_session(self._base, pool_maxsize=8, headers={"Api-Key": key, "User-Agent": "activation-syncer"})
        self._order = ("external_id", "email") if config.prefer_user_id else ("email", "external_id")

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the key (GET /api/lists) and, given an audience, that its list exists."""
        list_id = _list_id(audience) if audience is not None else None
        body = self._call("GET", "/api/lists", None, list_id)
        ids = {str(item.get("id")) for item in body.get("lists", []) if isinstance(item, dict)}
        if list_id is not None and str(list_id) not in ids:
            raise ConfigError(f"Iterable has no list {list_id} in the project of destination '{self.name}': check the sync's"
                              f" audience_id and the key in {self.config.api_key_env}")

    def close(self) -> None:
        self._session.close()

    def list_members(self, audience: AudienceRef) -> Iterator[ListedMember]:
        """Every user of the sync's static list: ``GET /api/lists/getUsers?listId=N``.

        The answer is not JSON and has no pages: the whole list as text, one user per line, read here as a
        stream. A line is the user's email (lowercased, as Iterable keeps emails), or for a user without
        one its userId (our ``external_id``): a line that does not look like an email is taken as a userId.
        Sources [3P]: Airbyte's source-iterable (``ListUsers``: path ``lists/getUsers?listId=``, its test
        body ``alpha@gmail.com\\nbeta@gmail.com``); Meltano's tap-iterable (``ListUsersStream``: "this
        endpoint response is not JSON (and does not support pagination anyway)", parsed line by line).
        [U]: what a line holds for a user without an email (assumed: the userId); the endpoint's rate.
        """
        list_id = _list_id(audience)
        self._bucket.acquire()
        try:
            answer = self._session.get(self._base + "/api/lists/getUsers", params={"listId": list_id},
                                       timeout=self.config.request_timeout_s, stream=True)
        except requests.RequestException as exc:
            raise unreachable("Iterable", self._base, exc, destination=self.name) from None
        with answer:
            if answer.status_code != 200:
                response = PlatformResponse(answer.status_code, read_body(answer, empty="", max_text=1000), answer.headers)
                raise self.classify(response, list_id=list_id) or TransientError(
                    f"Iterable answered HTTP {answer.status_code} listing list {list_id} of destination '{self.name}'; retrying")
            try:
                for raw in answer.iter_lines(decode_unicode=False):
                    line = raw.decode("utf-8", "replace").strip()
                    if line:
                        yield ListedMember({"email": line.lower()} if _EMAIL_LIKE(line) else {"external_id": line})
            except requests.RequestException as exc:
                raise unreachable("Iterable", self._base, exc, destination=self.name) from None

    def classify(self, response: PlatformResponse, *, list_id: int | None = None) -> SyncError | None:
        """The failure one Iterable answer means, or None when the call was accepted.

        The only place that reads Iterable's statuses and error codes; ``list_id`` names the list the call
        was about in messages. Per-subscriber failures inside a 200 are not failures here
        (``_row_outcomes`` maps them to rows). Iterable's ``code`` is read first, whatever status carries
        it; where the status alone speaks, the shared table answers.
        """
        status, body = response.status, response.body
        code = str(body.get("code") or "") if isinstance(body, dict) else ""
        ctx = self.error_context(list_id)
        said, name = f"HTTP {status}{', ' + code if code else ''}", ctx.destination
        if code == "RateLimitExceeded":
            wait = retry_after(response.headers)
            when = f"retry in {wait:.0f} s" if wait is not None else "backing off"
            return RateLimited(f"Iterable rate-limited destination '{name}' ({said}); {when}", retry_after=wait,
                               detail=describe(response, code))
        if code in _KEY_CODES or code == "Forbidden":
            what = "refused the API key" if code in _KEY_CODES else "forbade this call: the key lacks list permissions"
            return ConfigError(f"Iterable {what} of destination '{name}' ({said}): export a server-side (Standard) key of"
                               f" the project as {ctx.credential_env}", detail=describe(response, code))
        if code == "NotFound":
            return ConfigError(f"Iterable has no {ctx.target} for destination '{name}' ({said}): check the sync's audience_id,"
                               f" and data_center / endpoint ({self._base})", detail=describe(response, code))
        if 200 <= status < 300:
            if code in ("", "Success"):
                return None if isinstance(body, dict) else TransientError(
                    f"Iterable answered {said} with a body that is not JSON for destination '{name}'; retrying",
                    detail=describe(response))
            return PermanentError(f"Iterable refused the whole request for {ctx.target} of destination '{name}' ({said});"
                                  " nothing was applied", detail=describe(response, code))
        return classify_status(response, ctx, code=code or None)

    def error_context(self, list_id: int | None = None) -> ErrorContext:
        return ErrorContext(platform="Iterable", destination=self.name or self.kind, credential_env=self.config.api_key_env,
                            target=f"list {list_id}" if list_id is not None else "the project")

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        list_id = _list_id(audience)
        outcomes: dict[str, RowOutcome] = {}
        sendable: list[tuple[Member, dict[str, Any]]] = []
        for member in members:
            subscriber = self._subscriber(op, member)
            if subscriber is None:
                outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
            else:
                sendable.append((member, subscriber))
        counts = {"successCount": 0, "failCount": 0, "unmapped_failures": 0}
        if not sendable:
            return BatchResult(op, tuple(outcomes.values()), requests=0, platform_counts=counts)
        body = self._call("POST", "/api/lists/" + ("subscribe" if op == "add" else "unsubscribe"),
                          self._body(op, list_id, [s for _, s in sendable]), list_id)
        rows, tied = _row_outcomes(op, sendable, body.get("failedUpdates"))
        outcomes.update(rows)
        for key in ("successCount", "failCount"):
            counts[key] = body[key] if isinstance(body.get(key), int) else 0
        counts["unmapped_failures"] = max(counts["failCount"] - tied, 0)
        return BatchResult(op, tuple(outcomes.values()), requests=1, platform_counts=counts)

    def _subscriber(self, op: Op, member: Member) -> dict[str, Any] | None:
        kind = next((k for k in self._order if member.identifiers.get(k)), None)
        if kind is None:
            return None
        subscriber: dict[str, Any] = {_FIELD[kind]: member.identifiers[kind]}
        if kind == "external_id" and op == "add" and not self.config.update_existing_users_only:
            subscriber["preferUserId"] = True
        if op == "add" and member.traits:
            subscriber["dataFields"] = dict(member.traits)  # a None (null_traits: clear) sets the field to null
        return subscriber

    def _body(self, op: Op, list_id: int, subscribers: list[dict[str, Any]]) -> dict[str, Any]:
        if op == "remove":
            return {"listId": list_id, "subscribers": subscribers, "channelUnsubscribe": False}
        body: dict[str, Any] = {"listId": list_id, "subscribers": subscribers}
        if self.config.update_existing_users_only:
            body["updateExistingUsersOnly"] = True
        return body

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None, list_id: int | None) -> dict[str, Any]:
        self._bucket.acquire()
        try:
            answer = self._session.request(method, self._base + path, json=payload, timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            raise unreachable("Iterable", self._base, exc, destination=self.name) from None
        response = PlatformResponse(answer.status_code, read_body(answer, empty="", max_text=1000), answer.headers)
        failure = self.classify(response, list_id=list_id)
        if failure is not None:
            raise failure
        return response.body


def _list_id(audience: AudienceRef) -> int:
    if not audience.audience_id.strip().isdigit():
        raise ConfigError(f"audience_id '{audience.audience_id}' of sync '{audience.sync}' is not an Iterable list id:"
                          " use the numeric id shown in Audience > Lists")
    return int(audience.audience_id)


def _failed_index(failed: Any) -> dict[tuple[str, str], str]:
    """(field, lowercased value) -> failedUpdates key, from the response's lists."""
    index: dict[tuple[str, str], str] = {}
    for key, values in (failed.items() if isinstance(failed, dict) else ()):
        field = "email" if key.endswith("Emails") else "userId" if key.endswith("UserIds") else None
        if field is None or not isinstance(values, list):
            continue
        for value in values:
            index.setdefault((field, str(value).lower()), key)
    return index


def _row_outcomes(op: Op, sent: Sequence[tuple[Member, dict[str, Any]]], failed: Any) -> tuple[dict[str, RowOutcome], int]:
    """Outcome per member from failedUpdates; returns (outcomes, members the lists name)."""
    index = _failed_index(failed)
    outcomes: dict[str, RowOutcome] = {}
    tied = 0
    for member, subscriber in sent:
        field = "email" if "email" in subscriber else "userId"
        key = index.get((field, str(subscriber[field]).lower()))
        tied += key is not None
        if key is None or (op == "remove" and key.startswith(_GONE_ON_REMOVE)):
            outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.SENT)
        else:
            outcomes[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, f"iterable: {key}")
    return outcomes, tied
