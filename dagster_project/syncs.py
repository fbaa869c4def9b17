"""Per destination: for each sync one step that plans, checks the gates and applies.

    segments/<segment>  ->  <destination>/<sync>_plan  ->  <destination>/<sync>  [checks: gates, recent_success]

The plan and the sync are two assets of one step (a ``multi_asset``), so a run pays Dagster's per-step
cost once per sync; the plan alone can still be materialized (``can_subset``). A tripped gate holds the
sync: nothing is sent, the sync's ``gates`` check warns with the figures, and the sync asset is materialized with
``status: held``, the reason and how to approve; the run succeeds, since a hold is an answer, not a crash.
Approving is one click: each sync has a job ``approve_<sync>`` that plans again and lets that plan
through (the run carries the tag ``syncer/approve=<sync>``, recorded in the ledger's history).

A failed sync fails the step; its failure metadata (and a partly applied sync's materialization) carries
``error_class``, ``error_fault`` and the platform's own words in ``error_detail``, scrubbed as the ledger
keeps them. Every sync step runs in the pool of its destination, so concurrent runs respect the
platform's rate limits.

The step sends under the sync's lease, as the CLI does (``syncer.ledger.leases``). While another process
holds it (a `syncer run`, another Dagster run), or when one applied the sync after this run's plan was
made, the sync asset is not materialized: the step succeeds, logs a warning, and records an observation
whose ``status`` (``busy`` or ``stale``) and ``note`` say who holds the sync since when. Nothing is sent.
"""

import time
from collections.abc import Iterator

import dagster as dg

from dagster_project import location
from dagster_project.segments import segment_key
from syncer.delivery.engine import Engine, SyncReport
from syncer.errors import StalePlanError
from syncer.planning.gates import check_gates, held_reason
from syncer.planning.plan import SyncPlan
from syncer.project.config import SyncConfig
from syncer.project.project import Project, load_project
from syncer.reporting import dagster_events as events


def plan_key(destination: str, sync: str) -> dg.AssetKey:
    return dg.AssetKey(events.plan_key(destination, sync))


def sync_key(destination: str, sync: str) -> dg.AssetKey:
    return dg.AssetKey(events.sync_key(destination, sync))


def pool_for(destination: str) -> str:
    return f"syncer_{destination}"


def destination_definitions(project: Project, destination: str) -> dg.Definitions:
    """All assets (with their checks) and approve jobs for the syncs of one destination."""
    assets, jobs = [], []
    for name, sync in sorted(project.syncs.items()):
        if sync.destination != destination:
            continue
        assets.append(_sync_step(project, name, sync))
        jobs.append(_approve_job(name, sync))
    return dg.Definitions(assets=assets, jobs=jobs)


def _approve_job(name: str, sync: SyncConfig):
    return dg.define_asset_job(
        events.approve_job_name(name), selection=dg.AssetSelection.assets(plan_key(sync.destination, name),
                                                                          sync_key(sync.destination, name)),
        tags={events.APPROVE_TAG: name},
        description=f"Approve sync {name}: plan it again and send that plan even if a gate holds it (one click:"
                    " Materialize all). Use it after reading why the last run held it.")


def _sync_step(project: Project, name: str, sync: SyncConfig) -> dg.AssetsDefinition:
    destination = project.destinations[sync.destination]
    owners = (sync.owners or project.config.owners) or None
    plan, target = plan_key(sync.destination, name), sync_key(sync.destination, name)

    @dg.multi_asset(
        name=f"{sync.destination}__{name}", pool=pool_for(sync.destination), can_subset=True,
        specs=[dg.AssetSpec(plan, deps=[segment_key(sync.segment)], group_name=sync.destination, owners=owners,
                            kinds={"plan"}, skippable=True,
                            description=f"Plan of sync {name}: the exact adds and removes for its audience"),
               dg.AssetSpec(target, deps=[plan], group_name=sync.destination, owners=owners, kinds={destination.type},
                            description=events.sync_description(project, name), skippable=True,
                            metadata={"audience_id": sync.audience_id or "", "mode": sync.mode})],
        # on the sync, not the plan: a held sync's own page and lineage node then show the warning
        check_specs=[dg.AssetCheckSpec("gates", asset=target,
                                       description="Zero-row guard, removal limits and minimum size; a failure holds the sync"),
                     dg.AssetCheckSpec("recent_success", asset=target,
                                       description=f"The sync succeeded within its segment's cadence"
                                                   f" ({project.segments[sync.segment].cadence}) plus one period of grace")])
    def _step(context: dg.AssetExecutionContext) -> Iterator:
        proj = load_project(project.root)
        segment_file = location.segment_file(proj, context.run.run_id, sync.segment)
        with Engine(proj) as eng:
            eng.lease_label = lease_label(context)
            made = eng.build_plan([name], segment_files={sync.segment: segment_file} if segment_file.exists() else None,
                                  resend_all=context.run.tags.get("syncer/resend_all") == "true")
            if name in made.failed:
                raise dg.Failure(description=f"sync {name} not planned: {made.failed[name]}")
            [p] = made.syncs
            if plan in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=plan, metadata=_plan_metadata(p))
            if target not in context.selected_asset_keys:
                return
            gates = check_gates(p, proj.gates_for(name))
            reason, approved = held_reason(gates), location.approved(context.run.tags, name)
            yield dg.AssetCheckResult(
                asset_key=target, check_name="gates", passed=not reason or approved, severity=dg.AssetCheckSeverity.WARN,
                description=(f"approved: {reason}" if approved else f"held: {reason}") if reason else "all gates passed",
                metadata={"gates": dg.MetadataValue.json([g.__dict__ for g in gates]), "approved": approved})
            if reason and not approved:
                yield dg.MaterializeResult(asset_key=target, metadata=_held(eng, p, gates, reason))
            else:
                yield from _apply(context, eng, made, name, target)
            if dg.AssetCheckKey(target, "recent_success") in context.selected_asset_check_keys:
                yield _freshness(eng, name, project.segments[sync.segment].cadence, target)

    return _step


