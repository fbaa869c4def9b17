"""One history: a `syncer run` from the command line shows in the Dagster UI beside Dagster's own runs.

Before: after `make demo` every asset in the UI read "Never materialized" though the ledger held the runs.
Now, with ``$DAGSTER_HOME`` set, a CLI run reports each sync as a runless materialization of the same asset
the code location defines, with the same figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef  # the instance a given DAGSTER_HOME names

from dagster_project.definitions import build_definitions
from tests.conftest import FAKE, person, write_customers, write_project

ROOT = Path(__file__).resolve().parents[2]


def syncer(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncer.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_cli_run_is_a_materialization_of_the_sync_asset_in_the_dagster_instance(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_customers(project / "warehouse.duckdb", [person(i) for i in range(1, 8)])
    write_project(project, destination=FAKE)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = dict(os.environ, DAGSTER_HOME=str(home))
    result = syncer("-p", str(project), "--json", "run", env=env)
    assert result.returncode == 0, result.stderr
    assert "could not report" not in result.stderr

    key = dg.AssetKey(["dest", "buyers_sync"])
    assert key in build_definitions(project).resolve_asset_graph().get_all_asset_keys()  # the asset the UI shows
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        event = instance.get_latest_materialization_event(key)
    assert event is not None and event.run_id == ""  # runless: no Dagster run, the CLI's own
    materialization = event.asset_materialization
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["status"], meta["added"], meta["audience_size"], meta["dagster/row_count"]) == ("ok", 7, 7, 7)
    assert materialization.tags["syncer/source"] == "cli-run"
    assert json.loads(result.stdout)["syncs"][0]["added"] == 7


def test_without_dagster_home_the_cli_reports_nothing_and_needs_no_instance(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 3)])
    write_project(tmp_path, destination=FAKE)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    result = syncer("-p", str(tmp_path), "run", env=env)
    assert result.returncode == 0 and "Dagster" not in result.stderr, result.stderr


def test_an_instance_that_cannot_be_written_is_a_warning_not_a_failed_run(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 3)])
    write_project(tmp_path, destination=FAKE)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage: [this is not a storage config\n")
    result = syncer("-p", str(tmp_path), "run", env=dict(os.environ, DAGSTER_HOME=str(home)))
    assert result.returncode == 0, result.stderr
    assert "warning: could not report this run to Dagster" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
