"""Reconcile on its own schedule: read each audience back and set right what drifted (`syncer reconcile`).

One job, ``reconcile_audiences``, with one op that reconciles the chosen syncs (default: all). Each sync's
figures land on its sync asset as an observation (held, on the platform, missing, extra, changed, re-added,
removed, the size check), so the asset's page shows the last reconcile beside its last sync; the op's own
metadata sums them up. The schedule runs it nightly, off the hour the segment schedules use, and starts
stopped like every schedule here. A run tagged ``syncer/approve`` (``true`` or sync names) lets a removal
of extras through a tripped gate; a read or repair that fails fails the run, after every sync's figures
were recorded.
"""

import dagster as dg

from dagster_project import location
from dagster_project.syncs import lease_label, sync_key
from syncer.delivery.engine import Engine
from syncer.delivery.reconcile import Reconciler, ReconcileReport
from syncer.project.project import Project, load_project

JOB = "reconcile_audiences"
_FIGURES = ("held", "listed", "missing", "extra", "changed", "readded", "removed", "rejected", "requests")


class ReconcileConfig(dg.Config):
    syncs: list[str] = []
    """Only these syncs; empty: every sync of the project."""
    dry_run: bool = False
    """Read and compare only; send nothing."""


def reconcile_metadata(report: ReconcileReport) -> dict[str, dg.MetadataValue]:
    """A reconcile's figures as Dagster metadata: counts, member keys and the size check, never identifiers."""
    metadata: dict[str, dg.MetadataValue] = {
        "reconcile_status": dg.MetadataValue.text(report.status), "read": dg.MetadataValue.text(report.method),
        **{name: dg.MetadataValue.int(getattr(report, name) or 0) for name in _FIGURES},
        "duration_seconds": dg.MetadataValue.float(report.duration)}
    if report.left:
        metadata["not_repaired"] = dg.MetadataValue.json(report.left)
    if report.samples:
        metadata["sample_member_keys"] = dg.MetadataValue.json(report.samples)
    if report.size:
        metadata["size_check"] = dg.MetadataValue.json({k: report.size.get(k) for k in ("verdict", "platform", "expected", "note")})
    if report.reason:
        metadata["note"] = dg.MetadataValue.text(report.reason)
    if report.error_class:
        metadata["error_class"] = dg.MetadataValue.text(report.error_class)
        metadata["error_detail"] = dg.MetadataValue.text(report.error_detail or "no detail")
    return metadata


def reconcile_job(project: Project) -> dg.JobDefinition:
    @dg.op(name="reconcile", description="Read each audience back from its platform, compare with the ledger, repair")
    def reconcile_op(context: dg.OpExecutionContext, config: ReconcileConfig):
        proj = load_project(project.root)
        with Engine(proj) as eng:
            eng.lease_label = lease_label(context)  # a sync another process holds is reported busy, not repaired
            reconciler = Reconciler(eng, approve=lambda name: location.approved(context.run.tags, name), dry_run=config.dry_run)
            reports = reconciler.run(config.syncs or None)
        for report in reports:  # yielded, not logged: the observations stand even when the run then fails
            context.log.info(f"{report.sync}: {report.status}; {report.reason or 'no note'}")
            yield dg.AssetObservation(asset_key=sync_key(report.destination, report.sync), metadata=reconcile_metadata(report))
        statuses = {s: sum(r.status == s for r in reports) for s in sorted({r.status for r in reports})}
        summary = {"syncs": len(reports), "statuses": dg.MetadataValue.json(statuses),
                   **{name: sum(getattr(r, name) or 0 for r in reports) for name in ("missing", "extra", "changed", "readded", "removed")}}
        failed = [r.sync for r in reports if r.status in ("failed", "partial")]
        if failed:
            raise dg.Failure(description=f"reconcile failed or was cut short for {', '.join(failed)}",
                             metadata={**summary, "failed": dg.MetadataValue.json(failed)})
        yield dg.Output(None, metadata=summary)

    @dg.job(name=JOB, description="Reconcile every audience with the ledger (`syncer reconcile`)",
            tags={"syncer/kind": "reconcile"})
    def reconcile_audiences() -> None:
        reconcile_op()

    return reconcile_audiences


def reconcile_schedule() -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(name=f"{JOB}_nightly", job_name=JOB, cron_schedule="41 4 * * *",
                                 default_status=dg.DefaultScheduleStatus.STOPPED)
