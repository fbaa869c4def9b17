"""Match rates per sync: our readiness before upload and what each platform reported, in `syncer status`,
`syncer jobs`, `syncer history` and the sync asset's Dagster metadata, over time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dagster_project.definitions import build_definitions
from destinations.fake.connector import FakeDestination
from syncer.cli.main import cli
from syncer.delivery.engine import Engine
from syncer.ledger.match_rates import match_history, parse_match_rate_range
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import FAKE, meta_on, write_customers, write_project
from tests.syncer.test_jobs import data_manager_project

TOKEN = "match-rates-token"
BOTH, EMAIL_ONLY, PHONE_ONLY = (1, 2, 3), (4, 5, 6, 7), (8, 9)  # member 10 has neither: rejected


def known_members(extra: int = 0) -> list[tuple]:
    """10 members: 7 valid emails, 5 valid phones, 3 with both, 1 with neither (plus ``extra`` with both)."""
    rows = []
    for i in range(1, 11 + extra):
        email = f"m{i}@example.com" if i in BOTH + EMAIL_ONLY or i > 10 else "not-an-email"
        phone = f"+1 415 555 {i:04d}" if i in BOTH + PHONE_ONLY or i > 10 else "12"
        rows.append((i, email, phone, "US", None, None, True, True))
    return rows


@pytest.fixture
def sandbox():
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience("1001", name="test")
        yield sb


@pytest.fixture
def meta_project(tmp_path: Path, sandbox: Sandbox, monkeypatch) -> Path:
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    write_customers(tmp_path / "warehouse.duckdb", known_members())
    return write_project(tmp_path, identifiers="[email, phone]", destination=meta_on(sandbox.url))


def syncer(project: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-p", str(project), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_shows_exact_readiness_and_metas_received_and_approximate_size(meta_project: Path) -> None:
    syncer(meta_project, "run")
    out = syncer(meta_project, "status")
    assert "readiness 70% email / 50% phone / 30% both of 10" in out
    assert "Meta: 9 of 9 received, ~9 matched" in out  # member 10 has nothing valid: never sent
    [row] = json.loads(syncer(meta_project, "--json", "status"))["syncs"]
    assert row["match"]["readiness"] == {"members": 10, "held": 9, "email": 7, "phone": 5, "both": 3,
                                         "email_pct": 70.0, "phone_pct": 50.0, "both_pct": 30.0}
    assert row["match"]["last_upload"] | {"at": 0} == {"at": 0, "sent": 9, "accepted": 9, "platform_received": 9,
                                                       "platform_invalid": 0}
    assert (row["match"]["size_low"], row["match"]["size_high"]) == (9, 9)
    history = json.loads(syncer(meta_project, "--json", "history"))["runs"]
    assert history[0]["match"]["readiness"]["email_pct"] == 70.0
    assert "70% / 50%" in syncer(meta_project, "history")


def test_a_platform_with_row_outcomes_only_shows_accepted_of_sent(tmp_path: Path) -> None:
    """The email tools report per row, nothing else: their match figure is rows accepted of rows sent. A
    member the platform refused passed our rules, but the ledger keeps none of its identifiers: it is left
    out of readiness (8 members: 5 valid emails, 3 valid phones, 1 both) and counted in accepted vs sent."""
    write_customers(tmp_path / "warehouse.duckdb", known_members())
    write_project(tmp_path, destination=FAKE, identifiers="[email, phone]")
    FakeDestination.reject_keys = {"1", "2"}
    syncer(tmp_path, "run")
    out = syncer(tmp_path, "status")
    assert "readiness 62% email / 38% phone / 12% both of 8" in out and "fake: 7 of 9 accepted" in out
    [row] = json.loads(syncer(tmp_path, "--json", "status"))["syncs"]
    assert row["match"]["readiness"]["email_pct"] == 62.5  # the table rounds to whole points
    assert (row["match"]["match_rate"], row["match"]["match_rate_source"]) == (77.8, "accepted")


def test_a_run_that_changes_nothing_reuses_readiness_and_a_change_counts_again(meta_project: Path) -> None:
    engine = Engine(load_project(meta_project))
    engine.run()
    scans: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        if "identifiers LIKE" in statement:
            scans.append(statement)

    sa.event.listen(engine.ledger.engine, "before_cursor_execute", note)
    [quiet] = engine.run()
    assert quiet.added == 0 and scans == []  # nothing changed: the last figures, not a pass over the audience
    assert quiet.match["readiness"]["email"] == 7 and quiet.match["match_rate"] == 100.0  # the size read after the change
    write_customers(meta_project / "warehouse.duckdb", known_members(extra=1))
    [changed] = engine.run()
    assert changed.added == 1 and len(scans) == 1
    assert {k: changed.match["readiness"][k] for k in ("members", "email", "phone", "both")} == {
        "members": 11, "email": 8, "phone": 6, "both": 4}
    rows = match_history(engine.ledger, "buyers_sync")
    assert [r["members"] for r in rows] == [11, 10, 10]  # one row per run, newest first
    assert [r["sent"] for r in rows] == [1, 0, 9]
    engine.close()


def test_google_jobs_show_their_match_rate_range_beside_the_syncs_readiness(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DM_TOKEN", "sandbox-datamanager-key")
    with Sandbox(port=0) as sandbox:
        data_manager_project(tmp_path, sandbox, 30)
        syncer(tmp_path, "run")
        for _ in range(5):  # each poll moves the emulator's request one step
            jobs = json.loads(syncer(tmp_path, "--json", "jobs"))["jobs"]
            if jobs[0]["final"]:
                break
        [job] = jobs
        low, high = parse_match_rate_range(job["match_rate_range"])
        assert (job["status"], job["match_rate_low"], job["match_rate_high"]) == ("SUCCESS", low, high)
        assert job["readiness"]["email_pct"] == 100.0 and job["readiness"]["phone_pct"] == 0.0
        shown = f"<{high + 1:g}%" if low == 0 else f"{low:g}-{high:g}%"
        out = syncer(tmp_path, "jobs")
        assert "SUCCESS" in out and shown in out and "100% / 0%" in out
        status = syncer(tmp_path, "status")
        assert "readiness 100% email / 0% phone / 0% both of 30" in status
        assert f"last job {shown} matched" in status
        [quiet] = Engine(load_project(tmp_path)).run()  # later runs plot the finished job's range
        assert quiet.match["match_rate"] == (low + high) / 2 and quiet.match["match_rate_source"] == "job_range"


def test_the_sync_assets_materialization_carries_the_match_figures_to_plot(meta_project: Path) -> None:
    result = dg.materialize(list((defs := build_definitions(meta_project)).assets) + list(defs.asset_checks))
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "dest/buyers_sync"]
    metadata = event.materialization.metadata
    assert {k: metadata[k].value for k in ("match_readiness_email_pct", "match_readiness_phone_pct",
                                           "match_readiness_both_pct", "platform_accepted", "platform_match_rate")} == {
        "match_readiness_email_pct": 70.0, "match_readiness_phone_pct": 50.0, "match_readiness_both_pct": 30.0,
        "platform_accepted": 9, "platform_match_rate": 100.0}
    assert isinstance(metadata["match_readiness_email_pct"], dg.FloatMetadataValue)  # plotted over time
    assert isinstance(metadata["platform_match_rate"], dg.FloatMetadataValue)
    assert TOKEN not in repr(result.all_events) and os.environ.get("SANDBOX_META_TOKEN") == TOKEN


@pytest.mark.parametrize("name, bounds", [
    ("MATCH_RANGE_LESS_THAN_20", (0.0, 19.0)), ("MATCH_RANGE_61_TO_70", (61.0, 70.0)),
    ("MATCH_RATE_RANGE_91_TO_100", (91.0, 100.0)), ("MATCH_RATE_RANGE_NOT_ELIGIBLE", None), ("UNKNOWN", None), (None, None)])
def test_both_google_apis_range_names_read_as_percentages(name: str | None, bounds) -> None:
    assert parse_match_rate_range(name) == bounds
