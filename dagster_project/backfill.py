"""Full resync on demand: resend every member a segment holds to the chosen syncs.

A partition per sync, so a backfill launched from the UI (or ``dagster job backfill``) can target a
subset. ``mode: resend`` plans every member as an add and still removes leavers; ``mode: replace`` uses
the platform's replace where the connector offers one (Meta ``usersreplace``), which also drops members
the platform holds that we never knew about.

A resync sends under the sync's lease: while another process holds it, the op succeeds without sending,
with a warning and ``status: busy`` naming the holder (launch the partition again once that run ends).
"""

import dagster as dg

from dagster_project import location
from dagster_project.syncs import lease_label
from syncer.delivery.engine import Engine
from syncer.project.project import Project, load_project


class ResyncConfig(dg.Config):
    mode: str = "resend"
    """resend: every member again as an add; replace: the platform's full replace where supported."""


def backfill_job(project: Project) -> dg.JobDefinition:
    partitions = dg.StaticPartitionsDefinition(sorted(project.syncs))

    @dg.op(description="Resend (or replace) the whole audience of one sync")
    def resync(context: dg.OpExecutionContext, config: ResyncConfig) -> None:
        name = context.partition_key
        proj = load_project(project.root)
        with Engine(proj) as eng:
            eng.lease_label = lease_label(context)
            if config.mode == "replace":
                report = eng.replace(name)
            else:  # a plan another process overtook while this one waited is made again, as a resend
                [report] = eng.apply_plan(eng.build_plan([name], resend_all=True), command="backfill",
                                          approve=location.approved(context.run.tags, name),
                                          replan=lambda names: eng.build_plan(names, resend_all=True))
        context.log.info(f"{name}: {report.status}, added {report.added}, removed {report.removed}")
        if report.status == "busy":
            context.log.warning(f"resync of {name} not sent: {report.reason}")
        if report.status in ("failed", "held"):
            raise dg.Failure(description=f"resync of {name} {report.status}: {report.reason}")
        context.add_output_metadata({"added": report.added, "removed": report.removed, "status": report.status,
                                     **({"note": report.reason} if report.reason else {})})

    @dg.job(name="full_resync", partitions_def=partitions,
            description="Full resync of the chosen syncs (a partition per sync)", tags={"syncer/kind": "backfill"})
    def full_resync() -> None:
        resync()

    return full_resync


def poll_jobs_job(project: Project) -> dg.JobDefinition:
    """Platforms that run uploads later (Google Customer Match) are asked for each job's status here,
    hourly, so no sync run ever waits for one; `syncer jobs` shows the same table."""

    @dg.op(name="poll_open_jobs", description="Poll platform jobs that have not reached a final status")
    def poll_open_jobs(context: dg.OpExecutionContext) -> None:
        with Engine(load_project(project.root)) as eng:
            finished = eng.poll_jobs()
            open_jobs = sum(len(v) for v in eng.ledger.open_jobs().values())
        context.add_output_metadata({"finished": finished, "still_running": open_jobs})

    @dg.job(name="poll_platform_jobs", description="Status and match-rate range of platform jobs (Google Customer Match)")
    def poll_job() -> None:
        poll_open_jobs()

    return poll_job
