"""Failure classes shared by the engine and every connector.

Every failure answers two questions: what to do, and whose fault it is.

    SyncError
    ├── ConfigError        operator must fix (bad token, missing audience); stop this sync
    ├── PermanentError     the platform refused the whole batch; stop, leave the ledger untouched
    │   └── BatchTooLargeError  more members than the platform takes in one call; nothing sent
    └── TransientError     retry after ``retry_after`` seconds (or with backoff)
        └── RateLimited    the platform throttled us; wait what it asked for

Row-level rejects are never exceptions: they are ``RowOutcome(REJECTED)`` in a ``BatchResult``.
Project-file problems are ``InvalidProjectError`` (defined in ``syncer.project.project``), raised before any
work starts.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every failure the engine knows how to handle.

    ``message`` is for the operator (what happened, what to do); ``detail`` carries the platform's own
    words for logs. Neither may contain PII or secrets.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ConfigError(SyncError):
    """Operator must fix something (credentials, permissions, audience id); do not retry."""


class PermanentError(SyncError):
    """The platform refused the whole batch for good; stop this sync and keep the ledger as it is."""


class BatchTooLargeError(PermanentError):
    """A caller gave a connector more members than the platform takes in one call; nothing was sent.
    The engine splits batches by ``capabilities.max_batch``, so this is a bug in the caller."""


class TransientError(SyncError):
    """Temporary failure; retry the same batch after ``retry_after`` seconds (None: use backoff)."""

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The platform throttled us; wait at least ``retry_after`` seconds before the next call."""


class GateHeld(SyncError):
    """A safety gate held the sync; nothing was sent. Approve the run to let it through."""
