"""One asset per segment: run its query, keep the rows for the syncs downstream, report the figures."""

import json
import time

import dagster as dg

from dagster_project import location
from dagster_project.dbt_models import segment_deps
from syncer.delivery.engine import Engine
from syncer.project.config import SegmentConfig
from syncer.project.project import Project, load_project


def segment_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["segments", name])


def cron_for(cadence: str) -> str:
    """A segment's cadence as a cron expression."""
    cadence = cadence.strip()
    named = {"@hourly": "0 * * * *", "@daily": "0 3 * * *", "@weekly": "0 3 * * 1"}
    if cadence in named:
        return named[cadence]
    if cadence.startswith("every "):
        amount, unit = int(cadence[6:-1]), cadence[-1]
        return f"*/{amount} * * * *" if unit == "m" else f"0 */{amount} * * *"
    return cadence


def segment_asset(project: Project, name: str, segment: SegmentConfig) -> dg.AssetsDefinition:
    owners = segment.owners or project.config.owners

    @dg.asset(key=segment_key(name), group_name="segments", description=segment.description or f"Segment {name}",
              owners=owners or None, kinds={"dbt"} if segment.dbt else {"sql"}, deps=segment_deps(project, segment),
              metadata={"cadence": segment.cadence, "member_key": segment.member_key})
    def _segment(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        proj = load_project(project.root)
        started = time.perf_counter()
        with Engine(proj) as eng:
            data = eng.extract_segment(name, location.segment_file(proj, context.run.run_id, name))
        previous = _previous_rows(proj, name)
        _remember_rows(proj, name, data.rows)
        return dg.MaterializeResult(metadata={
            "members": data.rows,
            "change_vs_last_run": data.rows - previous if previous is not None else 0,
            "extract_seconds": round(time.perf_counter() - started, 3),
        })

    return _segment


def _counts_file(project: Project):
    return project.state_dir / "dagster" / "segment_rows.json"


def _previous_rows(project: Project, name: str) -> int | None:
    try:
        return json.loads(_counts_file(project).read_text()).get(name)
    except (OSError, ValueError):
        return None


def _remember_rows(project: Project, name: str, rows: int) -> None:
    path = _counts_file(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError):
        counts = {}
    counts[name] = rows
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(counts))
    tmp.replace(path)


def segment_schedule(name: str, segment: SegmentConfig) -> dg.ScheduleDefinition:
    job = dg.define_asset_job(f"refresh_{name}", selection=dg.AssetSelection.assets(segment_key(name)).downstream(),
                              description=f"Refresh segment {name} and every sync of it")
    return dg.ScheduleDefinition(name=f"{name}_schedule", job=job, cron_schedule=cron_for(segment.cadence),
                                 default_status=dg.DefaultScheduleStatus.STOPPED)
