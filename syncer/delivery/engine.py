"""Plan, gate and apply every sync of a project: the one flow the CLI and Dagster both call.

Nothing here prints; it returns ``SyncReport`` values and records everything in the ledger.

Each sync is applied under its lease (``syncer.ledger.leases``), so two processes never send for one sync at
once: a sync another run holds is skipped with status ``busy`` and a reason naming the holder and since when
(after waiting ``lease_wait`` seconds for it, 0 by default); the other syncs of the run go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as _but
from pathlib import Path

from destinations.base import AudienceRef, CreatesAudiences, Destination, HasPlatformCounts, Member, ReplacesAudiences, RowStatus, RunsJobs
from destinations.registry import build_destination
from syncer.delivery.apply import ApplyReport, RetryPolicy, apply_sync, remember_wait, send_and_commit
from syncer.delivery.engine_planning import PlanningSteps
from syncer.delivery.settle import settle_intents
from syncer.errors import (
    ConfigError,
    StalePlanError,  # noqa: F401  (still importable from here)
    StateFileError,
    SyncError,
    TransientError,
)
from syncer.ledger.failures import failure_fields, scrub_detail, secret_env_names
from syncer.ledger.leases import Lease, LeaseKeeper, ttl_from_env
from syncer.ledger.match_rates import record_job as record_job_match
from syncer.ledger.match_rates import record_run as record_match
from syncer.ledger.store import HeldRow, Ledger
from syncer.ledger.warehouse_costs import WarehouseCosts, record_warehouse_costs
from syncer.planning.gates import GateResult, check_gates, held_reason
from syncer.planning.plan import Plan, SyncPlan
from syncer.planning.snapshot import refresh_snapshot
from syncer.project.project import Project

log = logging.getLogger(__name__)
_ERROR_COLUMNS = ("error_class", "error_fault", "error_detail")


@dataclass
class SyncReport(ApplyReport):
    """What happened to one sync in a run: the apply figures plus the plan and gates around them."""

    sync: str = ""
    members: int = 0
    duration: float = 0.0
    plan_hash: str = ""
    reason: str | None = None  # held reason, error, or "approved: ..." (the operator's words)
    gates: list[GateResult] = field(default_factory=list)
    plan_seconds: float = 0.0
    retained: dict[str, int] = field(default_factory=dict)  # leavers kept (one person with a stayer), by reason
    settled: int = 0  # rows of batches an interrupted run left unrecorded, sent again first (syncer.delivery.settle)
    no_consent: int = 0  # segment members left out: their consent on the sync's channel does not let it send
    match: dict = field(default_factory=dict)  # readiness and the platform's match figures (syncer.ledger.match_rates)
    warehouse: dict = field(default_factory=dict)  # what planning cost in the warehouse (syncer.ledger.warehouse_costs)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["gates"] = [asdict(g) for g in self.gates]
        return data


class Engine(PlanningSteps):
    def __init__(self, project: Project, *, ledger: Ledger | None = None, policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 lease_ttl: float | None = None, lease_wait: float = 0.0) -> None:
        """``lease_ttl``: seconds a sync's lease outlives its last renewal (default ``$SYNCER_LEASE_TTL_S``, else
        ``lease_ttl_seconds`` in syncer.yml, 60 unless set); ``lease_wait``: seconds to wait for a sync another process holds before skipping it as busy."""
        self.project = project
        self.ledger = ledger or Ledger(project.ledger_url())
        self.policy = policy
        self.sleep = sleep
        self.clock = clock  # what "now" is for the platforms' waits and the leases (a fake clock in tests)
        self.lease_wait = lease_wait
        self.leases = LeaseKeeper(self.ledger, ttl=lease_ttl or ttl_from_env(project.config.lease_ttl_seconds),
                                  clock=lambda: self.clock())
        self.lease_label: str | None = None  # who holds this engine's leases, for others' busy messages ("Dagster run 1a2b")
        self._destinations: dict[str, Destination] = {}
        self.gate_check: Callable[[SyncPlan], list[GateResult]] = (
            lambda plan: check_gates(plan, self.project.gates_for(plan.sync)))  # the real-time path counts its own

    def close(self) -> None:
        self.leases.close()
        for destination in self._destinations.values():
            destination.close()
        self._destinations.clear()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, text: str | None) -> str | None:
        """An error's detail without PII and without the value of any secret this project's destinations name."""
        return scrub_detail(text, env_names=secret_env_names(self.project.destinations.values()))

    def destination(self, name: str) -> Destination:
        if name not in self._destinations:
            destination = build_destination(name, self.project.destinations[name])
            destination.id_cache = self.ledger.id_cache(name)
            destination.job_book = self.ledger.job_book(name)
            self._destinations[name] = destination
        return self._destinations[name]

    def _select(self, syncs: Iterable[str] | None) -> list[str]:
        names = list(syncs) if syncs else sorted(self.project.syncs)
        unknown = [n for n in names if n not in self.project.syncs]
        if unknown:
            raise ConfigError(f"unknown sync(s): {', '.join(unknown)}; known: {', '.join(sorted(self.project.syncs))}")
        return names

    def _send_plan(self, plan: SyncPlan, sync_run_id: int,
                   on_batch: Callable[[str, str, int], None] | None) -> ApplyReport:
        try:
            destination = self.destination(plan.destination)
            if destination.capabilities.at_most_once and (plan.adds or plan.removes):
                self.check_known_ledger()
            created = not plan.audience_id
            if not self.waiting(plan.destination):
                self._ensure_audience(plan)
            jobs_before = len(destination.jobs) if isinstance(destination, RunsJobs) else 0
            result = apply_sync(plan, destination, self.ledger, sync_run_id=sync_run_id, policy=self.policy,
                                sleep=self.sleep, on_batch=(lambda op, n: on_batch(plan.sync, op, n)) if on_batch else None,
                                scrub=self.scrub, clock=self.clock,
                                still_in_segment=self._members_now(plan.sync) if plan.mode == "trigger" else None)
        except SyncError as exc:
            remember_wait(self.ledger, plan.destination, exc, now=self.clock())
            return ApplyReport(status="failed", error=exc.message, **failure_fields(exc, self.scrub))
        if created and plan.audience_id:
            result.created_audience = plan.audience_id
            log.info("sync %s: created audience %s on %s", plan.sync, plan.audience_id, plan.destination)
        if isinstance(destination, RunsJobs):
            self.ledger.record_jobs(plan.destination, plan.sync, destination.jobs[jobs_before:])
        if (result.added or result.removed) and isinstance(destination, HasPlatformCounts) and not self.waiting(plan.destination):
            try:  # the platform's own view of the audience size, after a change only
                result.platform_counts.update(destination.audience_counts(AudienceRef(plan.sync, plan.audience_id)))
            except SyncError as exc:
                remember_wait(self.ledger, plan.destination, exc, now=self.clock())
                result.platform_counts["audience_counts_unavailable"] = 1
        return result

    def _while_held(self, plan: SyncPlan, sync_run_id: int, on_batch: Callable[[str, str, int], None] | None,
                    late: ApplyReport) -> Callable[[str, str, int], None]:
        """What runs after each batch of a sync applied under its lease: remove members converted since the plan,
        call the caller's ``on_batch``, and renew the lease before each send (a lease another process took
        over stops the sync there: ``LeaseLostError``)."""
        seen: set[str] = set()

        def after_batch(sync: str, op: str, rows: int) -> None:
            self.leases.renew(sync)
            self._remove_late_suppressions(plan, sync_run_id, late, seen)
            if on_batch is not None:
                on_batch(sync, op, rows)
            self.leases.renew(sync)

        return after_batch

    def _remove_late_suppressions(self, plan: SyncPlan, sync_run_id: int, late: ApplyReport, seen: set[str]) -> None:
        """Remove, now, members the sync holds that were suppressed since its plan was made. The fast path waits
        while another process holds a sync's lease; without this, a conversion during a long apply would stay
        on the platform until that apply ends. Whatever is not removed here the fast path retries after."""
        destination = self.destination(plan.destination)
        if not destination.capabilities.can_remove or self.waiting(plan.destination):
            return
        keys = sorted(self.ledger.suppressed_since(plan.planned_at, plan.segment) - seen)
        if not keys:
            return
        seen.update(keys)
        linked = destination.capabilities.match_keys  # one person with a member who stays: the fast path keeps them
        rows = [row for key, row in sorted(self.ledger.held_rows(plan.sync, keys).items())
                if not (linked and self.ledger.linked_stayers(plan.sync, key))]
        removed: set[str] = set()
        try:
            for start in range(0, len(rows), destination.capabilities.max_batch):
                batch = rows[start:start + destination.capabilities.max_batch]
                failed = send_and_commit(destination, self.ledger, sync=plan.sync, sync_run_id=sync_run_id,
                                         audience=AudienceRef(plan.sync, plan.audience_id), op="remove", rows=batch,
                                         policy=RetryPolicy(attempts=1), report=late, sleep=self.sleep, fast_path=True)
                removed |= {r.member_key for r in batch} - {key for key, _, _ in failed}
        except SyncError as exc:
            remember_wait(self.ledger, plan.destination, exc, now=self.clock())
        for conversion_id, key, sync, converted_at in self.ledger.pending_suppressions():
            if sync == plan.sync and key in removed:  # the fast path's waiting events: done, and how fast
                self.ledger.record_suppression_event(conversion_id=conversion_id, member_key=key, sync=sync,
                                                     converted_at=converted_at, outcome="removed")

    @property
    def ledger_identity_file(self) -> Path:
        return self.project.state_dir / "ledger.identity"

    def check_known_ledger(self) -> None:
        """Refuse to text from a ledger this project has not sent from before (deleted, replaced, restored
        from last week): it does not know who was texted, so everyone it does not hold would be texted
        again. The first ledger a project uses is remembered; ``syncer ledger adopt`` accepts another."""
        current = self.ledger.identity()
        path = self.ledger_identity_file
        remembered = path.read_text().strip() if path.exists() else None
        if remembered is None:
            self.adopt_ledger()
        elif remembered != current:
            raise ConfigError(
                f"the ledger at {self.ledger.url} is not the one this project last sent texts from ({path} names"
                f" ledger {remembered[:8]}, this is {current[:8]}): a new or replaced ledger does not know who was"
                " texted, so texting from it could text people again. Restore the ledger from a backup, or, to"
                " send from this one anyway, run `syncer ledger adopt`")

    def adopt_ledger(self) -> str:
        """Remember the current ledger as the one this project sends from; returns its identity."""
        current = self.ledger.identity()
        self.ledger_identity_file.parent.mkdir(parents=True, exist_ok=True)
        self.ledger_identity_file.write_text(current + "\n")
        return current

    def settle(self, sync_names: Iterable[str]) -> dict[str, SyncReport]:
        """Settle (``syncer.delivery.settle``) the batches interrupted processes left unrecorded for these
        syncs, whose leases this engine holds: one ``settle`` run in history when there were any. Returns
        a report per sync that had any; one whose status is not ``ok`` says why it could not be settled:
        nothing else may be sent for that sync before it is."""
        # while a platform's wait lasts apply sends nothing (it defers every row): settling waits with it
        names = [name for name in sync_names if self.ledger.has_open_intents(name)
                 and not self.waiting(self.project.syncs[name].destination)]
        if not names:
            return {}
        run_id = self.ledger.start_run("settle")
        reports = {name: self._settle_one(run_id, name) for name in names}
        self.ledger.finish_run(run_id, "failed" if any(r.status != "ok" for r in reports.values()) else "ok")
        return reports

    def _settle_one(self, run_id: int, name: str) -> SyncReport:
        sync = self.project.syncs[name]
        report = SyncReport(sync=name, status="ok")
        sync_run_id = self.ledger.start_sync_run(run_id, name, plan_hash=None, members=None)
        try:
            destination = self.destination(sync.destination)
            jobs_before = len(destination.jobs) if isinstance(destination, RunsJobs) else 0
            settled = settle_intents(destination, self.ledger, sync=name, segment=sync.segment,
                                     audience=AudienceRef(name, sync.audience_id or self._created_audience(name) or ""),
                                     sync_run_id=sync_run_id, policy=self.policy, report=report, sleep=self.sleep,
                                     now=self.clock())
            if isinstance(destination, RunsJobs):
                self.ledger.record_jobs(sync.destination, name, destination.jobs[jobs_before:])
        except SyncError as exc:
            remember_wait(self.ledger, sync.destination, exc, now=self.clock())
            report.status = "partial" if isinstance(exc, TransientError) else "failed"
            report.reason = (f"a batch an interrupted run sent and never recorded could not be sent again ({exc.message});"
                             " nothing more is sent for this sync until it is: run again later")
            for field_name, value in failure_fields(exc, self.scrub).items():
                setattr(report, field_name, value)
        else:
            report.reason = settled.summary()
            log.info("sync %s: %s", name, report.reason)
        self.ledger.finish_sync_run(sync_run_id, status=report.status, reason=report.reason, added=report.added,
                                    removed=report.removed, requests=report.requests, **_error_columns(report))
        return report

    def waiting(self, destination: str) -> bool:
        """Whether ``destination`` asked us to wait and the wait still lasts (``syncer.ledger.links``)."""
        return self.ledger.wait_for(destination, now=self.clock()) is not None

    def _created_audience(self, sync_name: str) -> str | None:
        sync = self.project.syncs[sync_name]
        return self.ledger.id_cache(f"{sync.destination}#audiences").get_many([sync_name]).get(sync_name)

    def _ensure_audience(self, plan: SyncPlan) -> None:
        """A sync with ``create_audience`` gets its audience on the first apply; the id is kept in the ledger."""
        if plan.audience_id:
            return
        spec = self.project.syncs[plan.sync].create_audience
        destination = self.destination(plan.destination)
        if spec is None or not isinstance(destination, CreatesAudiences):
            raise ConfigError(f"sync '{plan.sync}': destination '{plan.destination}' cannot create audiences; set audience_id")
        plan.audience_id = destination.create_audience(spec.name, spec.description)
        self.ledger.id_cache(f"{plan.destination}#audiences").put_many({plan.sync: plan.audience_id})

    def poll_jobs(self) -> int:
        """Ask platforms about jobs they run later (Google Customer Match); never waits. Returns how many
        reached a final status."""
        finished = 0
        for name, jobs in self.ledger.open_jobs().items():
            if name not in self.project.destinations:
                continue
            destination = self.destination(name)
            if not isinstance(destination, RunsJobs) or self.waiting(name):
                continue
            try:
                statuses = destination.poll_jobs(jobs)
            except SyncError as exc:
                remember_wait(self.ledger, name, exc, now=self.clock())
                self.ledger.note_unanswered(jobs, self.scrub(exc.message) or type(exc).__name__)  # `syncer jobs` says why
                continue  # the next run asks again
            final = destination.final_statuses
            for job, status in statuses.items():
                done = status.get("status") in final
                finished += done
                self.ledger.update_job(job, status=status.get("status", "UNKNOWN"), failure_reason=status.get("failure_reason"),
                                       match_rate_range=status.get("match_rate_range"), final=done)
                if done:
                    record_job_match(self.ledger, job, status.get("match_rate_range"))
        return finished

    def replace(self, sync_name: str) -> SyncReport:
        """Full replace of one audience with the segment, for connectors that offer ``replace``
        (Meta usersreplace): members the platform holds that we never sent are dropped too. Planned and sent
        under the sync's lease; ``busy`` when another process holds it."""
        with self.leases.hold([sync_name], self.lease_label or "syncer replace", wait=self.lease_wait,
                              sleep=self.sleep) as holding:
            if sync_name in holding.busy:
                run_id = self.ledger.start_run("replace")
                report = self._busy(run_id, sync_name, 0, holding.busy[sync_name])
                self.ledger.finish_run(run_id, "busy")
                return report
            settled = self.settle([sync_name]).get(sync_name)  # a batch left in flight would be sent after the replace
            if settled is not None and settled.status != "ok":
                return settled
            return _with_settled(self._replace(sync_name), settled)

    def _replace(self, sync_name: str) -> SyncReport:
        plan = self.build_plan([sync_name], resend_all=True)
        if sync_name in plan.failed:  # its segment could not be read: recorded as a run records it, nothing sent
            run_id = self.ledger.start_run("replace")
            report = self._not_planned(run_id, sync_name, plan.failed[sync_name])
            self.ledger.finish_run(run_id, "failed")
            return report
        sync_plan = plan.syncs[0]
        destination = self.destination(sync_plan.destination)
        if not isinstance(destination, ReplacesAudiences):
            raise ConfigError(f"destination '{sync_plan.destination}' ({destination.kind}) has no full replace; use mode resend")
        started = time.perf_counter()
        run_id = self.ledger.start_run("replace")
        self.leases.note_run(run_id)
        sync_run_id = self.ledger.start_sync_run(run_id, sync_name, plan_hash=sync_plan.content_hash, members=sync_plan.members)
        report = SyncReport(sync=sync_name, status="ok", members=sync_plan.members, plan_hash=sync_plan.content_hash)
        try:
            result = destination.replace(AudienceRef(sync_name, sync_plan.audience_id),
                                         [Member(r.member_key, r.identifiers) for r in sync_plan.adds])
        except SyncError as exc:
            report.status, report.reason = "failed", exc.message
            for name, value in failure_fields(exc, self.scrub).items():
                setattr(report, name, value)
        else:
            sent = {o.member_key for o in result.outcomes if o.status is RowStatus.SENT}
            keys, _ = self.ledger.held_fingerprints(sync_name)
            self.ledger.forget_held(sync_name, keys)
            self.ledger.commit_batch(sync=sync_name, sync_run_id=sync_run_id, op="add", rows=len(sync_plan.adds),
                                     attempts=1, platform_counts=dict(result.platform_counts),
                                     landed=[HeldRow(r.member_key, r.raw_fp, r.identifiers) for r in sync_plan.adds if r.member_key in sent],
                                     failed=[(o.member_key, o.status.value, o.reason or "unknown") for o in result.outcomes if o.status is not RowStatus.SENT])
            report.added, report.removed = len(sent), len(keys)
            report.requests, report.platform_counts = result.requests, dict(result.platform_counts)
        report.duration = round(time.perf_counter() - started, 3)
        report.match = record_match(self.ledger, sync_name, sync_run_id, report.platform_counts)
        self.ledger.finish_sync_run(sync_run_id, status=report.status, reason=report.reason, added=report.added,
                                    removed=report.removed, requests=report.requests, **_error_columns(report))
        self.ledger.finish_run(run_id, report.status)
        _log_failure(report)
        return report

    def check_fresh(self, plan: Plan) -> None:
        if plan.project_fingerprint != self.project.fingerprint():
            raise StalePlanError("the project's config files changed since this plan was made; run `syncer plan` again")
        for sync_plan in plan.syncs:
            age = self.clock() - (sync_plan.planned_at or plan.created_at)
            limit = self.project.syncs[sync_plan.sync].max_plan_age_minutes
            if age > limit * 60:
                raise StalePlanError(
                    f"sync '{sync_plan.sync}': this plan was made {age / 60:.0f} min ago and plans expire after {limit:g} min"
                    " (max_plan_age_minutes): its segment has moved on since; run `syncer plan` again")
            now = self.ledger.batch_version(sync_plan.sync)
            if now != sync_plan.base_version:
                raise StalePlanError(
                    f"sync '{sync_plan.sync}' changed since this plan was made (ledger version {sync_plan.base_version} -> {now});"
                    " run `syncer plan` again")

    def apply_plan(self, plan: Plan, *, approve: bool = False, command: str = "apply",
                   on_batch: Callable[[str, str, int], None] | None = None,
                   replan: Callable[[list[str]], Plan] | None = None) -> list[SyncReport]:
        """Gate and apply each sync of the plan under its lease; a held, failed or busy sync does not stop the others.

        A sync another process holds is skipped (status ``busy``, the reason naming the holder). A sync whose
        lease this run got only after another run changed it is stale: ``replan`` plans it again under the
        lease (default for ``command="run"``, which plans and applies at once: ``build_plan``); without it the
        plan is refused (``StalePlanError``) before anything is sent, as a stale saved plan always was.
        """
        if replan is None and command == "run":
            replan = self.build_plan
        with self.leases.hold([p.sync for p in plan.syncs], self.lease_label or f"syncer {command}",
                              wait=self.lease_wait, sleep=self.sleep) as holding:
            settled = self.settle(holding.held)  # before the plans are checked: settling changes the ledger
            unsettled = {sync: report for sync, report in settled.items() if report.status != "ok"}
            held = {sync: lease for sync, lease in holding.held.items() if sync not in unsettled}
            plan = self._fresh_under_leases(plan, held, replan)
            run_id = self.ledger.start_run(command)
            self.leases.note_run(run_id)
            try:
                reports = [self._not_planned(run_id, sync, reason) for sync, reason in plan.failed.items()]
                reports += [self._busy(run_id, p.sync, p.members, holding.busy[p.sync]) if p.sync in holding.busy else
                           unsettled[p.sync] if p.sync in unsettled else
                           _with_settled(self._apply_held(run_id, p, approve, on_batch), settled.get(p.sync))
                           for p in plan.syncs]
            except BaseException:  # a fault no sync survives (the ledger, the disk, Ctrl-C): never leave the run "running"
                with suppress(Exception):
                    self.ledger.finish_run(run_id, "failed")
                raise
        statuses = {r.status for r in reports}
        self.ledger.finish_run(run_id, next((s for s in ("failed", "held", "partial", "busy") if s in statuses), "ok"))
        return reports

    def _fresh_under_leases(self, plan: Plan, held: dict[str, Lease], replan: Callable[[list[str]], Plan] | None) -> Plan:
        """The plan with its held syncs checked (``check_fresh``) now that no other process can change them;
        with ``replan``, those another run changed since are planned again first. Busy syncs are not checked:
        nothing is sent for them."""
        stale = [p.sync for p in plan.syncs if p.sync in held and self.ledger.batch_version(p.sync) != p.base_version]
        if stale and replan is not None:
            fresh = {p.sync: p for p in replan(stale).syncs}
            plan = _but(plan, syncs=[fresh.get(p.sync, p) for p in plan.syncs])
        self.check_fresh(_but(plan, syncs=[p for p in plan.syncs if p.sync in held]))
        return plan

    def _not_planned(self, run_id: int, sync: str, reason: str) -> SyncReport:
        """A sync whose plan could not be made (``Plan.failed``): recorded as failed; nothing was sent."""
        report = SyncReport(sync=sync, status="failed", reason=reason, error=reason, error_class="ConfigError",
                            error_fault="operator")
        sync_run_id = self.ledger.start_sync_run(run_id, sync, plan_hash=None, members=None)
        self.ledger.finish_sync_run(sync_run_id, status="failed", reason=reason, **_error_columns(report))
        return report

    def _busy(self, run_id: int, sync: str, members: int, lease: Lease) -> SyncReport:
        """A sync another process holds: nothing sent; recorded and reported as ``busy``, naming the holder."""
        then = "skipped, nothing was sent for it: that run applies it, run again once it ends"
        if self.lease_wait:
            then = f"skipped after waiting {self.lease_wait:g} s, nothing was sent for it: run again once it ends"
        report = SyncReport(sync=sync, status="busy", members=members, reason=self.leases.busy_reason(lease, then=then))
        sync_run_id = self.ledger.start_sync_run(run_id, sync, plan_hash=None, members=members)
        self.ledger.finish_sync_run(sync_run_id, status="busy", reason=report.reason)
        log.info("sync %s skipped: %s", sync, report.reason)
        return report

    def _apply_held(self, run_id: int, plan: SyncPlan, approve: bool,
                    on_batch: Callable[[str, str, int], None] | None) -> SyncReport:
        """``_apply_one`` of a sync whose lease this engine holds, released as soon as it is done."""
        try:
            return self._apply_one(run_id, plan, approve, on_batch)
        finally:
            self.leases.release(plan.sync)

    def run(self, syncs: Iterable[str] | None = None, *, approve: bool = False,
            on_batch: Callable[[str, str, int], None] | None = None) -> list[SyncReport]:
        return self.apply_plan(self.build_plan(syncs), approve=approve, command="run", on_batch=on_batch)

    def _apply_one(self, run_id: int, plan: SyncPlan, approve: bool,
                   on_batch: Callable[[str, str, int], None] | None) -> SyncReport:
        started = time.perf_counter()
        plan_hash = plan.content_hash  # hashing every row is not free: once
        report = SyncReport(sync=plan.sync, status="ok", members=plan.members, plan_hash=plan_hash,
                            retried=plan.retried, plan_seconds=plan.stats.get("plan_seconds", 0.0))
        report.retained = dict(plan.stats.get("retained", {}))
        report.no_consent = int(plan.stats.get("no_consent", 0))
        report.warehouse = dict(plan.stats.get("warehouse") or {})
        sync_run_id = self.ledger.start_sync_run(run_id, plan.sync, plan_hash=plan_hash, members=plan.members)
        try:
            return self._gate_and_send(plan, approve, on_batch, report, sync_run_id, started)
        except BaseException as exc:
            with suppress(Exception):
                self.ledger.finish_sync_run(sync_run_id, status="failed", reason=getattr(exc, "message", None) or type(exc).__name__,
                                            **failure_fields(exc, self.scrub))
            raise

    def _gate_and_send(self, plan: SyncPlan, approve: bool, on_batch: Callable[[str, str, int], None] | None,
                       report: SyncReport, sync_run_id: int, started: float) -> SyncReport:
        report.gates = self.gate_check(plan)
        reason = held_reason(report.gates)
        if reason and not approve:
            report.status, report.reason = "held", reason
            report.rejected = len(plan.rejections)
        else:
            late = ApplyReport()  # removes of members converted while this sync was applied
            result = self._send_plan(plan, sync_run_id, self._while_held(plan, sync_run_id, on_batch, late))
            _copy(result, report)
            report.removed, report.requests = report.removed + late.removed, report.requests + late.requests
            if report.added + report.removed > 0.1 * max(plan.held_before, plan.members, 1):
                # a large change (an initial sync): catch the snapshot up now rather than in the next plan
                try:
                    if self.project.config.diff_mode == "warehouse":
                        with self._warehouse() as warehouse:
                            warehouse.catch_up(self.ledger, plan.sync)
                            report.warehouse = WarehouseCosts.from_dict(report.warehouse).merge(warehouse.take_costs()).as_dict()
                    else:
                        refresh_snapshot(self.ledger, plan.sync, self.project.state_dir / "snapshots",
                                         memory_limit=self.project.config.memory_limit)
                except StateFileError as exc:  # everything was sent and recorded; the disk refused the cache
                    report.status, report.error, report.reason = "failed", exc.message, exc.message
                    for name, value in failure_fields(exc, self.scrub).items():
                        setattr(report, name, value)
            if reason:
                # who let it through, where the engine knows (a Dagster run and its job; the CLI's --approve)
                report.reason = f"approved{f' by {self.lease_label}' if self.lease_label else ''}: {reason}"
        report.duration = round(time.perf_counter() - started, 3)
        report.match = record_match(self.ledger, plan.sync, sync_run_id, report.platform_counts)
        record_warehouse_costs(self.ledger, sync_run_id=sync_run_id, sync=plan.sync, costs=report.warehouse)
        self.ledger.finish_sync_run(
            sync_run_id, status=report.status, reason=report.reason, added=report.added, removed=report.removed,
            rejected=report.rejected, retried=report.retried, deferred=report.deferred, requests=report.requests,
            details={"reasons": report.reasons, "deferred_reasons": report.deferred_reasons, "platform_counts": report.platform_counts, "stats": plan.stats,
                     "gates": [asdict(g) for g in report.gates]}, **_error_columns(report))
        _log_failure(report)
        return report


