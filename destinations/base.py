"""The connector interface every destination implements.

Contract:

- ``add`` and ``remove`` take members whose identifiers are already normalised and hashed for the
  platform (``syncer.identity.rows``), and return a ``BatchResult`` holding exactly one ``RowOutcome`` per
  member, keyed by ``member_key`` (never by position).
- An empty sequence makes no network call.
- A row the platform refuses for good is ``RowOutcome(REJECTED, reason)``; it never raises.
- A failure of the whole call raises one of ``syncer.errors``: ``TransientError``/``RateLimited``
  (the engine retries after ``retry_after``), ``PermanentError`` or ``ConfigError`` (the sync stops).
- A connector never sends more than ``capabilities.max_batch`` members in one call and never mixes
  adds and removes in one request or job.
- Connectors are stateless between calls apart from HTTP sessions; the engine owns the ledger.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal, Protocol, runtime_checkable

Op = Literal["add", "remove"]


class RowStatus(StrEnum):
    SENT = "sent"  # the platform accepted it
    REJECTED = "rejected"  # permanent for this row (bad phone); never retried as is
    RETRYABLE = "retryable"  # transient; retried on the next attempt or run


@dataclass(frozen=True)
class RowOutcome:
    member_key: str
    status: RowStatus
    reason: str | None = None


@dataclass(frozen=True)
class BatchResult:
    op: Op
    outcomes: tuple[RowOutcome, ...]
    requests: int = 1
    platform_counts: Mapping[str, int] = field(default_factory=dict)
    """What the platform reported for the call (Meta: num_received, num_invalid_entries)."""


@dataclass(frozen=True)
class Member:
    """One member as a destination sees it: our key plus identifiers ready to send.

    ``identifiers`` maps an identifier kind (``syncer.identity.rows.IDENTIFIER_KINDS``) to the value in the
    platform's format (hashed where the platform asks for hashes).
    """

    member_key: str
    identifiers: Mapping[str, str]


@dataclass(frozen=True)
class AudienceRef:
    sync: str
    audience_id: str


@dataclass(frozen=True)
class Capabilities:
    """What a destination accepts, declared as data."""

    platform: str
    """Identity rule set to normalise and hash with (``syncer.identity.rows.PLATFORM_RULES``)."""
    identifiers: frozenset[str]
    max_batch: int
    can_remove: bool = True
    separate_add_remove: bool = True
    requests_per_second: float | None = None
    channel: str = "ads"
    """Consent channel a sync checks by default: ads, email or sms."""
    consent_marker: bool = False
    """The connector reads the member's consent for ``channel``: the engine adds ``_consent`` ("granted" or
    "unknown") to ``Member.identifiers``, and a change of consent re-sends the member."""
    at_most_once: bool = False
    """Sends are not idempotent (an SMS): the engine records each row before sending and never resends
    a row whose send may have happened (a crash or timeout mid-call leaves it recorded as sent)."""


@runtime_checkable
class HasPlatformCounts(Protocol):
    """A destination that can report audience size or match figures after a sync."""

    def audience_counts(self, audience: AudienceRef) -> Mapping[str, int]: ...


class IdCache(Protocol):
    """Where a connector keeps the platform's own ids for our members (in the ledger)."""

    def get_many(self, member_keys: Sequence[str]) -> Mapping[str, str]: ...

    def put_many(self, ids: Mapping[str, str]) -> None: ...


class Destination(abc.ABC):
    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    id_cache: IdCache | None = None
    """Set by the engine before the first call; connectors that need platform ids use it."""

    @abc.abstractmethod
    def check(self) -> None:
        """Verify credentials and reachability; raise ``ConfigError`` with what to fix."""

    @abc.abstractmethod
    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult: ...

    @abc.abstractmethod
    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release HTTP sessions; the default holds none."""


def all_sent(op: Op, members: Sequence[Member], *, requests: int = 1, counts: Mapping[str, int] | None = None) -> BatchResult:
    """A result where every member was accepted."""
    return BatchResult(
        op=op,
        outcomes=tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members),
        requests=requests,
        platform_counts=dict(counts or {}),
    )
