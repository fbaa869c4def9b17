"""Setting up the demo: a fresh sample warehouse, a fresh ledger, the sandbox emulators."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from syncer.project import Project, load_project

DEMO_TOKEN = "sandbox-meta-token"


def fresh_demo_project(project_dir: Path, *, customers: int, seed: int = 7) -> tuple[Project, dict[str, int]]:
    """Wipe the demo's state (ledger, sandbox state, plans) and write a new sample warehouse."""
    from syncer import sample_data

    os.environ.setdefault("SANDBOX_META_TOKEN", DEMO_TOKEN)
    project = load_project(project_dir)
    shutil.rmtree(project.state_dir, ignore_errors=True)
    (project.root / "events.db").unlink(missing_ok=True)
    project.state_dir.mkdir(parents=True, exist_ok=True)
    counts = sample_data.generate(project.warehouse_url().removeprefix("duckdb:///"), customers, seed=seed)
    return project, counts


def start_sandbox(project: Project | None, port: int, *, host: str = "127.0.0.1", state_file: Path | None = None):
    """Start the emulators on ``port`` with every audience the project's syncs name."""
    from syncer.sandbox import Sandbox

    os.environ.setdefault("SANDBOX_META_TOKEN", DEMO_TOKEN)
    if state_file is None and project is not None:
        state_file = project.state_dir / "sandbox.json"
    sandbox = Sandbox(host=host, port=port, meta_token=os.environ["SANDBOX_META_TOKEN"], state_file=state_file)
    sandbox.start()
    os.environ["SANDBOX_URL"] = sandbox.url
    known = {a["id"] for a in sandbox.meta.audiences()}
    for sync in (project.syncs.values() if project else ()):
        if project.destinations[sync.destination].type == "meta_audience" and sync.audience_id not in known:
            sandbox.meta.create_audience(sync.audience_id, name=sync.segment)
    return sandbox


def mutate_warehouse(project: Project, pct: float) -> dict[str, int]:
    from syncer import sample_data

    return sample_data.mutate(project.warehouse_url().removeprefix("duckdb:///"), pct)
