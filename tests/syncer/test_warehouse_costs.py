"""What a warehouse-mode run cost in the warehouse, as a team sees it: `syncer history`, its --json, and the
sync asset's Dagster metadata; recorded per sync run on DuckDB, PostgreSQL and Snowflake (fakesnow)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from destinations.fake.connector import FakeDestination
from syncer.cli.main import cli
from syncer.delivery.engine import Engine
from syncer.ledger.store import Ledger
from syncer.ledger.warehouse_costs import WarehouseCosts
from syncer.project.project import load_project
from syncer.reporting.dagster_events import sync_metadata
from tests.conftest import write_customers
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the fixture)
from tests.syncer.test_warehouse_diff import first_rows, project, second_rows
from tests.syncer.test_warehouse_engines import SNOWFLAKE_URL, fakesnow_patch, postgres_loader, snowflake_loader  # noqa: F401


def syncer(root: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-p", str(root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run(root: Path) -> None:
    with Engine(load_project(root)) as engine:
        [report] = engine.run()
    assert report.status == "ok", report
    FakeDestination.reset()


def inside(root: Path, url: str | None = None) -> Path:
    """A warehouse-mode project; its warehouse at ``url`` (default: its own DuckDB file)."""
    root = project(root, first_rows(), "diff_mode: warehouse\n")
    if url:
        (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", url))
    return root


def history_runs(root: Path) -> list[dict]:
    return json.loads(syncer(root, "--json", "history"))["runs"]  # newest first


def check_costs_follow_the_churn(root: Path, load) -> list[dict]:
    """An initial run returns every member from the warehouse; a run with nothing changed returns only the
    few summary rows (checksums, counts): what `syncer history` says, in words and in --json."""
    load(first_rows())
    run(root)
    run(root)  # nothing changed since
    unchanged, initial = history_runs(root)[:2]
    assert initial["warehouse"]["statements"] > 0 and unchanged["warehouse"]["statements"] > 0
    assert initial["warehouse"]["rows_returned"] >= 44  # every member to add left the warehouse
    assert unchanged["warehouse"]["rows_returned"] < 10  # one row per checksum, count and version: no member row
    text = syncer(root, "history")
    line = f"run {unchanged['run_id']} buyers_sync warehouse ({unchanged['warehouse']['engine']}): "
    assert line + f"{unchanged['warehouse']['statements']} statements, {unchanged['warehouse']['rows_returned']} rows returned" in text
    return [unchanged, initial]


def test_duckdb_runs_record_statements_rows_returned_and_rows_scanned(tmp_path: Path) -> None:
    root = inside(tmp_path / "p")
    unchanged, initial = check_costs_follow_the_churn(root, lambda rows: write_customers(root / "warehouse.duckdb", rows))
    assert initial["warehouse"]["engine"] == "duckdb"
    assert unchanged["warehouse"]["rows_scanned"] >= 48  # the segment's rows, read for the checksum at least
    assert unchanged["warehouse"]["bytes_billed"] is None  # DuckDB bills nothing: no figure rather than a 0
    assert "rows scanned" in syncer(root, "history")


def test_a_changed_member_costs_its_rows_only(tmp_path: Path) -> None:
    root = inside(tmp_path / "p")
    run(root)
    write_customers(root / "warehouse.duckdb", second_rows())
    run(root)
    changed = history_runs(root)[0]["warehouse"]
    # second_rows: 3 leave, 5 join, 1 changed email, 1 refreshed, 1 fixed, consent granted/withdrawn, 44 differs:
    # the diff returns those members and the summary rows, far from the 48 of the segment
    assert 10 <= changed["rows_returned"] <= 30


def test_postgres_runs_record_their_costs(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    root = inside(tmp_path / "p", postgres_url)
    try:
        unchanged, _ = check_costs_follow_the_churn(root, postgres_loader(postgres_url))
        assert unchanged["warehouse"]["engine"] == "postgresql"
        assert unchanged["warehouse"]["rows_scanned"] is None  # Postgres does not say cheaply: left unknown
    finally:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS syncer CASCADE"))
            conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
        engine.dispose()


def test_snowflake_runs_record_each_statements_query_id(tmp_path: Path, fakesnow_patch: None) -> None:  # noqa: F811
    root = inside(tmp_path / "p", SNOWFLAKE_URL)
    unchanged, _ = check_costs_follow_the_churn(root, snowflake_loader())
    costs = unchanged["warehouse"]
    assert costs["engine"] == "snowflake"
    assert len(costs["query_ids"]) >= costs["statements"] - 1  # one id per statement (uploads: one per chunk)
    assert len(set(costs["query_ids"])) == len(costs["query_ids"])


def test_the_sync_assets_metadata_shows_the_costs(tmp_path: Path) -> None:
    root = inside(tmp_path / "p")
    with Engine(load_project(root)) as engine:
        [report] = engine.run()
    metadata = sync_metadata(report, audience_size=report.members)
    assert metadata["warehouse_statements"] == report.warehouse["statements"] > 0
    assert metadata["warehouse_rows_returned"] >= 44
    assert "warehouse_bytes_billed" not in metadata  # not reported by DuckDB: not shown as 0


def test_a_local_mode_run_records_no_warehouse_costs(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows())
    run(root)
    [row] = history_runs(root)
    assert row["warehouse"] is None
    assert "warehouse (" not in syncer(root, "history")
    with Engine(load_project(root)) as engine:
        [report] = engine.run()
    assert "warehouse_statements" not in sync_metadata(report, audience_size=report.members)


def test_a_saved_plan_applied_later_records_what_planning_cost(tmp_path: Path) -> None:
    root = inside(tmp_path / "p")
    syncer(root, "plan", "--out", str(tmp_path / "plans"))
    [folder] = [p for p in (tmp_path / "plans").iterdir() if p.is_dir()]
    assert not history_runs(root)  # planning alone records no run
    syncer(root, "apply", str(folder))
    [row] = history_runs(root)
    assert row["warehouse"]["statements"] > 0 and row["warehouse"]["rows_returned"] >= 44


def test_costs_summary_reads_as_a_person_would_write_it() -> None:
    costs = WarehouseCosts(engine="bigquery", statements=7, rows_returned=12_400, bytes_billed=10 * (1 << 20))
    assert costs.summary() == "7 statements, 12,400 rows returned, 10.0 MB billed"
    assert WarehouseCosts.from_dict(costs.as_dict()) == costs
    ledger_costs = WarehouseCosts(statements=1).merge(WarehouseCosts(statements=2, rows_scanned=5))
    assert (ledger_costs.statements, ledger_costs.rows_scanned) == (3, 5)


def test_an_old_ledger_gains_the_costs_table_without_a_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE warehouse_costs"))  # a ledger written before the table existed
    engine.dispose()
    ledger = Ledger(url)
    assert "warehouse_costs" in sa.inspect(ledger.engine).get_table_names()
