"""One shape for a platform's answer, and the shared table of what its status means.

Every connector's ``classify(response) -> SyncError | None`` reads a ``PlatformResponse`` and falls back
to ``classify_status`` for whatever its platform does not answer its own way (Meta throttles with HTTP
400 and a code; Mailchimp and Braze put errors inside HTTP 200 bodies: those connectors decide first).

The shared table (what to do, whose fault):

    2xx              accepted                          None
    429              the platform throttled us         RateLimited(retry_after from Retry-After, else None: back off)
    401              bad or expired credentials        ConfigError naming the variable to fix
    403              credentials lack a permission     ConfigError naming the variable to fix
    404              the audience or account is gone   ConfigError naming the audience
    408, 5xx         the platform had a problem        TransientError (retried)
    other 4xx        the whole request was refused     PermanentError (nothing applied; stop)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from destinations.http import redact, retry_after
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError

__all__ = ["ErrorContext", "PlatformResponse", "classify_status", "describe"]


@dataclass(frozen=True)
class PlatformResponse:
    """One answer of a platform: HTTP status (or the HTTP equivalent of an SDK's error), parsed body, headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorContext:
    """What a message needs to tell the operator what to fix."""

    platform: str
    """The platform's name as people say it ("Iterable")."""
    destination: str
    """The destination file's stem."""
    credential_env: str | None = None
    """The environment variable holding the credential, named when it is refused."""
    target: str = "the audience"
    """What the call was about ("list 1001"), named when it is missing."""


def describe(response: PlatformResponse, code: str | None = None) -> str:
    """The platform's own words for logs (``SyncError.detail``): status, code, a redacted start of the body."""
    return f"HTTP {response.status}; code {code or '-'}; body: {redact(str(response.body))[:300]}"


def classify_status(response: PlatformResponse, ctx: ErrorContext, *, code: str | None = None) -> SyncError | None:
    """The shared table above; ``code`` is the platform's error code, shown in messages and detail."""
    status, name = response.status, ctx.destination
    if 200 <= status < 300:
        return None
    detail = describe(response, code)
    said = f"HTTP {status}{', ' + code if code else ''}"
    if status == 429:
        wait = retry_after(response.headers)
        when = f"retry in {wait:.0f} s" if wait is not None else "backing off"
        return RateLimited(f"{ctx.platform} rate-limited destination '{name}' ({said}); {when}", retry_after=wait, detail=detail)
    if status in (401, 403):
        what = "refused the credentials" if status == 401 else "refused this call: the credentials lack a permission"
        fix = f"check the key in {ctx.credential_env}" if ctx.credential_env else "check the destination's credentials"
        return ConfigError(f"{ctx.platform} {what} of destination '{name}' ({said}): {fix}", detail=detail)
    if status == 404:
        return ConfigError(f"{ctx.platform} has no {ctx.target} for destination '{name}' ({said}): check the sync's"
                           " audience_id and the destination's endpoint", detail=detail)
    if status == 408 or status >= 500:
        return TransientError(f"{ctx.platform} had a problem with {ctx.target} of destination '{name}' ({said}); retrying",
                              detail=detail)
    return PermanentError(f"{ctx.platform} refused the whole request for {ctx.target} of destination '{name}' ({said});"
                          " nothing was applied", detail=detail)
