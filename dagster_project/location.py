"""Where the Dagster code location finds its project, and how each asset gets an engine.

The project folder comes from ``$SYNCER_PROJECT`` (default: the demo in ``examples/demo``). Nothing is
read from the environment at import beyond that path: credentials are resolved by the connectors when
a run starts, so they never reach run config, tags or metadata.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncer.project.project import Project
from syncer.reporting import dagster_events

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
APPROVE_TAG = dagster_events.APPROVE_TAG  # "true" for every sync, or comma-separated sync names


def project_dir() -> Path:
    return Path(os.environ.get("SYNCER_PROJECT") or DEMO)


def segment_file(project: Project, run_id: str, segment: str) -> Path:
    return project.state_dir / "dagster" / run_id / "segments" / f"{segment}.parquet"


def approved(tags: dict[str, str], sync: str) -> bool:
    value = (tags.get(APPROVE_TAG) or "").strip()
    return value.lower() == "true" or sync in {v.strip() for v in value.split(",")}
