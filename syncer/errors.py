"""Failure classes shared by the engine and every connector: one tree, each class saying what to do and whose fault.

    SyncError                      unclassified: stop this sync and report it (a bug until classified)
    ├── ConfigError                operator must fix (bad token, missing audience); stop this sync
    ├── PermanentError             the platform refused the whole batch; stop, leave the ledger untouched
    │   └── BatchTooLargeError     more members than the platform takes in one call; nothing sent (our bug)
    ├── TransientError             retry after ``retry_after`` seconds (or with backoff)
    │   └── RateLimited            the platform throttled us; wait what it asked for
    ├── GateHeld                   a safety gate held the sync; nothing sent until an operator approves
    ├── StalePlanError             the ledger or config changed since the plan; plan again
    └── StateFileError             a file we keep (ledger, snapshot, plan) cannot be read or written; fix it

=====================  ==========  =============================================================
class                  fault       what to do
=====================  ==========  =============================================================
SyncError              caller      unclassified failure: stop this sync, report it, fix the code
ConfigError            operator    fix credentials, permissions or the audience id; do not retry
PermanentError         platform    stop this sync; the ledger keeps only what was acknowledged
BatchTooLargeError     caller      split batches by ``capabilities.max_batch``; nothing was sent
TransientError         transient   retry the same batch after ``retry_after`` (None: backoff)
RateLimited            transient   wait at least ``retry_after`` seconds, then retry
GateHeld               operator    check the plan; approve the run if the change is expected
StalePlanError         operator    run ``syncer plan`` again, then apply the new plan
StateFileError         operator    free disk space, fix permissions, or plan again: the message names the file
=====================  ==========  =============================================================

``fault`` is a class attribute, shown by ``syncer history --detail`` and in Dagster metadata:
``operator`` (a person must change config or approve), ``platform`` (the platform refused),
``transient`` (try again later) or ``caller`` (our code broke the contract: a bug to fix).
A connector's own subclass (Klaviyo's ``RowErrors``) inherits the fault of the class it extends.

Every error keeps two texts (as Airbyte's ``message`` and ``internal_message``): ``message`` for the
operator, ``detail`` with the platform's own words (status, error code, trace id, the start of the
body) for logs and the ledger. Neither may hold PII or secrets; ``syncer.ledger.redaction`` scrubs
``detail`` again before it is logged, stored or shown.

Row-level rejects are never exceptions: they are ``RowOutcome(REJECTED)`` in a ``BatchResult``.
Project-file problems are ``InvalidProjectError`` (a ``ConfigError`` defined in ``syncer.project.project``),
raised before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

__all__ = [
    "BatchTooLargeError",
    "ConfigError",
    "Fault",
    "GateHeld",
    "PermanentError",
    "RateLimited",
    "StalePlanError",
    "StateFileError",
    "SyncError",
    "TransientError",
]

Fault = Literal["operator", "platform", "transient", "caller"]


class SyncError(Exception):
    """Unclassified failure: stop this sync and report it; raising the bare class is a bug until classified.

    ``message`` is for the operator (what happened, what to do); ``detail`` carries the platform's own
    words for logs and the ledger. Neither may contain PII or secrets.
    """

    fault: ClassVar[Fault] = "caller"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ConfigError(SyncError):
    """Operator must fix something (credentials, permissions, audience id); do not retry."""

    fault: ClassVar[Fault] = "operator"


class PermanentError(SyncError):
    """The platform refused the whole batch for good; stop this sync and keep the ledger as it is."""

    fault: ClassVar[Fault] = "platform"


class BatchTooLargeError(PermanentError):
    """More members than the platform takes in one call, nothing sent: fix the caller, which must split by ``max_batch``."""

    fault: ClassVar[Fault] = "caller"


class TransientError(SyncError):
    """Temporary failure; retry the same batch after ``retry_after`` seconds (None: use backoff)."""

    fault: ClassVar[Fault] = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The platform throttled us; wait at least ``retry_after`` seconds before the next call."""


class GateHeld(SyncError):
    """A safety gate held the sync; nothing was sent. Approve the run to let it through."""

    fault: ClassVar[Fault] = "operator"


class StalePlanError(SyncError):
    """The ledger or the config changed since the plan was made; plan again."""

    fault: ClassVar[Fault] = "operator"


class StateFileError(SyncError):
    """A file the syncer keeps (the ledger, a snapshot, a saved plan) cannot be read or written: fix what the
    message names (permissions, disk space, a damaged file), then run again.

    ``path`` is the file or folder at fault. The message says what to do; ``detail`` keeps the system's words.
    """

    fault: ClassVar[Fault] = "operator"

    def __init__(self, message: str, *, path: str | Path, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.path = Path(path)


def first_line(exc: BaseException) -> str:
    """The database's (or library's) own words, first line, without SQLAlchemy's statement echo and background
    link, and with any password in a URL masked: fit for a one-line message or a log line."""
    inner = getattr(exc, "orig", None) or exc
    text = str(getattr(inner, "message", None) or inner).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(inner).__name__)
    return re.sub(r"://([^:/@\s]+):[^@/\s]+@", r"://\1:***@", first)[:300]
