"""What both Customer Match transports share: member groups, the send result, the transport interface, the
job book's step names, redaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from destinations import http
from destinations.base import AudienceRef, JobBook, Member, Op, RowOutcome
from destinations.responses import ErrorContext, PlatformResponse
from syncer.errors import SyncError

CONSENT_KEY = "_consent"
"""Member.identifiers key carrying the ads consent marker: "granted", "unknown" (the default) or "denied"."""

Consent = Literal["granted", "unknown"]
ADDRESS_KINDS = ("first_name", "last_name", "country", "postal_code")
FINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "PARTIAL_SUCCESS", "NOT_FOUND"})
"""Job statuses after which polling a job again changes nothing."""


@dataclass(frozen=True)
class Group:
    """Members sent together: one Ads API job, or one Data Manager request per data type."""

    consent: Consent | None  # None for removes: Google needs no consent to forget someone
    members: tuple[Member, ...]


@dataclass
class Sent:
    """What a transport did with the groups of one ``add`` or ``remove``; filled as it goes, so the jobs it
    started are known even when a later group fails."""

    outcomes: list[RowOutcome] = field(default_factory=list)
    requests: int = 0
    jobs: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


class Transport(Protocol):
    """One wire protocol behind ``GoogleCustomerMatchDestination``; it reads its own answers (``classify``).

    A transport that reads a user list's size also defines ``audience_counts(audience) -> dict[str, int]``
    (``ads_api`` and ``data_manager`` do); the connector offers ``HasPlatformCounts`` only then."""

    identifiers: frozenset[str]

    def sendable(self, member: Member) -> bool: ...

    def send(self, op: Op, audience: AudienceRef, groups: Sequence[Group], sent: Sent, book: JobBook | None) -> None:
        """Send the groups, filling ``sent``; with a ``book``, resume the steps it holds and record each new stage."""

    def poll(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]: ...

    def check(self, audience: AudienceRef | None) -> None: ...

    def classify(self, response: PlatformResponse) -> SyncError | None: ...

    def error_context(self) -> ErrorContext: ...

    def close(self) -> None: ...


def step_key(where: str, op: Op, group: str, members: Sequence[Member]) -> str:
    """The job book's name of one step: a digest of where it goes, what it does and exactly what it sends (member
    keys and their identifiers, in any order), so the retry of a batch finds its steps and nothing else does."""
    digest = hashlib.sha256(json.dumps([where, op, group]).encode())
    for key, identifiers in sorted((m.member_key, sorted(m.identifiers.items())) for m in members):
        digest.update(json.dumps([key, identifiers]).encode())
    return digest.hexdigest()


def has_address(identifiers: Mapping[str, str]) -> bool:
    """Google matches an address only with first name, last name, country and postal code together."""
    return all(identifiers.get(kind) for kind in ADDRESS_KINDS)


def chunks(items: Sequence[Member], size: int) -> Iterator[Sequence[Member]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def digits(customer_id: str | None) -> str | None:
    return customer_id.replace("-", "") if customer_id else None


def redact(text: str) -> str:
    """Hide hashes and email addresses in text bound for logs or messages (not digit runs: Google's
    messages name customer ids and resource names)."""
    return http.redact(text, http.HASHES_AND_EMAILS)
