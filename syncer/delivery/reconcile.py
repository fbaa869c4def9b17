"""`syncer reconcile`: read each audience back from its platform, compare it with the ledger, set it right.

The ledger says what each audience holds; a person in the platform's web app, another tool, or a platform
bug can make it wrong. Reconcile reads the audience back and acts, per sync:

- **Listed** (the connector is ``ListsMembers``: Klaviyo, Mailchimp, Iterable): every listed member is laid
  over the ledger's ``held`` rows (``syncer.delivery.reconcile_compare`` defines missing, extra and changed
  precisely). Then:

  - *missing* members are added again through the batch path's own step (``send_and_commit``, op add,
    the ledger committed per batch), except those the batch path is already dealing with: a member with a
    retry pending (it may be on its way out: re-adding it would fight that remove), and a member
    suppressed by the fast path for the sync's segment (the fast path removes them; re-adding would undo
    a suppression);
  - *extras* stay unless the sync says ``extras: remove`` (default ``keep``: people added by hand stay).
    Removing them needs a ``mirror`` sync (``add_only`` never removes), no adds waiting for a retry (an add
    that landed without an answer looks exactly like an extra), no commit to the sync while the platform
    was read (a member just added looks like one too), and the sync's gates, applied to the removal as to
    a plan (``max_removal_pct`` of what the platform lists, ``max_removals``, the zero-row guard,
    ``min_audience_size``): a tripped gate holds the removal (``--approve`` lets it through) and says
    why. Extras were never held, so removing them writes nothing to ``held``;
  - *changed* members (the platform's person edited outside the syncer: a profile whose email was changed
    by hand) are sent again as the warehouse has them, as missing ones are: the warehouse is the source
    of truth of a reverse-ETL sync, and an edit that should last belongs there. Their cached platform ids
    are dropped first, so the connector resolves the person from the identifiers we send, not from the
    profile that was edited (which, if it no longer matches anyone we hold, is an extra from then on).

- **Size only** (``HasPlatformCounts``: Meta; Google where its connector reads a size): the platform's
  size is compared with the held count within the platform's documented approximation
  (``syncer.delivery.reconcile_size``). A flag is a signal; nothing is sent.

- **Neither** (Twilio: a text is not membership; platforms whose API reads nothing back): skipped, saying so.

A destination that asked us to wait (a throttle's "come back in 5 minutes", kept in the ledger) is not
called until then. Each invocation is a run with command ``reconcile`` in the ledger, a ``sync_runs`` row
per sync with the figures in ``details`` (``syncer.delivery.reconcile_records``), so ``status``,
``history`` and Dagster show them. Nothing here prints; output never holds identifiers (member keys and
counts only).

Statuses: ``in_sync`` (nothing to repair: every held member is on the platform as sent; extras kept by
``extras: keep`` are counted, not drift), ``repaired`` (what drifted was set right), ``drift`` (something
stays wrong: extras that could not be removed, rows the platform refused, a size beyond
the approximation, or a ``--dry-run``), ``held`` (a gate held the removal of extras), ``deferred`` (the
destination asked us to wait), ``partial`` / ``failed`` (the platform failed mid-way / at once), ``skipped``
(nothing to read back, or no size computed yet).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from destinations.base import AudienceRef, Destination, HasPlatformCounts, ListedMember, ListsMembers, Member, RowStatus
from syncer.delivery.apply import ApplyReport, remember_wait, send_and_commit, waiting_message
from syncer.delivery.engine import Engine
from syncer.delivery.reconcile_compare import Drift, HeldIndex, compare
from syncer.delivery.reconcile_records import COMMAND, last_size_reading
from syncer.delivery.reconcile_size import check_size
from syncer.errors import ConfigError, SyncError, TransientError
from syncer.ledger.failures import failure_fields
from syncer.planning.gates import GateResult, check_gates, held_reason
from syncer.planning.plan import PlannedRow, PlanRows, SyncPlan
from syncer.project.config import SyncConfig

__all__ = ["EXIT_STATUSES", "ReconcileReport", "Reconciler"]

SAMPLE = 5  # member keys shown per figure
_CHUNK = 5_000  # held rows read per query while indexing
EXIT_STATUSES = {"failed": 1, "partial": 1, "deferred": 1, "held": 3, "drift": 4, "busy": 5}
"""Exit code of ``syncer reconcile`` by the worst status (others: 0)."""


@dataclass
class ReconcileReport:
    """What reconcile found and did for one sync: counts and member keys, never identifiers."""

    sync: str
    destination: str = ""
    method: str = "skipped"  # listed | size | skipped
    status: str = "in_sync"
    held: int = 0
    listed: int | None = None
    missing: int = 0
    extra: int = 0
    changed: int = 0
    readded: int = 0
    removed: int = 0
    rejected: int = 0
    left: dict[str, int] = field(default_factory=dict)  # found but not repaired, by why
    requests: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)  # member keys of missing and changed members
    size: dict | None = None
    reason: str | None = None  # why it was skipped, held, deferred or failed
    gates: list[dict] = field(default_factory=list)
    duration: float = 0.0
    error_class: str | None = None
    error_fault: str | None = None
    error_detail: str | None = None

    def figures(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for ``history``: what was found and what was done."""
        if self.method == "skipped":
            return f"reconcile: skipped: {self.reason}"
        if self.method == "size":
            size = self.size or {}
            platform = size.get("platform") or {}
            seen = f"{platform.get('low')}-{platform.get('high')}" if platform else "no size yet"
            return f"reconcile: size {seen} for {self.held} held: {size.get('verdict')}" + (f"; {self.reason}" if self.reason else "")
        parts = [f"{self.missing} missing ({self.readded} re-added)", f"{self.extra} extra ({self.removed} removed)",
                 f"{self.changed} changed"]
        left = ", ".join(f"{why} {n}" for why, n in sorted(self.left.items()))
        return "reconcile: " + "; ".join(parts) + (f"; left: {left}" if left else "") + (f"; {self.reason}" if self.reason else "")


