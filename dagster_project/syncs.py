"""Per destination: for each sync a plan asset, a blocking gate check, and an apply asset.

    segments/<segment>  ->  <destination>/<sync>_plan  --[gates: blocking check]-->  <destination>/<sync>

A tripped gate fails the check, so Dagster does not materialize the apply asset in that run and the
destination receives nothing; the check's metadata says why. A failed sync fails the apply asset; its
failure metadata (and a partly applied sync's materialization) carries ``error_class``, ``error_fault``
and the platform's own words in ``error_detail``, scrubbed as the ledger keeps them. A run tagged ``syncer/approve`` (``true`` or
the sync's name) passes the check. Every sync asset runs in the pool of its destination, so concurrent
runs respect the platform's rate limits.

The apply asset sends under the sync's lease, as the CLI does (``syncer.ledger.leases``). While another
process holds it (a `syncer run`, another Dagster run), or when one applied the sync after this run's plan
was made, the asset is not materialized: the step succeeds, logs a warning, and records an observation
whose ``status`` (``busy`` or ``stale``) and ``note`` say who holds the sync since when. Nothing is sent; the
next materialization plans again.
"""

import time
from collections.abc import Iterator
from dataclasses import asdict

import dagster as dg

from dagster_project import location
from dagster_project.segments import segment_key
from syncer.delivery.engine import Engine
from syncer.errors import StalePlanError
from syncer.planning.gates import check_gates, held_reason
from syncer.planning.plan import load_plan, save_plan
from syncer.project.config import SyncConfig
from syncer.project.project import Project, load_project


def plan_key(destination: str, sync: str) -> dg.AssetKey:
    return dg.AssetKey([destination, f"{sync}_plan"])


def sync_key(destination: str, sync: str) -> dg.AssetKey:
    return dg.AssetKey([destination, sync])


def pool_for(destination: str) -> str:
    return f"syncer_{destination}"


def destination_definitions(project: Project, destination: str) -> dg.Definitions:
    """All assets and checks for the syncs of one destination."""
    assets, checks = [], []
    for name, sync in sorted(project.syncs.items()):
        if sync.destination != destination:
            continue
        assets += [_plan_asset(project, name, sync), _apply_asset(project, name, sync)]
        checks += [_gate_check(project, name, sync), _freshness_check(project, name, sync)]
    return dg.Definitions(assets=assets, asset_checks=checks)


def _plan_asset(project: Project, name: str, sync: SyncConfig) -> dg.AssetsDefinition:
    @dg.asset(key=plan_key(sync.destination, name), deps=[segment_key(sync.segment)], group_name=sync.destination,
              description=f"Plan of sync {name}: the exact adds and removes for audience {sync.audience_id}",
              owners=(sync.owners or project.config.owners) or None, kinds={"plan"}, pool=pool_for(sync.destination))
    def _plan(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        proj = load_project(project.root)
        segment_file = location.segment_file(proj, context.run.run_id, sync.segment)
        with Engine(proj) as eng:
            plan = eng.build_plan([name], segment_files={sync.segment: segment_file} if segment_file.exists() else None,
                                  resend_all=context.run.tags.get("syncer/resend_all") == "true")
        save_plan(plan, location.plan_dir(proj, context.run.run_id, name))
        [p] = plan.syncs
        return dg.MaterializeResult(metadata={
            "members": p.members, "held_before": p.held_before, "adds": len(p.adds), "removes": len(p.removes),
            "rejected": len(p.rejections), "retries": p.retried, "plan_hash": p.content_hash,
            "retained": dg.MetadataValue.json(p.stats.get("retained", {})),
            "plan_seconds": p.stats.get("plan_seconds", 0.0)})

    return _plan


def _saved_plan(project: Project, context, name: str):
    proj = load_project(project.root)
    folder = location.plan_dir(proj, context.run.run_id, name)
    return proj, load_plan(next(folder.iterdir()), spill_dir=proj.state_dir / "tmp")


def _gate_check(project: Project, name: str, sync: SyncConfig) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=plan_key(sync.destination, name), name="gates", blocking=True,
                    description="Zero-row guard, removal limits and minimum size; a failure holds the sync")
    def _gates(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        proj, plan = _saved_plan(project, context, name)
        [p] = plan.syncs
        results = check_gates(p, proj.gates_for(name))
        reason = held_reason(results)
        approved = location.approved(context.run.tags, name)
        metadata = {"gates": [asdict(r) for r in results], "approved": approved}
        if reason and not approved:
            with Engine(proj) as eng:  # the hold is history too, as `syncer history` shows it
                run_id = eng.ledger.start_run("dagster")
                sync_run = eng.ledger.start_sync_run(run_id, name, plan_hash=p.content_hash, members=p.members)
                eng.ledger.finish_sync_run(sync_run, status="held", reason=reason, rejected=len(p.rejections))
                eng.ledger.finish_run(run_id, "held")
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                       description=f"held: {reason}. Re-run with tag {location.APPROVE_TAG}={name} to let it through.",
                                       metadata={**metadata, "reason": reason})
        return dg.AssetCheckResult(passed=True, description=f"approved: {reason}" if reason else "all gates passed",
                                   metadata=metadata)

    return _gates


