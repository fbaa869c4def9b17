"""Setting up the demo: a fresh sample warehouse, a fresh ledger, the sandbox emulators."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from destinations.registry import SPECS
from syncer.project.project import Project, load_project

# the credentials the demo's destinations name, and the sandbox accepts
SANDBOX_SECRETS = {name: value for spec in SPECS.values() for name, value in spec.sandbox_secrets.items()}
DEMO_TOKEN = SANDBOX_SECRETS["SANDBOX_META_TOKEN"]


def use_sandbox_secrets() -> None:
    for name, value in SANDBOX_SECRETS.items():
        os.environ.setdefault(name, value)


def fresh_demo_project(project_dir: Path, *, customers: int, seed: int = 7) -> tuple[Project, dict[str, int]]:
    """Wipe the demo's state (ledger, sandbox state, plans) and write a new sample warehouse."""
    from syncer.demo import sample_data

    use_sandbox_secrets()
    project = load_project(project_dir)
    shutil.rmtree(project.state_dir, ignore_errors=True)
    (project.root / "events.db").unlink(missing_ok=True)
    project.state_dir.mkdir(parents=True, exist_ok=True)
    counts = sample_data.generate(project.warehouse_url().removeprefix("duckdb:///"), customers, seed=seed)
    return project, counts


def start_sandbox(project: Project | None, port: int, *, host: str = "127.0.0.1", state_file: Path | None = None):
    """Start the emulators on ``port`` with every audience the project's syncs name."""
    from syncer.sandbox import Sandbox

    use_sandbox_secrets()
    if state_file is None and project is not None:
        state_file = project.state_dir / "sandbox.json"
    sandbox = Sandbox(host=host, port=port, meta_token=os.environ["SANDBOX_META_TOKEN"], state_file=state_file)
    sandbox.start()
    os.environ["SANDBOX_URL"] = sandbox.url
    for sync in (project.syncs.values() if project else ()):
        destination = project.destinations[sync.destination]
        spec = SPECS[destination.type]
        if spec.seed_audience is not None and sync.audience_id is not None:
            emulator = sandbox.meta if spec.mount == "" else sandbox.emulators[spec.mount]
            spec.seed_audience(emulator, destination, sync.audience_id, sync.segment)
    return sandbox


def mutate_warehouse(project: Project, pct: float) -> dict[str, int]:
    from syncer.demo import sample_data

    return sample_data.mutate(project.warehouse_url().removeprefix("duckdb:///"), pct)