class Reconciler:
    """Reconcile the syncs of one project; ``engine`` supplies destinations, the ledger, retries and clock."""

    def __init__(self, engine: Engine, *, approve: bool | Callable[[str], bool] = False, dry_run: bool = False) -> None:
        """``approve`` lets a gate-held removal of extras through: for every sync, or those it answers True for."""
        self.engine, self.ledger, self.project = engine, engine.ledger, engine.project
        self.approve = approve if callable(approve) else (lambda _sync, everyone=approve: everyone)
        self.dry_run = dry_run

    def run(self, syncs: Iterable[str] | None = None) -> list[ReconcileReport]:
        """Reconcile ``syncs`` (default: all); one failing does not stop the others."""
        names = list(syncs) if syncs else sorted(self.project.syncs)
        unknown = [n for n in names if n not in self.project.syncs]
        if unknown:
            raise ConfigError(f"unknown sync(s): {', '.join(unknown)}; known: {', '.join(sorted(self.project.syncs))}")
        run_id = self.ledger.start_run(COMMAND)
        reports = [self._one(run_id, name) for name in names]
        worst = max((EXIT_STATUSES.get(r.status, 0), r.status) for r in reports) if reports else (0, "in_sync")
        self.ledger.finish_run(run_id, worst[1] if worst[0] else "ok")
        return reports

    # ----- one sync ---------------------------------------------------------------------------------
    def _one(self, run_id: int, name: str) -> ReconcileReport:
        """Reconcile one sync under its lease (a dry run takes none: it changes nothing), so no batch run or
        fast-path remove of the sync lands between the read and the repair (a remove that landed but was not
        committed yet would look missing, and be added back)."""
        started = time.perf_counter()
        sync = self.project.syncs[name]
        with self.engine.leases.hold([] if self.dry_run else [name], self.engine.lease_label or f"syncer {COMMAND}",
                                     wait=self.engine.lease_wait, sleep=self.engine.sleep) as holding:
            report = ReconcileReport(sync=name, destination=sync.destination, held=self.ledger.held_count(name))
            sync_run_id = self.ledger.start_sync_run(run_id, name, plan_hash=None, members=report.held)
            settled = None if self.dry_run or name in holding.busy else self.engine.settle([name]).get(name)
            if name in holding.busy:
                report.status = "busy"
                report.reason = self.engine.leases.busy_reason(
                    holding.busy[name], then="nothing was read or changed: reconcile again once it ends")
            elif settled is not None and settled.status != "ok":  # what a batch in flight sent would look missing or extra
                report.status, report.reason = "deferred", settled.reason
            else:
                self._reconcile_reporting(name, sync, report, sync_run_id)
        report.duration = round(time.perf_counter() - started, 3)
        errors = {k: getattr(report, k) for k in ("error_class", "error_fault", "error_detail")} if report.error_class else {}
        self.ledger.finish_sync_run(sync_run_id, status=report.status, reason=report.summary(), added=report.readded,
                                    removed=report.removed, rejected=report.rejected, requests=report.requests,
                                    details={COMMAND: report.figures()}, **errors)
        return report

    def _reconcile_reporting(self, name: str, sync: SyncConfig, report: ReconcileReport, sync_run_id: int) -> None:
        """``_reconcile``, with a failed read turned into the report's status and reason."""
        try:
            self._reconcile(name, sync, report, sync_run_id)
        except SyncError as exc:  # the read failed (a failed repair is caught in _repair): nothing was changed
            remember_wait(self.ledger, sync.destination, exc, now=self.engine.clock())
            report.status = "deferred" if isinstance(exc, TransientError) else "failed"
            report.reason = exc.message + ("; nothing was changed: reconcile again later" if report.status == "deferred" else "")
            for key, value in failure_fields(exc, self.engine.scrub).items():
                setattr(report, key, value)

    def _reconcile(self, name: str, sync: SyncConfig, report: ReconcileReport, sync_run_id: int) -> None:
        destination = self.engine.destination(sync.destination)
        audience_id = sync.audience_id or self.ledger.id_cache(f"{sync.destination}#audiences").get_many([name]).get(name)
        waiting = self.ledger.wait_for(sync.destination, now=self.engine.clock())
        if not destination.capabilities.can_remove:
            _skip(report, f"a {destination.kind} sync sends messages, which hold no membership: nothing to read back")
        elif not audience_id:
            _skip(report, "the sync creates its audience on its first run, which has not happened yet")
        elif not isinstance(destination, (ListsMembers, HasPlatformCounts)):
            _skip(report, f"the {destination.kind} API reads back neither an audience's members nor its size")
        elif waiting is not None:
            report.status, report.reason = "deferred", waiting_message(sync.destination, *waiting)
        elif isinstance(destination, ListsMembers):
            audience = AudienceRef(name, audience_id)
            version = self.ledger.state_version(name)
            index = self._held_index(name, destination)
            drift = self._retrying(sync.destination, lambda: compare(index, destination.list_members(audience)))
            _note_drift(report, drift)
            if not self.dry_run:  # the read may have taken long: still ours, or stop before repairing
                self.engine.leases.renew(name)
            self._repair(name, sync, destination, audience, drift, report, sync_run_id, version)
        else:
            self._check_size(name, sync, destination, AudienceRef(name, audience_id), report)

    def _held_index(self, name: str, destination: Destination) -> HeldIndex:
        index = HeldIndex(destination.capabilities.match_keys)
        keys, _ = self.ledger.held_fingerprints(name)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            for key, row in self.ledger.held_rows(name, chunk).items():
                index.add(key, row.identifiers)
            index.add_platform_ids(self.ledger.id_cache(destination.name).get_many(chunk))
        return index

    def _check_size(self, name: str, sync: SyncConfig, destination: HasPlatformCounts, audience: AudienceRef,
                    report: ReconcileReport) -> None:
        counts = self._retrying(sync.destination, lambda: destination.audience_counts(audience))
        check = check_size(counts, report.held, last_size_reading(self.ledger, name))
        report.method, report.size = "size", check.as_dict() | {"counts": dict(counts)}
        report.status = "drift" if check.drift else "skipped" if check.verdict == "unreadable" else "in_sync"
        report.reason = check.note if check.verdict != "ok" else None

    # ----- repair -----------------------------------------------------------------------------------
    def _repair(self, name: str, sync: SyncConfig, destination: Destination, audience: AudienceRef, drift: Drift,
                report: ReconcileReport, sync_run_id: int, version: int) -> None:
        pending = self.ledger.pending_keys(name)
        suppressed = {k for k, segment in self.ledger.active_suppressions() if segment in ("*", sync.segment)}
        readd, resend = [], []
        for keys, wanted in ((drift.missing, readd), (drift.changed, resend)):
            for key in keys:
                why = "pending_retry" if key in pending else "suppressed" if key in suppressed else None
                if why:
                    report.left[why] = report.left.get(why, 0) + 1
                else:
                    wanted.append(key)
        extras = self._removable_extras(name, sync, drift, pending, report, version)
        if self.dry_run:
            if readd or resend or extras:
                report.left["dry_run"] = len(readd) + len(resend) + len(extras)
            report.status = "drift" if (readd or resend or extras) else report.status
            return
        try:
            if resend:
                self.ledger.id_cache(destination.name).forget(resend)
            self._readd(name, destination, audience, readd + resend, report, sync_run_id)
            self._remove(sync.destination, destination, audience, extras, report)
        except SyncError as exc:
            remember_wait(self.ledger, sync.destination, exc, now=self.engine.clock())
            report.status = "partial" if isinstance(exc, TransientError) else "failed"
            report.reason = exc.message
            for key, value in failure_fields(exc, self.engine.scrub).items():
                setattr(report, key, value)
            return
        _settle(report, drift)

    def _removable_extras(self, name: str, sync: SyncConfig, drift: Drift, pending: dict[str, str],
                          report: ReconcileReport, version: int) -> list[ListedMember]:
        """The extras to remove now; the others are counted in ``report.left`` with why. ``version`` is the
        sync's ledger version when its held rows were read: a member a sync or the fast path added while the
        platform was being read looks like an extra, so a moved version keeps the extras."""
        extras = drift.extra
        why = None
        if not extras:
            return []
        if sync.extras == "keep":
            why = "extras_kept"
        elif sync.mode != "mirror":
            why, report.reason = "extras_not_removed", f"mode {sync.mode} never removes; extras stay"
        elif any(op == "add" for op in pending.values()):
            why, report.reason = "extras_not_removed", ("adds are waiting for a retry, and one that landed unanswered looks"
                                                        " like an extra: run the sync, then reconcile again")
        elif self.ledger.state_version(name) != version:
            why, report.reason = "extras_not_removed", ("the audience changed while it was read (a sync or the fast path"
                                                        " committed), so an extra may be a member just added: reconcile again")
        else:
            report.gates = [asdict(g) for g in check_gates(_removal_plan(name, sync, drift), self.project.gates_for(name))]
            held = held_reason([GateResult(**g) for g in report.gates])
            if held and not self.approve(name):
                why, report.reason, report.status = "extras_held", f"removing {len(extras)} extras is held: {held}", "held"
        if why:
            report.left[why] = len(extras)
            return []
        return extras

    def _readd(self, name: str, destination: Destination, audience: AudienceRef, keys: Sequence[str],
               report: ReconcileReport, sync_run_id: int) -> None:
        if not keys:
            return
        rows = self.ledger.held_rows(name, keys)
        batch_size = destination.capabilities.max_batch
        figures = ApplyReport()
        ordered = [rows[k] for k in keys if k in rows]
        try:
            for start in range(0, len(ordered), batch_size):
                send_and_commit(destination, self.ledger, sync=name, sync_run_id=sync_run_id, audience=audience, op="add",
                                rows=ordered[start:start + batch_size], policy=self.engine.policy, report=figures,
                                sleep=self.engine.sleep)
        finally:
            report.readded += figures.added
            report.rejected += figures.rejected
            report.requests += figures.requests
            if figures.deferred:
                report.left["readd_retry"] = report.left.get("readd_retry", 0) + figures.deferred

    def _remove(self, destination_name: str, destination: Destination, audience: AudienceRef,
                extras: Sequence[ListedMember], report: ReconcileReport) -> None:
        """Remove extras straight through the connector: they were never held, so nothing is committed."""
        size = destination.capabilities.max_batch
        for start in range(0, len(extras), size):
            members = [Member(_extra_key(m), dict(m.identifiers)) for m in extras[start:start + size]]
            result = self._retrying(destination_name, lambda batch=members: destination.remove(audience, batch))
            report.requests += result.requests
            for outcome in result.outcomes:
                if outcome.status is RowStatus.SENT:
                    report.removed += 1
                elif outcome.status is RowStatus.REJECTED:
                    report.rejected += 1
                else:
                    report.left["remove_retry"] = report.left.get("remove_retry", 0) + 1

    def _retrying(self, destination: str, call: Callable[[], object]):
        """``call`` with the engine's retry policy: transient failures are retried after the wait the platform
        asked for, up to the policy's longest wait; a longer one is remembered and raised."""
        policy = self.engine.policy

        def wait(state) -> float:
            exc = state.outcome.exception()
            asked = getattr(exc, "retry_after", None)
            seconds = asked if asked is not None else policy.base_wait * 2 ** (state.attempt_number - 1)
            if seconds > policy.max_wait:
                raise exc
            return seconds

        retrying = Retrying(stop=stop_after_attempt(policy.attempts), wait=wait, retry=retry_if_exception_type(TransientError),
                            reraise=True, sleep=self.engine.sleep)
        return retrying(call)