def _apply_asset(project: Project, name: str, sync: SyncConfig) -> dg.AssetsDefinition:
    destination = project.destinations[sync.destination]
    @dg.asset(key=sync_key(sync.destination, name), deps=[plan_key(sync.destination, name)], group_name=sync.destination,
              description=sync.description or f"Sync {name}: segment {sync.segment} -> {destination.type} audience {sync.audience_id}",
              owners=(sync.owners or project.config.owners) or None, kinds={destination.type},
              pool=pool_for(sync.destination), metadata={"audience_id": sync.audience_id, "mode": sync.mode},
              output_required=False)  # not materialized while another process holds the sync
    def _apply(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
        proj, plan = _saved_plan(project, context, name)
        started = time.perf_counter()
        with Engine(proj) as eng:
            eng.lease_label = lease_label(context)
            try:
                [report] = eng.apply_plan(plan, approve=True, command="dagster")  # the blocking gate check already ruled
            except StalePlanError as exc:  # e.g. another process applied the sync since this run planned it
                yield not_applied(context, name, "stale", exc.message)
                return
        if report.status == "busy":
            yield not_applied(context, name, "busy", report.reason or "busy")
            return
        if report.status == "failed":
            raise dg.Failure(description=f"sync {name} failed: {report.reason}",
                             metadata={"plan_hash": report.plan_hash, "added": report.added, "removed": report.removed,
                                       **error_metadata(report)})
        yield dg.MaterializeResult(metadata={
            "status": report.status, "members": report.members, "added": report.added, "removed": report.removed,
            "rejected": report.rejected, "rejected_reasons": dg.MetadataValue.json(report.reasons or {}),
            "retried": report.retried, "deferred": report.deferred, "requests": report.requests,
            "deferred_reasons": dg.MetadataValue.json(report.deferred_reasons or {}),
            "retained": dg.MetadataValue.json(report.retained or {}),
            "suppressed_since_plan": report.suppressed, "left_segment_since_plan": report.left_segment,
            "plan_hash": report.plan_hash, "duration_seconds": round(time.perf_counter() - started, 3),
            "destination_counts": dg.MetadataValue.json(report.platform_counts or {}),
            **({"note": report.reason} if report.reason else {}), **error_metadata(report)})

    return _apply


def lease_label(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> str:
    """How this run is named in the lease it takes, so another process's busy message points at it."""
    return f"Dagster run {context.run.run_id[:8]}"


def not_applied(context: dg.AssetExecutionContext, name: str, status: str, reason: str) -> dg.AssetObservation:
    """A sync this run did not apply (``busy``: another process holds it; ``stale``: its plan is overtaken): a
    warning in the log and an observation on the asset saying why; nothing was sent."""
    context.log.warning(f"sync {name} not applied ({status}): {reason}")
    return dg.AssetObservation(asset_key=context.asset_key, metadata={"status": status, "note": reason})


def error_metadata(report) -> dict[str, dg.MetadataValue]:
    """The error that failed or cut short a sync, as the ledger keeps it: class, whose fault, and the platform's
    own words (scrubbed of PII and secrets by the engine). Empty when nothing failed."""
    if not report.error_class:
        return {}
    return {"error_class": dg.MetadataValue.text(report.error_class),
            "error_fault": dg.MetadataValue.text(report.error_fault or "caller"),
            "error_detail": dg.MetadataValue.text(report.error_detail or "no detail")}


def _freshness_check(project: Project, name: str, sync: SyncConfig) -> dg.AssetChecksDefinition:
    from dagster_project.segments import cron_for

    cadence = project.segments[sync.segment].cadence

    @dg.asset_check(asset=sync_key(sync.destination, name), name="recent_success",
                    description=f"The sync succeeded within its segment's cadence ({cadence}) plus one period of grace")
    def _fresh(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        proj = load_project(project.root)
        with Engine(proj) as eng:
            last = eng.ledger.last_success(name)
        allowed = 2 * _period_seconds(cron_for(cadence))
        age = None if last is None else time.time() - last
        passed = age is not None and age <= allowed
        return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata={
            "last_success_age_seconds": round(age, 1) if age is not None else -1, "allowed_seconds": allowed},
            description="fresh" if passed else ("never succeeded" if age is None else f"last success {age / 60:.0f} min ago"))

    return _fresh


def _period_seconds(cron: str) -> int:
    minute, hour, day, *_ = cron.split()
    if minute.startswith("*/"):
        return int(minute[2:]) * 60
    if hour.startswith("*/"):
        return int(hour[2:]) * 3600
    if hour == "*":
        return 3600
    return 86400 if day == "*" else 7 * 86400
