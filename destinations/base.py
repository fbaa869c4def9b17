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
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal, Protocol, final, runtime_checkable

from destinations.responses import ErrorContext, PlatformResponse, classify_status
from syncer.errors import BatchTooLargeError, PermanentError, SyncError

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
    traits: Mapping[str, object] = field(default_factory=dict)
    """Profile properties to set with the membership (``SyncConfig.traits``), platform property name ->
    JSON value; a ``None`` value means "clear it" (only with ``null_traits: clear``: by default a NULL in
    the warehouse is left out). Only ``add`` reads them; empty for destinations without ``traits``."""

    @classmethod
    def from_row(cls, member_key: str, identifiers: Mapping[str, str]) -> "Member":
        """A member from a plan or ledger row, whose identifiers carry the traits as JSON under ``TRAITS_KEY``."""
        text = identifiers.get(TRAITS_KEY)
        if text is None:
            return cls(member_key, identifiers)
        rest = {k: v for k, v in identifiers.items() if k != TRAITS_KEY}
        return cls(member_key, rest, json.loads(text))


TRAITS_KEY = "_traits"
"""The key under which a plan row's identifiers carry its traits, as a JSON object's text (it rides with
the identifiers through the plan, the ledger and the fingerprint; ``Member.from_row`` takes it out)."""


@dataclass(frozen=True)
class AudienceRef:
    sync: str
    audience_id: str


@dataclass(frozen=True)
class Capabilities:
    """What a destination accepts, declared as data."""

    platform: str
    """Identity rule set to normalise and hash with (``syncer.identity.platform_rules.PLATFORM_RULES``)."""
    identifiers: frozenset[str]
    """The identifier kinds it takes; ``validate`` refuses a sync asking for another."""
    max_batch: int
    """Most members in one ``add`` or ``remove``; the engine splits batches by it, the base refuses more."""
    can_remove: bool = True
    """False for platforms that hold no membership (a text): leaving a segment only clears the ledger."""
    channel: str = "ads"
    """Consent channel a sync checks by default: ads, email or sms."""
    consent_marker: bool = False
    """The connector reads the member's consent for ``channel``: the engine adds ``_consent`` ("granted" or
    "unknown") to ``Member.identifiers``, and a change of consent re-sends the member."""
    at_most_once: bool = False
    """Sends are not idempotent (an SMS): the engine claims each row in the ledger just before sending it
    alone and settles the claim after (``syncer.delivery.at_most_once``); a send left in doubt by a crash or
    timeout is looked up in the platform's message log where it has one, and never sent twice."""
    match_keys: frozenset[str] = frozenset({"email", "phone", "madid", "external_id"})
    """Identifier kinds the platform recognises a person by. Two members sharing a value of one are one
    person there (Meta and Google remove every person any identifier of a row matches; Klaviyo keeps one
    profile per email, phone and external id), so the planner never removes a member linked this way to a
    member who stays (``syncer.planning.shared``)."""
    traits: bool = False
    """It can set profile properties with the membership (``Member.traits``): a sync may map segment columns
    to them (``traits`` in the sync file); ``validate`` refuses them on any other destination."""


@runtime_checkable
class HasPlatformCounts(Protocol):
    """A destination that can report audience size or match figures after a sync."""

    def audience_counts(self, audience: AudienceRef) -> Mapping[str, int]: ...


class IdCache(Protocol):
    """Where a connector keeps the platform's own ids for our members (in the ledger)."""

    def get_many(self, member_keys: Sequence[str]) -> Mapping[str, str]: ...

    def put_many(self, ids: Mapping[str, str]) -> None: ...


class JobBook(Protocol):
    """Where a connector records how far each platform job it builds in several calls got (in the ledger), so
    a retried or resumed batch goes on from the recorded stage instead of starting the job again.

    A step is named by the connector (a digest of what it sends: op, group, member keys and identifiers).
    ``get`` answers only while no batch of ``sync`` has been committed since the step began: after a commit
    the same step is a new send (a re-add after a remove, a full resync), never a retry. ``put`` is durable
    when it returns, so a connector records a stage before the call whose outcome it cannot read back."""

    def get(self, sync: str, step: str) -> Mapping[str, object] | None:
        """``{"job", "stage", "detail"}`` of a step to resume, else None."""

    def put(self, sync: str, step: str, *, job: str | None, stage: str, detail: Mapping[str, object]) -> None: ...

    def drop(self, sync: str, step: str) -> None: ...