def _skip(report: ReconcileReport, why: str) -> None:
    report.method, report.status, report.reason = "skipped", "skipped", why


def _note_drift(report: ReconcileReport, drift: Drift) -> None:
    report.method, report.listed = "listed", drift.listed
    report.missing, report.extra, report.changed = len(drift.missing), len(drift.extra), len(drift.changed)
    report.samples = {k: v[:SAMPLE] for k, v in (("missing", drift.missing), ("changed", drift.changed)) if v}


def _settle(report: ReconcileReport, drift: Drift) -> None:
    """The status once the repair is done (a hold set earlier stands)."""
    if report.status == "held":
        return
    unrepaired = {k for k in report.left if k not in ("extras_kept", "pending_retry", "suppressed")}
    if report.rejected or unrepaired:
        report.status = "drift"
    elif report.readded or report.removed:
        report.status = "repaired"
    else:
        report.status = "in_sync"


def _removal_plan(name: str, sync: SyncConfig, drift: Drift) -> SyncPlan:
    """The removal of the extras as a plan, so the sync's own gates judge it: the audience is what is listed."""
    removes = PlanRows(PlannedRow(_extra_key(m), "", {}) for m in drift.extra)
    return SyncPlan(sync=name, segment=sync.segment, destination=sync.destination, audience_id=sync.audience_id or "",
                    mode=sync.mode, base_version=0, members=drift.listed - len(drift.extra), held_before=drift.listed,
                    removes=removes)


def _extra_key(member: ListedMember) -> str:
    """A stand-in member key for someone we never sent: a digest, so no identifier reaches an outcome."""
    payload = json.dumps([sorted(member.identifiers.items()), member.platform_id], separators=(",", ":"))
    return "extra:" + hashlib.sha256(payload.encode()).hexdigest()[:20]
