"""The Dagster code location: ``dagster dev -m dagster_project.definitions``.

Built from the project's config files (``$SYNCER_PROJECT``, default the demo): an asset per segment, a
plan and a sync asset per sync (one step) grouped per destination, gate checks, an approve job per sync,
freshness checks, a schedule per segment cadence, the ``full_resync`` backfill job, the
``reconcile_audiences`` job and its schedule, the in-process executor, the fast-path suppression sensor
when the project has a ``conversions:`` source (the real-time sensor ``realtime_follow``, doing that too, when
it has `events:` or a segment with ``expires_at``), and the dbt models upstream of the segments that name them
when it has a ``dbt:`` block (``dagster_project.dbt_models``). A broken config file fails the load with
every problem listed by file and line.
"""

from pathlib import Path

import dagster as dg

from dagster_project import location
from dagster_project.backfill import backfill_job, poll_jobs_job
from dagster_project.dbt_models import dbt_definitions
from dagster_project.reconcile import reconcile_job, reconcile_schedule
from dagster_project.segments import segment_asset, segment_schedule
from dagster_project.sensors import follows_in_real_time, realtime_sensor, realtime_spec, suppression_sensor, suppressions_spec
from dagster_project.syncs import destination_definitions
from syncer.project.project import load_project


def build_definitions(project_dir: Path | str | None = None) -> dg.Definitions:
    project = load_project(project_dir or location.project_dir())
    segments = dg.Definitions(
        assets=[segment_asset(project, name, seg) for name, seg in sorted(project.segments.items())],
        schedules=[segment_schedule(name, seg) for name, seg in sorted(project.segments.items())],
        jobs=[backfill_job(project), poll_jobs_job(project), reconcile_job(project)],
    )
    jobs_schedule = dg.ScheduleDefinition(name="poll_platform_jobs_hourly", job_name="poll_platform_jobs",
                                          cron_schedule="17 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED)
    segments = dg.Definitions.merge(segments, dg.Definitions(schedules=[jobs_schedule, reconcile_schedule()]))
    per_destination = [destination_definitions(project, name) for name in sorted(project.destinations)]
    fast_path = (dg.Definitions(assets=[suppressions_spec()], sensors=[suppression_sensor(project)])
                 if project.config.conversions and not follows_in_real_time(project) else dg.Definitions())
    if follows_in_real_time(project):  # one worker for conversions, events and expiries
        fast_path = dg.Definitions(assets=[suppressions_spec(), realtime_spec()], sensors=[realtime_sensor(project)])
    # one process runs every step of a run: a step in a process of its own spends ~5 s starting it for
    # ~0.3 s of work (issue 15: 115 s for the demo against 4.5 s for `syncer run`); pools still apply
    executor = dg.Definitions(executor=dg.in_process_executor)
    return dg.Definitions.merge(segments, fast_path, executor, dbt_definitions(project), *per_destination)


defs = build_definitions()
