"""HTTP plumbing shared by the ``requests``-based connectors: session, Retry-After, redaction, unreachable.

Each connector keeps its own ``classify`` (the only reader of its platform's status codes) and its own
messages; what lives here is what they all did the same way, so a fix (a Retry-After form, a pool
setting) lands once:

- ``build_session``: one pooled ``requests.Session`` per connector, no urllib3 retries: retries belong to
  the engine's one retry helper, which honours the platform's wait.
- ``read_body``: the parsed JSON, or the raw text when a proxy or load balancer answered with a page, so
  ``classify`` still sees the status and something to put in the detail.
- ``retry_after``: the ``Retry-After`` header in seconds or as an HTTP date. Connectors add their own
  fallbacks (Braze's ``X-RateLimit-Reset``, Klaviyo's "available in N seconds", Attentive's 1 s).
- ``redact``: hides emails, phone numbers and long hex hashes in text bound for messages and logs. A
  connector whose platform echoes other shapes passes its own pattern.
- ``unreachable``: the ``TransientError`` for a request that never got an answer, never chained to the
  ``requests`` exception (its text can hold the request) and with a redacted detail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from syncer.errors import TransientError

if TYPE_CHECKING:
    import requests

__all__ = ["HASHES_AND_EMAILS", "PII", "build_session", "header", "read_body", "redact", "retry_after", "unreachable"]

PII = re.compile(r"[0-9a-fA-F]{32,}|[^\s@'\"<>,:]+@[^\s@'\"<>,]+|\+?\d[\d\s().-]{6,}\d")
"""Hex hashes of 32+ characters, email addresses, and digit runs that can be phone numbers."""

HASHES_AND_EMAILS = re.compile(r"[0-9a-fA-F]{32,}|[^\s@'\"<>]+@[^\s@'\"<>]+")
"""For platforms whose messages name ids made of digits (ad accounts, customer ids, resource names) that
``PII``'s digit runs would hide; our phones reach those platforms hashed, so hashes and emails suffice."""


def build_session(base: str, *, headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None,
                  pool_maxsize: int | None = None) -> requests.Session:
    """A session for one platform's API at ``base``.

    Args:
        base: the API's base URL; the pool is mounted on it.
        headers: sent with every request (authorization, content type).
        auth: HTTP Basic credentials, when the platform uses them.
        pool_maxsize: connections kept open to ``base``, for connectors that send from several threads;
            None keeps requests' default adapters.
    """
    import requests  # here, so that loading a project (which reads the classify table) stays light
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    if pool_maxsize is not None:
        session.mount(base, HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0))
    if auth is not None:
        session.auth = auth
    session.headers.update(headers or {})
    return session


def read_body(response: requests.Response, *, empty: Any = None, max_text: int | None = None) -> Any:
    """The JSON body; ``empty`` when there is no body (a 204); else the text, cut to ``max_text`` characters."""
    if not response.content:
        return empty
    try:
        return response.json()
    except ValueError:
        return response.text[:max_text]


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` (lowercase), whatever the case the response used; None when absent."""
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}.get(name)


def retry_after(headers: Mapping[str, str] | None, *, http_date: bool = True,
                now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from ``Retry-After``, never negative; None when it is absent or unreadable.

    Args:
        http_date: also read the HTTP-date form (RFC 9110); False reads seconds only.
        now: the wall clock an HTTP date is measured against.
    """
    value = header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        if not http_date:
            return None
    try:
        return max(parsedate_to_datetime(value).timestamp() - now(), 0.0)
    except (TypeError, ValueError):
        return None


def redact(text: str, pattern: re.Pattern[str] = PII) -> str:
    """Replace every match of ``pattern`` (PII by default) in ``text`` with ``<redacted>``."""
    return pattern.sub("<redacted>", text)


def unreachable(platform: str, base: str, exc: BaseException, *, destination: str | None = None,
                redactor: Callable[[str], str] = redact) -> TransientError:
    """The error for a request ``platform`` never answered; raise it ``from None``.

    Example message: "Cannot reach Braze at https://rest.iad-01.braze.com (ConnectionError) for destination
    'braze_main': check that the endpoint is up and reachable".
    """
    where = f" for destination '{destination}'" if destination else ""
    return TransientError(f"Cannot reach {platform} at {base} ({type(exc).__name__}){where}: check that the endpoint"
                          " is up and reachable", detail=redactor(str(exc))[:300])