def _copy(result: ApplyReport, report: SyncReport) -> None:
    for figure in fields(ApplyReport):
        setattr(report, figure.name, getattr(result, figure.name))
    report.reason = result.error


def _with_settled(report: SyncReport, settled: SyncReport | None) -> SyncReport:
    """The report of a sync's apply counting what settling its interrupted batches sent just before (a
    ``settle`` run of its own in history): the operator sees one figure of what this command sent."""
    if settled is not None:
        report.added, report.removed = report.added + settled.added, report.removed + settled.removed
        report.requests += settled.requests
        report.settled = settled.added + settled.removed
    return report


def _error_columns(report: SyncReport) -> dict[str, str | None]:
    """The ledger's error columns of a report; empty when nothing failed (the columns stay NULL)."""
    return {name: getattr(report, name) for name in _ERROR_COLUMNS} if report.error_class else {}


def _log_failure(report: SyncReport) -> None:
    """Log a failed (WARNING) or cut-short (INFO) sync: the operator's message, then the error's class, fault
    and detail, already scrubbed of PII and secrets."""
    if report.status not in ("failed", "partial"):
        return
    log.log(logging.WARNING if report.status == "failed" else logging.INFO,
            "sync %s %s: %s [%s, fault: %s] detail: %s", report.sync, report.status, report.error or report.reason,
            report.error_class or "-", report.error_fault or "-", report.error_detail or "-")
