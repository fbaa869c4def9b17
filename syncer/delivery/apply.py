"""Execute one sync's plan against its destination, batch by batch, committing the ledger per batch.

Order: ledger-only changes first (rejections, refreshes), then removes, then adds, so a member whose
identifiers changed is never left with the old identifiers on the platform after a crash: the old
row is removed and committed before the new one is added, and a crash in between leaves a plain add
for the next run. Each batch is written ahead, sent, then committed; a crash after the send leaves the
written batch for the next holder of the sync's lease to send again and record (``syncer.delivery.settle``)
before it plans, which the platforms treat as a no-op (audience add/remove are set operations).
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from destinations.base import AudienceRef, BatchResult, Destination, Member, RowOutcome, RowStatus
from syncer.delivery.at_most_once import apply_at_most_once
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError, TransientError
from syncer.json_rows import dumps_many
from syncer.ledger.failures import failure_fields, scrub_detail
from syncer.ledger.store import HeldRow, Ledger
from syncer.planning.plan import PlannedRow, SyncPlan

_LEDGER_CHUNK = 50_000  # rows per ledger-only transaction (refreshes, deferrals): bounds memory


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_wait: float = 1.0
    max_wait: float = 120.0  # a platform asking for longer defers the rest to the next run
    jitter: float = 0.1


@dataclass
class ApplyReport:
    status: str = "ok"  # ok | partial | failed
    added: int = 0
    removed: int = 0
    rejected: int = 0
    retried: int = 0
    deferred: int = 0
    requests: int = 0
    waits: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)  # rejected rows by reason
    deferred_reasons: dict[str, int] = field(default_factory=dict)  # rows left for the next run, by reason
    platform_counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the operator's message of the error that failed or cut short the sync
    error_class: str | None = None  # that error's class name, its fault, and its scrubbed detail
    error_fault: str | None = None  # (syncer.ledger.failures.failure_fields)
    error_detail: str | None = None
    suppressed: int = 0  # adds dropped because the member was suppressed (a conversion) after the plan was made
    left_segment: int = 0  # texts not sent: the member left the segment (or withdrew consent) after the plan
    created_audience: str | None = None  # the id of the audience this apply created (``create_audience:``)


class _Deferred(Exception):
    def __init__(self, cause: TransientError) -> None:
        super().__init__(cause.message)
        self.cause = cause


def _wait_for(policy: RetryPolicy, report: ApplyReport):
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        backoff = policy.base_wait * 2 ** (state.attempt_number - 1)
        seconds = max(asked, 0.0) if asked is not None else backoff
        if seconds > policy.max_wait:
            raise _Deferred(exc)
        seconds += random.uniform(0, policy.jitter * max(seconds, 0.1))
        report.waits.append(round(seconds, 3))
        return seconds

    return wait


def _send(destination: Destination, op: str, audience: AudienceRef, members: Sequence[Member], policy: RetryPolicy,
          report: ApplyReport, sleep: Callable[[float], None]) -> tuple[BatchResult, int]:
    call = destination.add if op == "add" else destination.remove
    retrying = Retrying(stop=stop_after_attempt(policy.attempts), wait=_wait_for(policy, report),
                        retry=retry_if_exception_type(TransientError), reraise=True, sleep=sleep)
    attempts = 0
    try:
        for attempt in retrying:
            with attempt:
                attempts += 1
                result = call(audience, members)
    except _Deferred as deferred:  # a wait longer than we block for: the platform's own error, for the caller
        raise deferred.cause from None
    return result, attempts


def apply_sync(plan: SyncPlan, destination: Destination, ledger: Ledger, *, sync_run_id: int,
               policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
               on_batch: Callable[[str, int], None] | None = None,
               scrub: Callable[[str | None], str | None] = scrub_detail,
               clock: Callable[[], float] = time.time,
               still_in_segment: Callable[[list[str]], set[str]] | None = None) -> ApplyReport:
    """Send the plan's removes then adds; return the figures. Raises nothing for platform failures:
    they end up in the report (``status``, ``error`` and the ``error_*`` fields, the detail passed through
    ``scrub``) and the ledger. While the destination's wait lasts (``remember_wait``) nothing is sent.
    ``still_in_segment`` (trigger syncs: a text cannot be taken back) answers which of a batch's members the
    segment holds now, asked just before the batch is sent."""
    report = ApplyReport(retried=plan.retried)
    report.rejected = len(plan.rejections)
    for _, _, reason in plan.rejections:
        report.reasons[reason] = report.reasons.get(reason, 0) + 1
    if plan.rejections or plan.cleared_rejections:
        ledger.replace_rejections(plan.sync, plan.rejections, plan.cleared_rejections)
    ledger.expect_changes(plan.sync, len(plan.refreshes) + len(plan.removes) + len(plan.adds))
    for start in range(0, len(plan.refreshes), _LEDGER_CHUNK):
        ledger.commit_batch(sync=plan.sync, sync_run_id=sync_run_id, op="refresh", rows=0, attempts=0, failed=[],
                            landed=[HeldRow(r.member_key, r.raw_fp, r.identifiers) for r in plan.refreshes[start:start + _LEDGER_CHUNK]])
    audience = AudienceRef(plan.sync, plan.audience_id)
    size = destination.capabilities.max_batch
    work = [("remove", plan.removes), ("add", plan.adds)]
    waiting = ledger.wait_for(plan.destination, now=clock())
    if waiting is not None and (plan.removes or plan.adds):
        cause = RateLimited(waiting_message(plan.destination, *waiting), retry_after=waiting[0] - clock())
        _defer_rest(ledger, plan, work, 0, 0, report, cause)
        _note_error(report, cause, scrub)
        return report
    for index, (op, rows) in enumerate(work):
        for start in range(0, len(rows), size):
            with collector_paused():  # a chunk read back from disk: tens of thousands of rows at once
                batch = rows[start:start + size]
            try:
                if op == "add" and still_in_segment is not None:
                    batch = _still_wanted(batch, still_in_segment, report)
                _apply_batch(plan, destination, ledger, sync_run_id, audience, op, batch, policy, report, sleep)
            except TransientError as cause:
                remember_wait(ledger, plan.destination, cause, now=clock())
                _defer_rest(ledger, plan, work, index, start, report, cause)
                _note_error(report, cause, scrub)
                return report
            except (ConfigError, PermanentError) as exc:
                report.status, report.error = "failed", exc.message
                _note_error(report, exc, scrub)
                return report
            if on_batch:
                on_batch(op, len(batch))
    return report


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while one batch is built, sent and recorded. A batch makes tens of
    thousands of objects (rows, members, outcomes) freed by reference counting once it is recorded, which
    would otherwise set off collections that walk the whole heap: 6.7 s of a 1M initial sync, measured.
    A bulk send builds no reference cycles per row; the few a request leaves are collected after it."""
    if not gc.isenabled():  # already held by a caller
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def remember_wait(ledger: Ledger, destination: str, error: SyncError, *, now: float | None = None) -> None:
    """Keep a throttle's wait in the ledger, so the next run, the fast path, counts and job polling honour
    it too (a run 20 s later that sends at once only earns a longer wait)."""
    if isinstance(error, RateLimited) and error.retry_after:
        ledger.set_wait(destination, error.retry_after, error.message, now=now)


