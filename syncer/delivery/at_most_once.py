"""Texts that must never go out twice: claim each one just before its API call, settle it right after.

``syncer.delivery.apply`` hands each add batch of an ``at_most_once`` destination (an SMS) to
``apply_at_most_once``, which walks it one member at a time:

1. **claim** the member's text in the ledger (``syncer.ledger.claims``): a conditional insert, so of two
   processes applying overlapping plans only one owns it; the other skips the member;
2. **send** it with ``Destination.add`` of that one member (retried per the policy: the connector raises only
   when nothing went out);
3. **settle**: sent, the member is committed as held, then the claim is marked ``sent`` with the platform's
   message id; certainly not sent (a raise, a refusal, quiet hours), the claim is released; maybe sent
   (``delivery_unknown``: a timeout), the claim is ``unknown`` and the member is not held.

A crash therefore leaves at most the one text in flight in doubt: its claim stays ``claimed`` by a process
that no longer runs. The next run that plans the member (it is not held, so it is an add again) finds that
claim, or an ``unknown`` one, and looks it up in the platform's own message log (``ReadsMessageLog``): found,
the member is held and nobody is texted; not found, the text is sent then, under the same claim.

What a claim found in the ledger means, for the process that lost the insert:

=================  =====================  ===========================================================
claim              member held            meaning
=================  =====================  ===========================================================
sent               yes                    texted for this entry: skip
sent               no                     texted for an earlier entry (the member left since): take it
not_sent           either                 released: take it
claimed / unknown  yes                    texted, the sender stopped before settling: settle it sent
claimed            no, holder running     in flight in another process: skip
claimed / unknown  no, holder gone        in doubt: take it over and ask the message log
=================  =====================  ===========================================================

A holder is "running" when its process still exists on this machine (host, pid namespace, pid and start
time in ``claimed_by``); a claim taken on another machine is presumed abandoned after
``FOREIGN_CLAIM_S``. Every take-over is a compare-and-set, so of several processes judging one claim only
one acts on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from destinations.base import AudienceRef, BatchResult, Destination, Member, RowStatus
from syncer.errors import RateLimited, SyncError, TransientError
from syncer.ledger.claims import CLAIMED, NOT_SENT, SENT, UNKNOWN, MessageClaim
from syncer.ledger.processes import process_alive, this_process
from syncer.ledger.store import HeldRow, Ledger
from syncer.planning.plan import PlannedRow, SyncPlan

__all__ = ["FOREIGN_CLAIM_S", "ReadsMessageLog", "apply_at_most_once", "process_token"]

FOREIGN_CLAIM_S = 3600.0
"""A claim taken on another machine counts as abandoned after this long: longer than any send with its
retries (attempts x (request timeout + the longest wait a run blocks for))."""
ELSEWHERE = "claimed_by_another_run"  # the deferred reason of members another process owns


@runtime_checkable
class ReadsMessageLog(Protocol):
    """An at-most-once destination whose platform lists what it sent (Twilio's message log)."""

    last_message_ids: Mapping[str, str]
    """The platform's id of each text the last ``add`` sent, by member key."""

    def find_sent(self, audience: AudienceRef, member: Member, since: float) -> str | None:
        """The id of a text of ``audience`` to ``member`` made at or after ``since`` (epoch seconds), or None
        when the log shows none; raises ``TransientError`` while the log cannot tell yet."""


class _Figures(Protocol):
    """The figures of ``syncer.delivery.apply.ApplyReport`` this module adds to."""

    added: int
    rejected: int
    deferred: int
    requests: int
    reasons: dict[str, int]
    deferred_reasons: dict[str, int]
    platform_counts: dict[str, int]


Send = Callable[[Sequence[Member]], tuple[BatchResult, int]]


def apply_at_most_once(plan: SyncPlan, destination: Destination, ledger: Ledger, sync_run_id: int, audience: AudienceRef,
                       batch: Sequence[PlannedRow], report: _Figures, *, send: Send) -> None:
    """Text each member of ``batch`` at most once (see the module docstring); ``send`` sends members with the
    run's retry policy and returns (result, attempts).

    Raises what ``send`` raised when nothing of the batch went out (the caller defers the batch), and a
    ``ConfigError`` or ``PermanentError`` whenever it comes; a ``TransientError`` after a text went out leaves
    the rest of the batch RETRYABLE instead, since raising would defer rows already texted."""
    texts = _Texts(plan, destination, ledger, sync_run_id, audience, report, send)
    texts.settle_held()
    for position, row in enumerate(batch):
        try:
            texts.one(row)
        except TransientError as exc:
            if not texts.went_out:
                raise
            texts.halted = _halt_reason(exc)
            texts.failed.append((row.member_key, "retryable", texts.halted))
        except SyncError:
            if texts.went_out:
                texts.commit_failures()
            raise
        if texts.halted:
            texts.failed += [(r.member_key, "retryable", texts.halted) for r in batch[position + 1:]]
            break
    texts.commit_failures()


class _Texts:
    """One batch's walk: the context every step needs, and what it leaves for one commit at the end."""

    def __init__(self, plan: SyncPlan, destination: Destination, ledger: Ledger, sync_run_id: int,
                 audience: AudienceRef, report: _Figures, send: Send) -> None:
        self.plan, self.destination, self.ledger, self.sync_run_id = plan, destination, ledger, sync_run_id
        self.audience, self.report, self.send = audience, report, send
        self.me = f"{process_token()}/{sync_run_id}"
        self.failed: list[tuple[str, str, str]] = []  # (member_key, status, reason): one commit at the end
        self.refused: list[tuple[str, str, str]] = []  # (member_key, raw_fp, reason)
        self.went_out = False  # a text of this batch went out, or may have
        self.elsewhere = 0  # members another process owns: counted with the failures, at the end
        self.halted: str | None = None  # why the rest of the batch waits for the next run

    def one(self, row: PlannedRow) -> None:
        """Claim, send and settle one member's text, or skip it."""
        answer = self.ledger.claim_message(self.plan.sync, row.member_key, raw_fp=row.raw_fp, identifiers=row.identifiers,
                                           claimed_by=self.me)
        if answer.won:
            self._send(row, answer.claim)
            return
        claim, now = answer.claim, time.time()
        if claim.state in (CLAIMED, UNKNOWN) and answer.held:
            self._settle_texted(claim, now)
            self._elsewhere()
        elif (claim.state == SENT and answer.held) or (claim.state == CLAIMED and _running(claim, now)):
            self._elsewhere()
        elif claim.state in (SENT, NOT_SENT):
            taken = self.ledger.take_claim(claim, claimed_by=self.me, raw_fp=row.raw_fp, identifiers=row.identifiers,
                                           keep_since=False)
            if taken is None:
                self._elsewhere()
            else:
                self._send(row, taken)
        else:  # in doubt: the log, searched for the text as it was sent, decides
            taken = self.ledger.take_claim(claim, claimed_by=self.me, raw_fp=claim.raw_fp, identifiers=claim.identifiers,
                                           keep_since=True)
            if taken is None:
                self._elsewhere()
            else:
                self._resolve(row, taken)

    def settle_held(self) -> None:
        """Claims whose member is held but which were never settled (their sender stopped between the two
        commits): mark them sent, so a later re-entry of the member is not taken for a text in doubt."""
        now = time.time()
        for claim in self.ledger.unsettled_held_claims(self.plan.sync):
            self._settle_texted(claim, now)

    def commit_failures(self) -> None:
        """Record the members not texted (one commit) and count them; a batch that raises with nothing
        sent skips this, since the caller defers the whole batch."""
        if self.elsewhere:
            self.report.deferred += self.elsewhere
            self.report.deferred_reasons[ELSEWHERE] = self.report.deferred_reasons.get(ELSEWHERE, 0) + self.elsewhere
            self.elsewhere = 0
        if not self.failed:
            return
        self.ledger.commit_batch(sync=self.plan.sync, sync_run_id=self.sync_run_id, op="add", landed=[], failed=self.failed,
                                 attempts=1, rows=len(self.failed), refused=self.refused)
        for _, status, reason in self.failed:
            counts = self.report.reasons if status == "rejected" else self.report.deferred_reasons
            counts[reason] = counts.get(reason, 0) + 1
            if status == "rejected":
                self.report.rejected += 1
            else:
                self.report.deferred += 1
        self.failed, self.refused = [], []

    def _send(self, row: PlannedRow, claim: MessageClaim) -> None:
        try:
            result, attempts = self.send([Member(row.member_key, row.identifiers)])
        except SyncError:  # the connector raises only when the text did not go out
            self.ledger.settle_claim(claim, NOT_SENT)
            raise
        self.report.requests += result.requests + (attempts - 1)
        [outcome] = result.outcomes
        if outcome.status is RowStatus.SENT and outcome.reason is None:
            message_ids = self.destination.last_message_ids if isinstance(self.destination, ReadsMessageLog) else {}
            self._landed(row, claim, message_ids.get(row.member_key), attempts, dict(result.platform_counts))
            self.report.added += 1
        elif outcome.status is RowStatus.SENT:  # delivery unknown: it may have gone out
            self.ledger.settle_claim(claim, UNKNOWN)
            self.went_out, self.halted = True, "unavailable"
            self.failed.append((row.member_key, "retryable", outcome.reason or "delivery_unknown"))
        else:
            self.ledger.settle_claim(claim, NOT_SENT)
            self.failed.append((row.member_key, outcome.status.value, outcome.reason or "unknown"))
            if outcome.status is RowStatus.REJECTED:  # refused for good: not again until the row changes
                self.refused.append((row.member_key, row.raw_fp, outcome.reason or "unknown"))

    def _resolve(self, row: PlannedRow, claim: MessageClaim) -> None:
        """A text in doubt: held if the platform's log shows it, else sent now under the same claim."""
        if not isinstance(self.destination, ReadsMessageLog):  # no way to know: count it sent, never resend
            self._landed(row, claim, None, 0, {"texts_in_doubt_counted_sent": 1})
            return
        try:
            found = self.destination.find_sent(self.audience, Member(row.member_key, claim.identifiers), claim.since)
        except TransientError:
            self.ledger.settle_claim(claim, UNKNOWN)
            self.failed.append((row.member_key, "retryable", "delivery_unknown"))
            return
        except SyncError:
            self.ledger.settle_claim(claim, UNKNOWN)
            raise
        if found is not None:
            self._landed(row, claim, found or None, 0, {"texts_found_in_log": 1})
            return
        retaken = self.ledger.take_claim(claim, claimed_by=self.me, raw_fp=row.raw_fp, identifiers=row.identifiers,
                                         keep_since=True)  # the text now goes to the row as it is
        if retaken is None:
            self._elsewhere()
        else:
            self._send(row, retaken)

    def _landed(self, row: PlannedRow, claim: MessageClaim, message_id: str | None, attempts: int,
                counts: dict[str, int]) -> None:
        """Held first, then the claim settled: a crash between the two leaves a held member whose claim
        ``settle_held`` settles later, never a settled claim without its held row."""
        self.ledger.commit_batch(sync=self.plan.sync, sync_run_id=self.sync_run_id, op="add", failed=[], rows=1,
                                 landed=[HeldRow(row.member_key, row.raw_fp, row.identifiers)], attempts=attempts,
                                 platform_counts=counts)
        self.ledger.settle_claim(claim, SENT, message_id=message_id)
        self.went_out = True
        for name, value in counts.items():
            if isinstance(value, int):
                self.report.platform_counts[name] = self.report.platform_counts.get(name, 0) + value

    def _settle_texted(self, claim: MessageClaim, now: float) -> None:
        if claim.state == UNKNOWN or not _running(claim, now):
            self.ledger.settle_claim(claim, SENT, message_id=claim.message_id)

    def _elsewhere(self) -> None:
        """Another process owns this member's text (in flight, or sent): nothing to record here."""
        self.elsewhere += 1


def _halt_reason(failure: SyncError) -> str:
    return "throttled" if isinstance(failure, RateLimited) else "unavailable"


# --- who holds a claim -----------------------------------------------------------------------------


def process_token() -> str:
    """This process as ``claimed_by`` names it: host, pid namespace, pid and start time
    (``syncer.ledger.processes``), so a pid reused by a later process is not taken for the holder."""
    return "/".join(this_process())


def _running(claim: MessageClaim, now: float) -> bool:
    """Whether the process that holds ``claim`` may still be sending its text."""
    parts = claim.claimed_by.split("/")  # host/namespace/pid/start time/sync run
    alive = process_alive(parts[0], "/".join(parts[1:4])) if len(parts) >= 4 else None
    if alive is None:
        return now - claim.claimed_at < FOREIGN_CLAIM_S  # another machine or container: only time tells
    return alive