class Destination(abc.ABC):
    """The base every connector extends; it owns the contract, the connector fills ``_send``.

    ``add`` and ``remove`` are final: an empty batch returns at once with no request; a batch over
    ``capabilities.max_batch`` is refused (``BatchTooLargeError``, nothing sent); the result is checked
    to hold exactly one outcome per member (a connector that loses or invents a row is a bug, raised as
    ``PermanentError`` so the ledger stays as it was) and is returned in the members' order.

    Optional abilities are the small Protocols below (``CreatesAudiences``, ``ReplacesAudiences``,
    ``RunsJobs``, ``HasPlatformCounts``), checked with ``isinstance``.
    """

    kind: ClassVar[str]
    capabilities: Capabilities
    """What it accepts: the class's, or an instance's own when it depends on the config."""
    name: str = ""
    """The destination's file stem, for messages; ``build_destination`` sets it."""
    id_cache: IdCache | None = None
    """Set by the engine before the first call; connectors that need platform ids use it."""
    job_book: JobBook | None = None
    """Set by the engine before the first call; connectors that build a platform job in several calls
    record each stage there, so a retry resumes instead of starting again (Google Customer Match)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Verify credentials and reachability with one cheap read; raise ``ConfigError`` with what to fix."""

    @final
    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Put ``members`` in the audience; one outcome per member."""
        return self._guarded("add", audience, members)

    @final
    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Take ``members`` out of the audience (membership only: never consent); one outcome per member."""
        return self._guarded("remove", audience, members)

    @abc.abstractmethod
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Send one batch: never empty, never over ``max_batch``. Return one outcome per member; raise a
        ``SyncError`` only when the whole call failed (through ``classify``)."""

    def classify(self, response: PlatformResponse) -> SyncError | None:
        """The failure one platform answer means, or None when it was accepted: the only place that reads
        the platform's status codes. The default is the shared table (``classify_status``); a connector
        overrides it where its platform differs, and falls back to the table for the rest."""
        return classify_status(response, self.error_context())

    def error_context(self) -> ErrorContext:
        """What the shared table needs to tell the operator what to fix; connectors name their platform,
        credential variable and target."""
        return ErrorContext(platform=self.kind, destination=self.name or self.kind)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release HTTP sessions; the default holds none."""

    @final
    def _guarded(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if not members:
            return BatchResult(op, (), requests=0)
        limit = self.capabilities.max_batch
        if len(members) > limit:
            raise BatchTooLargeError(f"destination '{self.name or self.kind}' was given {len(members)} members in one"
                                     f" {op} batch; {self.kind} takes at most {limit} (the caller must split batches)")
        return _in_member_order(self, op, members, self._send(op, audience, members))


def _in_member_order(destination: Destination, op: Op, members: Sequence[Member], result: BatchResult) -> BatchResult:
    by_key = {outcome.member_key: outcome for outcome in result.outcomes}
    keys = [member.member_key for member in members]
    if len(result.outcomes) != len(members) or set(by_key) != set(keys):
        missing, extra = set(keys) - set(by_key), set(by_key) - set(keys)
        raise PermanentError(
            f"destination '{destination.name or destination.kind}' returned {len(result.outcomes)} outcomes for"
            f" {len(members)} members ({len(missing)} missing, {len(extra)} unknown): a connector bug; the ledger"
            " is left as it was", detail=f"op={op}")
    if [o.member_key for o in result.outcomes] == keys:
        return result
    return dataclasses.replace(result, outcomes=tuple(by_key[key] for key in keys))


@runtime_checkable
class CreatesAudiences(Protocol):
    """A destination that can create an audience (a sync with ``create_audience``)."""

    def create_audience(self, name: str, description: str = "") -> str:
        """Create it and return its platform id."""


@runtime_checkable
class ReplacesAudiences(Protocol):
    """A destination with a full replace (``syncer replace``): members we never sent are dropped too."""

    def replace(self, audience: AudienceRef, members: Iterable[Member]) -> BatchResult: ...


@runtime_checkable
class RunsJobs(Protocol):
    """A destination whose uploads finish later as platform jobs, polled until final (Google)."""

    jobs: list[str]
    """Jobs started by this instance, in order (the engine records the new ones after each sync)."""
    final_statuses: frozenset[str]

    def poll_jobs(self, names: Sequence[str] | None = None) -> Mapping[str, Mapping[str, str | None]]: ...


@runtime_checkable
class ListsMembers(Protocol):
    """A destination whose API lists an audience's members (``syncer reconcile`` reads them back)."""

    def list_members(self, audience: AudienceRef) -> Iterator[ListedMember]:
        """Every member the platform holds in ``audience``, in any order, page by page."""


@dataclass(frozen=True)
class ListedMember:
    """One member as the platform lists it: its identifiers in the format we send them (so they compare
    with the ledger's), and the platform's own id where it has one."""

    identifiers: Mapping[str, str]
    platform_id: str | None = None


def all_sent(op: Op, members: Sequence[Member], *, requests: int = 1, counts: Mapping[str, int] | None = None) -> BatchResult:
    """A result where every member was accepted."""
    return BatchResult(
        op=op,
        outcomes=tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members),
        requests=requests,
        platform_counts=dict(counts or {}),
    )