def _plan_metadata(p: SyncPlan) -> dict:
    return {"members": p.members, "held_before": p.held_before, "adds": len(p.adds), "removes": len(p.removes),
            "rejected": len(p.rejections), "retries": p.retried, "plan_hash": p.content_hash,
            "no_consent": int(p.stats.get("no_consent", 0)), "retained": dg.MetadataValue.json(p.stats.get("retained", {})),
            "plan_seconds": p.stats.get("plan_seconds", 0.0)}


def _held(eng: Engine, p: SyncPlan, gates, reason: str) -> dict:
    """A held sync: recorded in the ledger's history as the CLI records it, and its figures for the asset."""
    run_id = eng.ledger.start_run("dagster")
    sync_run = eng.ledger.start_sync_run(run_id, p.sync, plan_hash=p.content_hash, members=p.members)
    eng.ledger.finish_sync_run(sync_run, status="held", reason=reason, rejected=len(p.rejections))
    eng.ledger.finish_run(run_id, "held")
    report = SyncReport(sync=p.sync, status="held", members=p.members, plan_hash=p.content_hash, reason=reason,
                        gates=gates, rejected=len(p.rejections), no_consent=int(p.stats.get("no_consent", 0)),
                        plan_seconds=p.stats.get("plan_seconds", 0.0))
    return events.sync_metadata(report, audience_size=eng.ledger.held_count(p.sync))


def _apply(context: dg.AssetExecutionContext, eng: Engine, made, name: str, target: dg.AssetKey) -> Iterator:
    try:
        [report] = eng.apply_plan(made, approve=True, command="dagster")  # the gates were checked above
    except StalePlanError as exc:  # e.g. another process applied the sync since this run planned it
        yield not_applied(context, target, name, "stale", exc.message)
        return
    if report.status == "busy":
        yield not_applied(context, target, name, "busy", report.reason or "busy")
        return
    if report.status == "failed":
        raise dg.Failure(description=f"sync {name} failed: {report.reason}",
                         metadata={"plan_hash": report.plan_hash, "added": report.added, "removed": report.removed,
                                   **error_metadata(report)})
    latencies = eng.ledger.suppression_latencies(time.time() - 86_400, sync=name)
    yield dg.MaterializeResult(asset_key=target, metadata=events.sync_metadata(
        report, audience_size=eng.ledger.held_count(name), latencies=latencies) | events.stream_metadata(eng.ledger, name))


def lease_label(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> str:
    """How this run is named in the lease it takes, so another process's busy message points at it."""
    return f"Dagster run {context.run.run_id[:8]} ({context.run.job_name})"


def not_applied(context: dg.OpExecutionContext | dg.AssetExecutionContext, key: dg.AssetKey, name: str, status: str,
                reason: str) -> dg.AssetObservation:
    """A sync this run did not apply (``busy``: another process holds it; ``stale``: its plan is overtaken): a
    warning in the log and an observation on the asset saying why; nothing was sent."""
    context.log.warning(f"sync {name} not applied ({status}): {reason}")
    return dg.AssetObservation(asset_key=key, metadata={"status": status, "note": reason})


def error_metadata(report) -> dict[str, dg.MetadataValue]:
    """The error that failed or cut short a sync, as the ledger keeps it: class, whose fault, and the platform's
    own words (scrubbed of PII and secrets by the engine). Empty when nothing failed."""
    if not report.error_class:
        return {}
    return {"error_class": dg.MetadataValue.text(report.error_class),
            "error_fault": dg.MetadataValue.text(report.error_fault or "caller"),
            "error_detail": dg.MetadataValue.text(report.error_detail or "no detail")}


def _freshness(eng: Engine, name: str, cadence: str, target: dg.AssetKey) -> dg.AssetCheckResult:
    """Whether the sync succeeded within its segment's cadence plus one period of grace, judged at the end of
    each of its steps: a sync held or failing for days says so on every run."""
    from dagster_project.segments import cron_for

    last = eng.ledger.last_success(name)
    allowed = 2 * _period_seconds(cron_for(cadence))
    age = None if last is None else time.time() - last
    passed = age is not None and age <= allowed
    return dg.AssetCheckResult(asset_key=target, check_name="recent_success", passed=passed,
                               severity=dg.AssetCheckSeverity.WARN, metadata={
        "last_success_age_seconds": round(age, 1) if age is not None else -1, "allowed_seconds": allowed},
        description="fresh" if passed else ("never succeeded" if age is None else f"last success {age / 60:.0f} min ago"))


def _period_seconds(cron: str) -> int:
    minute, hour, day, *_ = cron.split()
    if minute.startswith("*/"):
        return int(minute[2:]) * 60
    if hour.startswith("*/"):
        return int(hour[2:]) * 3600
    if hour == "*":
        return 3600
    return 86400 if day == "*" else 7 * 86400
