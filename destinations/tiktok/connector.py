"""TikTok Ads custom audiences: keep an audience segment's members in sync through TikTok's segment API.

API flow (``requests``; members arrive normalised and hashed by ``syncer.identity.rows``)::

    add      POST {base}/open_api/{version}/segment/mapping/     {"advertiser_ids": [adv], "action": "add",
                                                                  "id_schema": [...], "batch_data": [[...], ...]}
    remove   POST {base}/open_api/{version}/segment/mapping/     same, with "action": "delete"
    check    GET  {base}/open_api/{version}/advertiser/info/?advertiser_ids=["adv"]

- ``base`` is ``https://business-api.tiktok.com`` (TikTok's sandbox: ``https://sandbox-business-api.tiktok.com``);
  ``endpoint`` in the destination file replaces it (the local sandbox).
- Authentication is the ``Access-Token`` header holding the bare token, no ``Bearer`` prefix [2][6].
- ``batch_data`` holds one row per member, aligned to ``id_schema``: ``{"id": <sha256>, "audience_ids":
  [audience]}`` per identifier, ``{}`` where the member lacks one [2]. We send ``id_schema`` with only the
  kinds the batch carries (EMAIL_SHA256 and/or PHONE_SHA256), email first.
- Every answer is the envelope ``{"code", "message", "request_id", "data"}``; ``code`` 0 is success, any other
  code a failure, usually on HTTP 200 [2][5][6]. So ``classify`` reads the code before the HTTP status.

Facts and sources (numbers in brackets above and below):

[1] https://ads.tiktok.com/help/article/how-to-create-a-custom-audience-with-a-customer-file (TikTok help
    centre): email: remove spaces, lowercase, SHA-256; phone: E.164, ``"+"[country code][number]``, SHA-256;
    mobile advertising ids accepted; an audience needs 1,000+ matched people to serve; it takes 24-48 h to
    build after an upload.
[2] segmentio/action-destinations, ``packages/destination-actions/src/destinations/tiktok-audiences/``
    (``api/index.ts``, ``functions.ts``): the segment API above (``/segment/mapping/`` with ``action`` add or
    delete, ``/segment/audience/`` to create), the ``Access-Token`` header, ``id_schema`` values
    EMAIL_SHA256 / PHONE_SHA256 / IDFA_SHA256, ``{}`` for a missing id, ``code != 0`` treated as failure.
    Segment's docs (https://segment.com/docs/connections/destinations/catalog/actions-tiktok-audiences/)
    repeat that TikTok wants phones in E.164.
[3] https://business-api.tiktok.com/portal/docs/rate-limits/v1.3, read through the summary at
    raw.githubusercontent.com/api-evangelist/tiktok-ads/.../tiktok-ads-rate-limits.yml: throttling is HTTP
    200 with ``code`` 40100; no Retry-After or X-RateLimit headers; Basic tier 10 QPS, 600 QPM, 864,000 QPD
    per app; recovery: QPS after the current second, QPM after 5 minutes, QPD at 00:00 UTC.
[4] https://help.sleekflow.io/en_US/tiktok-business-messaging/troubleshooting-your-tiktok-business-messaging-channels
    (third party, TikTok API for Business codes): 40001 no permission, 40002 invalid parameters, 40007 object
    does not exist, 40100 rate limit, 40105 access token missing or incorrect.
[5] https://www.volcengine.com/article/1422075 and /1475486 (third party): 40105 "Access token is incorrect
    or has been revoked"; the envelope carries ``code``, ``message`` and ``request_id``; the sandbox host.
[6] https://docs.tealium.com/server-side-connectors/tiktok-audiences-tealium-provided-credentials-connector/
    (third party): API v1.3 at business-api.tiktok.com/open_api/v1.3; that connector batches 1,000 rows or 1 MB.

Not found, chosen conservatively:
- The most rows one /segment/mapping/ call takes: 1,000 (``max_batch``), as [6] batches.
- Per-row results: none documented, so accepted rows are SENT; a member with neither email nor phone is
  REJECTED ``no_tiktok_identifier`` here, without a call.
- A throttle states no wait [3]: ``RateLimited(retry_after=None)`` (the engine backs off) unless a front end
  adds ``Retry-After``.
- Codes for an empty or expired token (40104, 40102) and the unknown-audience code (40007, from [4]) are [U];
  all 401xx codes but 40100 are read as credential problems. One third party (adskull.io) calls 40100 an
  invalid token; [3] and [4] agree it is the rate limit, which we follow.
- 5xxxx codes are read as TikTok's internal errors (retried); any other unknown code is retried too, since
  adding and removing members are idempotent.
- Removal semantics: we assume TikTok removes every person any id of a row matches (as Meta and Google do),
  so ``match_keys`` is email and phone.

Config example::

    # destinations/tiktok_vip.yml
    type: tiktok_audience
    advertiser_id: "7000000000000000001"
    access_token_env: TIKTOK_ACCESS_TOKEN
    endpoint: http://127.0.0.1:8510/tiktok     # optional: the local sandbox (python -m syncer.sandbox.server)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, retry_after, unreachable
from destinations.responses import ErrorContext, PlatformResponse, classify_status, describe
from destinations.tiktok.config import CAPABILITIES, ID_SCHEMA, TikTokAudienceConfig
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["DEFAULT_BASE", "TikTokAudienceDestination"]

DEFAULT_BASE = "https://business-api.tiktok.com"
THROTTLE = 40100
CREDENTIAL_CODES = frozenset(range(40101, 40200))
PERMISSION = 40001
INVALID_PARAMS = 40002
NOT_FOUND = 40007
_ACTIONS = {"add": "add", "remove": "delete"}


class TikTokAudienceDestination(Destination):
    """Adds and removes members of TikTok custom audiences (audience segments)."""

    kind = "tiktok_audience"
    capabilities = CAPABILITIES

    def __init__(self, config: TikTokAudienceConfig, *, name: str | None = None) -> None:
        """Build the HTTP session; reads the token from the environment now.

        Raises:
            ConfigError: the environment variable named in the config is not set.
        """
        self.config = config
        self.name = name or f"tiktok_audience {config.advertiser_id}"
        token = resolve_secret(config.access_token_env, what=f"TikTok destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or DEFAULT_BASE).rstrip("/")
        self._api = f"{self._base}/open_api/{config.api_version}"
        self._session = build_session(self._base, headers={"Access-Token": token, "User-Agent": "activation-syncer"})

    # ----- Destination --------------------------------------------------------------------------
    def check(self) -> None:
        """Verify the token and that it may act for the advertiser; raise ``ConfigError`` with what to fix."""
        params = {"advertiser_ids": json.dumps([self.config.advertiser_id])}
        data = self._call("GET", "/advertiser/info/", params=params)
        listed = {str(item.get("advertiser_id")) for item in data.get("list", []) if isinstance(item, dict)}
        if self.config.advertiser_id not in listed:
            raise ConfigError(f"TikTok did not list advertiser {self.config.advertiser_id} for the token in"
                              f" {self.config.access_token_env}: fix advertiser_id of destination '{self.name}'"
                              " or authorise the app for that advertiser")

    def close(self) -> None:
        self._session.close()

    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        sendable: list[Member] = []
        rejected: list[RowOutcome] = []
        for member in members:
            if any(member.identifiers.get(kind) for kind in ID_SCHEMA):
                sendable.append(member)
            else:
                rejected.append(RowOutcome(member.member_key, RowStatus.REJECTED, "no_tiktok_identifier"))
        if not sendable:
            return BatchResult(op, tuple(rejected), requests=0)
        self._call("POST", "/segment/mapping/", body=mapping_body(op, self.config.advertiser_id, audience.audience_id,
                                                                  sendable), audience_id=audience.audience_id)
        sent = [RowOutcome(m.member_key, RowStatus.SENT) for m in sendable]
        return BatchResult(op, tuple(sent + rejected), requests=1, platform_counts={"rows_sent": len(sendable)})

    # ----- failures -----------------------------------------------------------------------------
    def error_context(self, audience_id: str | None = None) -> ErrorContext:
        """TikTok, the token's variable, and what a call was about: the audience, else the advertiser."""
        target = f"audience {audience_id}" if audience_id else f"advertiser {self.config.advertiser_id}"
        return ErrorContext("TikTok", self.name, self.config.access_token_env, target)

    def classify(self, response: PlatformResponse, *, audience_id: str | None = None) -> SyncError | None:
        """The failure one TikTok answer means, or None when it succeeded: the only reader of TikTok's codes.

        TikTok answers in the ``{code, message, request_id, data}`` envelope, mostly on HTTP 200, so its
        ``code`` decides; an answer without the envelope (a front end's page) goes to the shared status
        table, and a 2xx without it is unexpected (retried).
        """
        ctx = self.error_context(audience_id)
        body = response.body
        code = body.get("code") if isinstance(body, dict) else None
        if type(code) is int:
            return None if code == 0 else _classify_code(code, response, ctx)
        if 200 <= response.status < 300:
            return TransientError(f"TikTok sent an unexpected response (HTTP {response.status}, no code) for"
                                  f" {ctx.target} of destination '{ctx.destination}'; retrying", detail=describe(response))
        return classify_status(response, ctx)

    # ----- HTTP ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
              body: Mapping[str, Any] | None = None, audience_id: str | None = None) -> dict[str, Any]:
        try:
            answer = self._session.request(method, self._api + path, params=params, json=body,
                                           timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            raise unreachable("TikTok", self._base, exc, destination=self.name) from None
        response = PlatformResponse(answer.status_code, read_body(answer, max_text=1000), answer.headers)
        failure = self.classify(response, audience_id=audience_id)
        if failure is not None:
            raise failure
        data = response.body.get("data")
        return data if isinstance(data, dict) else {}


def mapping_body(op: Op, advertiser_id: str, audience_id: str, members: Sequence[Member]) -> dict[str, Any]:
    """The /segment/mapping/ request for ``members`` (each holding an email or a phone).

    ``id_schema`` names only the kinds the batch carries, in a fixed order; each row has one entry per kind,
    ``{}`` where the member lacks it.
    """
    kinds = [kind for kind in ID_SCHEMA if any(m.identifiers.get(kind) for m in members)]
    audiences = [audience_id]
    rows = [[{"id": m.identifiers[kind], "audience_ids": audiences} if m.identifiers.get(kind) else {} for kind in kinds]
            for m in members]
    return {"advertiser_ids": [advertiser_id], "action": _ACTIONS[op], "id_schema": [ID_SCHEMA[k] for k in kinds],
            "batch_data": rows}


def _classify_code(code: int, response: PlatformResponse, ctx: ErrorContext) -> SyncError:
    said = f"TikTok code {code}"
    detail = describe(response, str(code))
    name = ctx.destination
    if code == THROTTLE:
        wait = retry_after(response.headers)  # TikTok states none [3]; a front end may
        when = f"retry in {wait:.0f} s" if wait is not None else "backing off"
        return RateLimited(f"TikTok rate-limited destination '{name}' ({said}); {when}", retry_after=wait, detail=detail)
    if code in CREDENTIAL_CODES:
        return ConfigError(f"TikTok refused the access token of destination '{name}' ({said}): check the token in"
                           f" {ctx.credential_env}", detail=detail)
    if code == PERMISSION:
        return ConfigError(f"TikTok refused this call for {ctx.target} of destination '{name}' ({said}): the token in"
                           f" {ctx.credential_env} lacks permission for the advertiser (Audience Management scope)",
                           detail=detail)
    if code == NOT_FOUND:
        return ConfigError(f"TikTok has no {ctx.target} for destination '{name}' ({said}): check the sync's"
                           " audience_id and the destination's advertiser_id", detail=detail)
    if code == INVALID_PARAMS:
        return PermanentError(f"TikTok refused the whole request for {ctx.target} of destination '{name}' ({said});"
                              " nothing was applied", detail=detail)
    return TransientError(f"TikTok had a problem with {ctx.target} of destination '{name}' ({said}); retrying",
                          detail=detail)
