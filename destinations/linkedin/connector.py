"""LinkedIn Matched Audiences: keep a user DMP segment's members in sync through the DMP Segment Users API.

API flow (``requests``; members arrive normalised and hashed by ``syncer.identity.rows``)::

    add      POST {base}/rest/dmpSegments/{segment}/users    X-RestLi-Method: BATCH_CREATE
             {"elements": [{"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": <sha256>}]}, ...]}
    remove   same, with "action": "REMOVE"
    check    GET  {base}/rest/adAccounts/{ad_account_id}

- ``base`` is ``https://api.linkedin.com``; ``endpoint`` in the destination file replaces it (the local
  sandbox). The sync's ``audience_id`` is the numeric id of a USER DMP segment of the ad account.
- Every call carries ``Authorization: Bearer <token>``, ``LinkedIn-Version: YYYYMM`` and
  ``X-Restli-Protocol-Version: 2.0.0`` [1][3][4]; the users call adds ``X-RestLi-Method: BATCH_CREATE`` [1][2].
- The answer is HTTP 200 with one entry per element, in order: ``{"elements": [{"status": 201}, ...]}`` [2][5];
  an entry of another status is that element's own failure (its ``error`` object, when present, follows the
  error shape below).
- Errors are ``{"status", "serviceErrorCode", "code", "message"}`` with the HTTP status [6].

Facts and sources (numbers in brackets above and below):

[1] https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users
    (LinkedIn, DMP Segment Users): the users sub-resource of DMP segments, ADD/REMOVE actions; permission
    rw_dmp_segments on an ad account where the member's role is above VIEWER; wait 5 s after creating a
    segment; a 1-minute per-member limit for the users endpoint: 600 requests a minute (500 in the 2023
    views), HTTP 429 when exceeded, in addition to the daily per-app and per-member limits.
[2] https://developers.qodex.ai/linkedin-marketing-solutions-versioned-apis/audiences/use-cases-streaming-users-contact-targeting/7-stream-user-data-add-or-remove-multiple-users
    (LinkedIn's Postman collection, mirrored): the body ``{"elements": [{"action": "ADD", "userIds":
    [{"idType": "SHA256_EMAIL", "idValue": <64 hex>}]}]}``, the four headers, the answer
    ``{"elements": [{"status": 201}, ...]}``.
[3] https://learn.microsoft.com/en-us/linkedin/marketing/versioning (LinkedIn): versioned APIs under
    https://api.linkedin.com/rest/, monthly versions named YYYYMM in the ``LinkedIn-Version`` header, each
    supported for at least a year.
[4] segmentio/action-destinations, ``packages/destination-actions/src/destinations/linkedin-audiences/``
    (``api/index.ts``, ``constants.ts``, ``updateAudience/functions.ts``, ``common-functions.ts``): base
    https://api.linkedin.com/rest, ``X-RestLi-Method: BATCH_CREATE`` on the users call, idTypes SHA256_EMAIL
    (SHA-256 hex of the email) and GOOGLE_AID, optional firstName/lastName/title/company/country, the
    per-element statuses read by position (2xx accepted, anything else that element's failure).
[5] https://raw.githubusercontent.com/api-evangelist/linkedin/refs/heads/main/json-schema/linkedin-marketing-audience-user-id-schema.json
    (third party, from LinkedIn's OpenAPI): ``idType`` one of SHA256_EMAIL, GOOGLE_AID, APPLE_IDFA;
    https://docs.tealium.com/server-side-connectors/linkedin-matched-audiences-connector-setup-guide
    (third party): emails as SHA-256 or SHA-512 hashes; GAID and first+last name also match; a campaign
    needs 300+ matched members. No source names a phone as a user id.
[6] https://learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts/error-handling (LinkedIn): the error
    body ``{"message", "serviceErrorCode", "status"}`` and standard HTTP statuses (401 for a bad or empty token).
[7] https://help.hcl-software.com/unica/Link/en/12.1.7/Link/LinkedIn/data_normalization.html (third party):
    emails hashed SHA-256 by the connector; first and last name up to 35 characters.

Hashing: an email trimmed, lowercased and SHA-256 as lowercase hex (the ``google`` rule set's email, as
[4] and the X/Twitter, TikTok and Google rules do; LinkedIn's own page [1] was not found to spell out the
normalisation: [U], lowercase hex as in [2]).

Not found, chosen conservatively ([U] = unverified):
- The most elements one BATCH_CREATE takes: no LinkedIn page found states it (5,000 is quoted second-hand);
  1,000 (``max_batch``) is the conservative choice, far inside [1]'s 600 requests a minute.
- A throttle's wait: [1] states none; ``RateLimited`` carries ``Retry-After`` when a front end sends it, else
  None (the engine backs off).
- The per-element error shape (an ``error`` object in the entry, as Rest.li batch answers carry) and the codes
  EMPTY_ACCESS_TOKEN (65604), INVALID_ACCESS_TOKEN (65600), VERSION_MISSING (400) and NONEXISTENT_VERSION (426)
  are [U]; only the HTTP status decides, and 426 is read as a ``linkedin_version`` to fix.
- A per-element 4xx is that row refused for good (REJECTED, reason ``linkedin_<code or status>``); a
  per-element 429 or 5xx is RETRYABLE.
- Phones and mobile ids are not sent (see ``ID_TYPES``); ``match_keys`` is email: one member per hashed email.
- Removal: a REMOVE takes out the member its hashed email matched ([1] documents REMOVE, not its matching).

Config example::

    # destinations/linkedin_vip.yml
    type: linkedin_audience
    ad_account_id: "500000001"
    access_token_env: LINKEDIN_ACCESS_TOKEN
    linkedin_version: "202607"                 # optional
    endpoint: http://127.0.0.1:8510/linkedin   # optional: the local sandbox (python -m syncer.sandbox.server)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.http import build_session, read_body, unreachable
from destinations.linkedin.config import CAPABILITIES, ID_TYPES, LinkedInAudienceConfig
from destinations.responses import ErrorContext, PlatformResponse, classify_status, describe
from syncer.environment import resolve_secret
from syncer.errors import ConfigError, SyncError, TransientError

__all__ = ["DEFAULT_BASE", "LinkedInAudienceDestination", "users_body"]

DEFAULT_BASE = "https://api.linkedin.com"
_ACTIONS = {"add": "ADD", "remove": "REMOVE"}


class LinkedInAudienceDestination(Destination):
    """Adds and removes members of LinkedIn user DMP segments (Matched Audiences)."""

    kind = "linkedin_audience"
    capabilities = CAPABILITIES

    def __init__(self, config: LinkedInAudienceConfig, *, name: str | None = None) -> None:
        """Build the HTTP session; reads the token from the environment now.

        Raises:
            ConfigError: the environment variable named in the config is not set.
        """
        self.config = config
        self.name = name or f"linkedin_audience {config.ad_account_id}"
        token = resolve_secret(config.access_token_env, what=f"LinkedIn destination '{self.name}'").get_secret_value()
        self._base = (config.endpoint or DEFAULT_BASE).rstrip("/")
        self._session = build_session(self._base, headers={
            "Authorization": f"Bearer {token}", "LinkedIn-Version": config.linkedin_version,
            "X-Restli-Protocol-Version": "2.0.0", "User-Agent": "activation-syncer"})

    # ----- Destination --------------------------------------------------------------------------
    def check(self) -> None:
        """Verify the token, the version and that the member may use the ad account; ``ConfigError`` if not."""
        self._call("GET", f"/rest/adAccounts/{quote(self.config.ad_account_id, safe='')}")

    def close(self) -> None:
        self._session.close()

    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        sendable = [m for m in members if any(m.identifiers.get(kind) for kind in ID_TYPES)]
        rejected = [RowOutcome(m.member_key, RowStatus.REJECTED, "no_linkedin_identifier")
                    for m in members if m not in sendable]
        if not sendable:
            return BatchResult(op, tuple(rejected), requests=0)
        body = self._call("POST", f"/rest/dmpSegments/{quote(audience.audience_id, safe='')}/users",
                          body=users_body(op, sendable), audience_id=audience.audience_id,
                          headers={"X-RestLi-Method": "BATCH_CREATE"})
        answers = body.get("elements") if isinstance(body, dict) else None
        if not isinstance(answers, list) or len(answers) != len(sendable):
            raise TransientError(f"LinkedIn answered {len(answers) if isinstance(answers, list) else 'no'} entries"
                                 f" for {len(sendable)} elements sent to DMP segment {audience.audience_id} of"
                                 f" destination '{self.name}'; retrying (adds and removes are idempotent)")
        outcomes = [_outcome(m.member_key, answer) for m, answer in zip(sendable, answers)]
        counts = {"rows_sent": len(sendable), "rows_accepted": sum(o.status is RowStatus.SENT for o in outcomes)}
        return BatchResult(op, tuple(outcomes + rejected), requests=1, platform_counts=counts)

    # ----- failures -----------------------------------------------------------------------------
    def error_context(self, audience_id: str | None = None) -> ErrorContext:
        """LinkedIn, the token's variable, and what a call was about: the DMP segment, else the ad account."""
        target = f"DMP segment {audience_id}" if audience_id else f"ad account {self.config.ad_account_id}"
        return ErrorContext("LinkedIn", self.name, self.config.access_token_env, target)

    def classify(self, response: PlatformResponse, *, audience_id: str | None = None) -> SyncError | None:
        """The failure one LinkedIn answer means, or None: the shared status table, with LinkedIn's ``code`` in
        the message, and 426 (a version LinkedIn no longer serves) as a ``linkedin_version`` to fix."""
        ctx = self.error_context(audience_id)
        body = response.body
        code = None
        if isinstance(body, dict):
            code = body.get("code") or (str(body["serviceErrorCode"]) if "serviceErrorCode" in body else None)
        if response.status == 426:
            return ConfigError(f"LinkedIn does not serve version {self.config.linkedin_version} any more (HTTP 426"
                               f"{', ' + str(code) if code else ''}): set linkedin_version of destination"
                               f" '{self.name}' to a current YYYYMM", detail=describe(response, code))
        return classify_status(response, ctx, code=str(code) if code else None)

    # ----- HTTP ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None, audience_id: str | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        try:
            answer = self._session.request(method, self._base + path, json=body, headers=headers,
                                           timeout=self.config.request_timeout_s)
        except requests.RequestException as exc:
            raise unreachable("LinkedIn", self._base, exc, destination=self.name) from None
        response = PlatformResponse(answer.status_code, read_body(answer, max_text=1000), answer.headers)
        failure = self.classify(response, audience_id=audience_id)
        if failure is not None:
            raise failure
        return response.body


def users_body(op: Op, members: Sequence[Member]) -> dict[str, Any]:
    """The BATCH_CREATE body for ``members`` (each holding a hashed email): one element per member, in order."""
    action = _ACTIONS[op]
    return {"elements": [{"action": action, "userIds": [{"idType": id_type, "idValue": m.identifiers[kind]}
                                                        for kind, id_type in ID_TYPES.items() if m.identifiers.get(kind)]}
                         for m in members]}


def _outcome(member_key: str, answer: Any) -> RowOutcome:
    status = answer.get("status") if isinstance(answer, dict) else None
    if type(status) is not int:
        return RowOutcome(member_key, RowStatus.RETRYABLE, "linkedin_unreadable_answer")
    if 200 <= status < 300:
        return RowOutcome(member_key, RowStatus.SENT)
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else None
    reason = f"linkedin_{(code or str(status)).lower()}"
    retryable = status == 429 or status >= 500
    return RowOutcome(member_key, RowStatus.RETRYABLE if retryable else RowStatus.REJECTED, reason)
