"""Klaviyo's error answers: its own failure classes and how its JSON:API error envelope is read.

Klaviyo answers errors as ``{"errors": [{id, status, code, title, detail, source: {pointer}, ...}]}``.
``KlaviyoListDestination.classify`` decides what an answer means; these helpers only read it: the
items, the wait a 429 states, and a redacted detail for logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from destinations.http import redact, retry_after
from syncer.errors import PermanentError, TransientError

__all__ = ["ImportJobLost", "RowErrors", "error_detail", "error_items", "redact_pii", "stated_wait"]

_WAIT_HINT = re.compile(r"available in (\d+(?:\.\d+)?) second")
# Narrower than the shared default: emails and E.164 phones only, so dates and ids in Klaviyo's error
# details stay readable.
_PII = re.compile(r"[^\s@'\"<>:,]+@[^\s@'\"<>,]+|\+\d{7,15}")


class RowErrors(PermanentError):
    """Klaviyo refused the whole call because of some of its rows; ``rows`` maps an index to a reason."""

    def __init__(self, message: str, *, rows: Mapping[int, str], detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.rows = dict(rows)


class ImportJobLost(TransientError):
    """The import job is gone (expired or cancelled); the retry starts a new one."""


def error_items(body: Any) -> list[dict[str, Any]]:
    """The items of the error envelope; none when the body is not one."""
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def stated_wait(headers: Mapping[str, str] | None, errors: Sequence[Mapping[str, Any]]) -> float | None:
    """``Retry-After``, else the wait Klaviyo writes in a 429's detail ("available in 12 seconds")."""
    wait = retry_after(headers)
    if wait is not None:
        return wait
    hint = _WAIT_HINT.search(str(errors[0].get("detail") or "")) if errors else None
    return float(hint.group(1)) if hint else None


def error_detail(status: int, body: Any, errors: Sequence[Mapping[str, Any]]) -> str:
    """Klaviyo's words for logs: each error's code and redacted detail, else the start of the body."""
    said = "; ".join(f"{e.get('code')}: {redact_pii(str(e.get('detail')))[:200]}" for e in errors[:5])
    return f"HTTP {status}; " + (said or f"body: {redact_pii(str(body))[:300]}")


def redact_pii(text: str) -> str:
    """Hide email addresses and phone numbers in text bound for logs."""
    return redact(text, _PII)