def waiting_message(destination: str, not_before: float, reason: str) -> str:
    until = datetime.fromtimestamp(not_before, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"destination '{destination}' asked us to wait until {until} ({reason[:160]}); nothing sent to it before then"


def _note_error(report: ApplyReport, exc: SyncError, scrub: Callable[[str | None], str | None]) -> None:
    """Keep the class, fault and scrubbed detail of the error that ended the sync in the report."""
    for name, value in failure_fields(exc, scrub).items():
        setattr(report, name, value)


def _apply_batch(plan: SyncPlan, destination: Destination, ledger: Ledger, sync_run_id: int, audience: AudienceRef,
                 op: str, batch: Sequence[PlannedRow], policy: RetryPolicy, report: ApplyReport,
                 sleep: Callable[[float], None]) -> None:
    capabilities = destination.capabilities
    if op == "add":
        batch = _without_late_suppressions(plan, ledger, batch, report)
        if not batch:
            return
    if op == "remove" and not capabilities.can_remove:
        # the platform keeps no membership (a trigger): leaving only clears the ledger, so re-entry triggers again
        ledger.forget_held(plan.sync, [r.member_key for r in batch])
        return
    if op == "add" and capabilities.at_most_once:
        apply_at_most_once(plan, destination, ledger, sync_run_id, audience, batch, report,
                           send=lambda members: _send(destination, "add", audience, members, policy, report, sleep))
        return
    send_and_commit(destination, ledger, sync=plan.sync, sync_run_id=sync_run_id, audience=audience, op=op,
                    rows=batch, policy=policy, report=report, sleep=sleep)


def _still_wanted(batch: Sequence[PlannedRow], still_in_segment: Callable[[list[str]], set[str]],
                  report: ApplyReport) -> Sequence[PlannedRow]:
    """The batch without members who left the segment (or withdrew consent) since the plan was made."""
    now = still_in_segment([r.member_key for r in batch])
    kept = [r for r in batch if r.member_key in now]
    report.left_segment += len(batch) - len(kept)
    return kept


def _without_late_suppressions(plan: SyncPlan, ledger: Ledger, batch: Sequence[PlannedRow],
                               report: ApplyReport) -> Sequence[PlannedRow]:
    """The batch without members suppressed since the plan was made: a conversion that lands while a slow
    apply is under way must not be undone by it (the fast path found them not yet held, or removed them)."""
    late = ledger.suppressed_since(plan.planned_at, plan.segment)
    if not late:
        return batch
    kept = [r for r in batch if r.member_key not in late]
    report.suppressed += len(batch) - len(kept)
    return kept


def send_and_commit(destination: Destination, ledger: Ledger, *, sync: str, sync_run_id: int, audience: AudienceRef,
                    op: str, rows: Sequence[PlannedRow | HeldRow], policy: RetryPolicy, report: ApplyReport,
                    sleep: Callable[[float], None] = time.sleep, fast_path: bool = False,
                    intent: int | None = None) -> list[tuple[str, str, str]]:
    """Send one batch (retried per ``policy``), then record what landed and what failed in the ledger, in
    one commit: the step apply, the fast path and settling share. Returns the failed rows (key, status, reason).

    The batch is written ahead (``syncer.ledger.intents``) before it is sent, and that record is deleted
    by the commit, so a process killed in between leaves it for the next holder of the sync's lease to
    settle (``syncer.delivery.settle``); ``intent`` is such a record being settled now.

    Raises what the destination raised once the retries are spent, leaving the ledger as it was, the
    batch's record included: an earlier attempt may have landed before a timeout (settling sends it again)."""
    with collector_paused():
        return _send_and_commit(destination, ledger, sync, sync_run_id, audience, op, rows, policy, report, sleep,
                                fast_path, intent)


def _send_and_commit(destination: Destination, ledger: Ledger, sync: str, sync_run_id: int, audience: AudienceRef,
                     op: str, rows: Sequence[PlannedRow | HeldRow], policy: RetryPolicy, report: ApplyReport,
                     sleep: Callable[[float], None], fast_path: bool, intent: int | None) -> list[tuple[str, str, str]]:
    texts = getattr(rows, "texts", None) or dumps_many([r.identifiers for r in rows])  # encoded once, for both records
    if intent is None:
        intent = ledger.record_intent(sync, op, rows, fast_path=fast_path, identifiers=texts)
    members = [Member.from_row(r.member_key, r.identifiers) for r in rows]  # traits ride in the identifiers
    result, attempts = _send(destination, op, audience, members, policy, report, sleep)
    report.requests += result.requests + (attempts - 1)
    landed, landed_texts = _landed(rows, texts, result.outcomes)
    failed = [(o.member_key, o.status.value, o.reason or "unknown") for o in result.outcomes if o.status is not RowStatus.SENT]
    ledger.commit_batch(sync=sync, sync_run_id=sync_run_id, op=op, landed=landed, failed=failed,
                        attempts=attempts, platform_counts=dict(result.platform_counts), rows=len(rows),
                        refused=_refused(op, rows, failed), fast_path=fast_path, intent=intent, identifiers=landed_texts)
    if op == "add":
        report.added += len(landed)
    else:
        report.removed += len(landed)
    _count_failures(report, failed)
    for name, value in result.platform_counts.items():
        if isinstance(value, int):
            report.platform_counts[name] = report.platform_counts.get(name, 0) + value
    return failed


def _landed(rows: Sequence[PlannedRow | HeldRow], texts: Sequence[str],
            outcomes: Sequence[RowOutcome]) -> tuple[Sequence[PlannedRow | HeldRow], Sequence[str]]:
    """The rows the platform accepted and their identifiers' JSON text: the batch itself when every row was
    sent (the usual case: no copy), else the sent ones in batch order."""
    if len(outcomes) == len(rows) and all(o.status is RowStatus.SENT for o in outcomes):
        return rows, texts  # one outcome per row (the base class checks it), every one SENT
    status = {o.member_key: o.status for o in outcomes}  # one per member: the base class checks it
    kept = [i for i, r in enumerate(rows) if status[r.member_key] is RowStatus.SENT]
    return [rows[i] for i in kept], [texts[i] for i in kept]


def _refused(op: str, rows: Sequence[PlannedRow | HeldRow], failed: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(member_key, raw_fp, reason) of adds the platform refused for good: remembered at that fingerprint,
    so a no-change run does not send them again (a remove refused stays held and is retried as planned)."""
    if op != "add":
        return []
    fps = {r.member_key: r.raw_fp for r in rows}
    return [(key, fps[key], reason) for key, status, reason in failed if status == "rejected"]


def _count_failures(report: ApplyReport, failed: Sequence[tuple[str, str, str]]) -> None:
    for _, status, reason in failed:
        if status == "rejected":
            report.rejected += 1
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
        else:
            report.deferred += 1
            report.deferred_reasons[reason] = report.deferred_reasons.get(reason, 0) + 1


def _defer_rest(ledger: Ledger, plan: SyncPlan, work, index: int, start: int, report: ApplyReport,
                cause: TransientError) -> None:
    """The platform kept failing: park every unsent row as pending so the next run retries it."""
    for op_index in range(index, len(work)):
        op, rows = work[op_index]
        for first in range(start if op_index == index else 0, len(rows), _LEDGER_CHUNK):  # bounded memory
            rest = rows[first:first + _LEDGER_CHUNK]
            ledger.record_deferred(sync=plan.sync, op=op, member_keys=[r.member_key for r in rest], reason="deferred: " + cause.message[:200])
            report.deferred += len(rest)
    report.status = "partial"
    report.error = f"{cause.message}; {report.deferred} rows deferred to the next run"
