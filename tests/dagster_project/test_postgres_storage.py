"""Dagster storage on PostgreSQL, as a deployment runs the code location.

The instance is configured by ``examples/dagster-postgres.yaml`` itself (copied to ``$DAGSTER_HOME``), against
the throwaway PostgreSQL 15 server the ledger tests start; the syncer's ledger lives on the same server in a
database of its own (both keep a table named ``runs``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from sqlalchemy.engine import make_url

from dagster_project.definitions import build_definitions
from syncer.ledger.store import Ledger
from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project
from tests.syncer.test_postgres_ledger import postgres_url  # the server: module-scoped, stopped after the module

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dagster-postgres.yaml"
TOKEN = "dagster-pg-test-token"
PASSWORD = "pg-password-not-for-logs"  # trust auth ignores it; it must still reach no event, tag or file
SYNC = dg.AssetKey(["dest", "buyers_sync"])
PLAN = dg.AssetKey(["dest", "buyers_sync_plan"])


def emails(ids) -> list[tuple]:
    return [(i, f"m{i}@example.com", None, "US", None, None, True, True) for i in ids]


def create_databases(server_url: str, *names: str) -> None:
    url = make_url(server_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True) as con:
        for name in names:
            con.execute(f'CREATE DATABASE "{name}"')


def tables(server_url: str, database: str) -> set[str]:
    url = make_url(server_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=database) as con:
        rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def databases(postgres_url: str) -> tuple[str, str]:
    """A fresh Dagster database and ledger database on the shared server."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"dagster_{suffix}", f"ledger_{suffix}")
    create_databases(postgres_url, *names)
    return names


@pytest.fixture
def dagster_home(tmp_path: Path, postgres_url: str, databases: tuple[str, str], monkeypatch) -> Path:
    """``$DAGSTER_HOME`` holding the shipped example, its variables set as a deployment would."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(EXAMPLE, home / "dagster.yaml")
    url = make_url(postgres_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in {"USERNAME": url.username, "PASSWORD": PASSWORD, "HOST": url.host, "DB": databases[0],
                        "PORT": str(url.port)}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    return home


@pytest.fixture
def project(tmp_path: Path, postgres_url: str, databases: tuple[str, str], monkeypatch):
    """The demo's shape (segment -> plan -> gates -> sync into Meta's emulator), its ledger on Postgres."""
    url = make_url(postgres_url)
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    monkeypatch.setenv("SYNCER_LEDGER_PASSWORD", PASSWORD)
    root = tmp_path / "project"
    root.mkdir()
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        sandbox.meta.create_audience("1001", name="test")
        write_customers(root / "warehouse.duckdb", emails(range(1, 101)))
        write_project(root, destination=meta_on(sandbox.url))
        ledger = f"postgresql+psycopg://{url.username}:${{SYNCER_LEDGER_PASSWORD}}@{url.host}:{url.port}/{databases[1]}"
        with (root / "syncer.yml").open("a") as f:
            f.write(f"ledger_url: {ledger}\n")
        yield root, sandbox


def everything(defs: dg.Definitions) -> list:
    return list(defs.assets) + list(defs.asset_checks)


def figures(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None, f"{key.to_user_string()} was never materialized in this storage"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_runs_and_sync_figures_are_kept_in_postgres_and_read_back_by_a_new_instance(
        dagster_home: Path, project, postgres_url: str, databases: tuple[str, str]) -> None:
    root, sandbox = project
    defs = build_definitions(root)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        first = dg.materialize(everything(defs), instance=instance)
        write_customers(root / "warehouse.duckdb", emails(range(1, 111)))
        second = dg.materialize(everything(defs), instance=instance)
    assert first.success and second.success
    assert len(sandbox.meta.members("1001")) == 110

    with dg.DagsterInstance.get() as again:  # a new process's view: nothing cached, all from the server
        runs = again.get_runs()
        assert {r.run_id for r in runs} == {first.run_id, second.run_id}
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        latest = figures(again, SYNC)
        assert (latest["status"], latest["added"], latest["removed"], latest["rejected"]) == ("ok", 10, 0, 0)
        assert latest["destination_counts"]["num_received"] == 10
        assert (figures(again, PLAN)["held_before"], figures(again, PLAN)["adds"]) == (100, 10)
        history = again.fetch_materializations(SYNC, limit=10).records
        assert sorted(r.asset_materialization.metadata["added"].value for r in history) == [10, 100]
        checks = again.all_logs(second.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert {(e.dagster_event.event_specific_data.check_name, e.dagster_event.event_specific_data.passed)
                for e in checks} >= {("gates", True)}
        every_event = repr([again.all_logs(r.run_id) for r in runs])
        assert TOKEN not in every_event and PASSWORD not in every_event

        pool = again.event_log_storage.get_concurrency_info("syncer_dest")
        assert (pool.slot_count, pool.active_slot_count) == (1, 0)  # the example's default_limit, slots given back

    dagster_db, ledger_db = databases
    assert {"runs", "event_logs", "concurrency_slots"} <= tables(postgres_url, dagster_db)
    assert not (dagster_home / "history").exists()  # no SQLite run storage beside the config
    ledger = Ledger(f"postgresql+psycopg://{make_url(postgres_url).username}@{make_url(postgres_url).host}:"
                    f"{make_url(postgres_url).port}/{ledger_db}")
    assert ledger.held_count("buyers_sync") == 110
    assert [r["status"] for r in ledger.history("buyers_sync")][:2] == ["ok", "ok"]
    assert "event_logs" not in tables(postgres_url, ledger_db) and "held" not in tables(postgres_url, dagster_db)
    assert PASSWORD not in (dagster_home / "dagster.yaml").read_text()


def test_a_pool_limit_set_with_the_dagster_cli_is_kept_in_postgres(dagster_home: Path) -> None:
    """The command docs/deploying-on-dagster.md gives for a shared deployment."""
    dagster = Path(sys.executable).parent / "dagster"
    subprocess.run([str(dagster), "instance", "concurrency", "set", "syncer_meta_ads", "2"], check=True,
                   capture_output=True, timeout=120)
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage.get_concurrency_info("syncer_meta_ads").slot_count == 2
