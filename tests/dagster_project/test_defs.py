"""The Dagster code location built from config files: load, materialize, gates, approval, backfill."""

import re
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from syncer.project.project import InvalidProjectError
from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project

TOKEN = "dagster-test-token"
ROOT = Path(__file__).resolve().parents[2]


def emails(ids) -> list[tuple]:
    return [(i, f"m{i}@example.com", None, "US", None, None, True, True) for i in ids]


@pytest.fixture
def sandbox():
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience("1001", name="test")
        yield sb


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox, monkeypatch) -> Path:
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    write_customers(tmp_path / "warehouse.duckdb", emails(range(1, 101)))
    return write_project(tmp_path, destination=meta_on(sandbox.url), sync_extra="gates: {max_removal_pct: 10}\n")


def everything(defs: dg.Definitions) -> list:
    return list(defs.assets) + list(defs.asset_checks)


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def metadata_of(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_demo_definitions_load_with_schedules_pools_and_the_backfill_job() -> None:
    defs = build_definitions(ROOT / "examples" / "demo")
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"segments/high_value", "meta_ads/high_value_meta_plan", "meta_ads/high_value_meta"} <= keys
    assert set(defs.resolve_job_def("full_resync").partitions_def.get_partition_keys()) == {
        "cart_abandoners_meta", "cart_abandoners_sms", "churn_risk_klaviyo", "churn_risk_meta", "high_value_google",
        "high_value_meta", "recent_purchasers_meta"}
    assert defs.resolve_sensor_def("conversion_suppression").default_status == dg.DefaultSensorStatus.RUNNING
    assert {"full_resync", "poll_platform_jobs", "refresh_high_value"} <= {j.name for j in defs.resolve_all_job_defs()}
    schedule = defs.resolve_schedule_def("cart_abandoners_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    spec = defs.resolve_assets_def(dg.AssetKey(["meta_ads", "high_value_meta"]))
    assert spec.specs_by_key[dg.AssetKey(["meta_ads", "high_value_meta"])].group_name == "meta_ads"
    assert spec.op.pool == "syncer_meta_ads"


def test_a_broken_config_fails_the_load_naming_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, destination="type: meta_audience\nad_account_id: act_1\naccess_token_env: T\nendpont: x\n")
    with pytest.raises(InvalidProjectError) as info:
        build_definitions(tmp_path)
    assert "destinations/dest.yml:4" in str(info.value) and "did you mean 'endpoint'" in str(info.value)


def test_materialize_syncs_the_segment_and_reports_the_figures(project: Path, sandbox: Sandbox) -> None:
    defs = build_definitions(project)
    result = dg.materialize(everything(defs))
    assert result.success
    assert materialized(result) == {"segments/buyers", "dest/buyers_sync_plan", "dest/buyers_sync"}
    assert len(sandbox.meta.members("1001")) == 100
    meta = metadata_of(result, "dest/buyers_sync")
    assert (meta["added"], meta["removed"], meta["rejected"], meta["status"]) == (100, 0, 0, "ok")
    assert len(meta["plan_id"]) == 12 and meta["destination_counts"]["num_received"] == 100
    assert metadata_of(result, "segments/buyers")["members"] == 100
    assert TOKEN not in repr(result.all_events)  # no secret in any event, tag or metadata


def test_a_tripped_gate_holds_the_sync_as_a_state_and_its_approve_job_lets_it_through(project: Path, sandbox: Sandbox) -> None:
    """Before: the run failed with a DagsterAssetCheckFailedError, the sync asset kept the last run's figures
    and approving meant typing a tag in the Launchpad. Now the run succeeds, the sync reads ``held`` with the
    reason and gate figures, and the job ``approve_buyers_sync`` (one click in the UI) sends that change."""
    defs = build_definitions(project)
    assert dg.materialize(everything(defs)).success
    write_customers(project / "warehouse.duckdb", emails(range(1, 51)))
    before = sandbox.meta.request_count
    held = dg.materialize(everything(defs), raise_on_error=False)
    assert held.success  # a hold is an answer, not a crash
    [check] = [e for e in held.get_asset_check_evaluations() if e.check_name == "gates"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and "max_removal_pct" in check.description
    assert check.asset_key == dg.AssetKey(["dest", "buyers_sync"])  # the held sync's own page warns
    meta = metadata_of(held, "dest/buyers_sync")
    assert (meta["status"], meta["added"], meta["removed"], meta["audience_size"]) == ("held", 0, 0, 100)
    assert list(meta)[:3] == ["status", "note", "approve"]  # read first, before the figures
    figures = "50 removals are 50.0% of the 100 members held, above the limit of 10%"
    assert figures in meta["note"] and f"| max_removal_pct | **held** | {figures} |" in meta["gates"]
    assert "approve_buyers_sync" in meta["approve"]
    assert sandbox.meta.request_count == before and len(sandbox.meta.members("1001")) == 100
    approve = defs.resolve_job_def("approve_buyers_sync")
    assert approve.tags["syncer/approve"] == "buyers_sync"
    approved = approve.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert approved.success
    meta = metadata_of(approved, "dest/buyers_sync")
    assert (meta["status"], meta["removed"], meta["audience_size"]) == ("ok", 50, 50)
    assert f"| max_removal_pct | approved | {figures} |" in meta["gates"]
    assert re.fullmatch(r"approved by Dagster run [0-9a-f]{8} \(approve_buyers_sync\): max_removal_pct: 50 removals .*",
                        meta["note"]), meta["note"]
    assert len(sandbox.meta.members("1001")) == 50


def test_full_resync_backfill_resends_every_member(project: Path, sandbox: Sandbox) -> None:
    defs = build_definitions(project)
    dg.materialize(everything(defs))
    sandbox.meta.reset()  # the platform lost the audience
    sandbox.meta.create_audience("1001", name="test")
    job = defs.resolve_job_def("full_resync")
    result = job.execute_in_process(partition_key="buyers_sync", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert len(sandbox.meta.members("1001")) == 100


def test_replace_backfill_drops_members_we_never_sent(project: Path, sandbox: Sandbox) -> None:
    defs = build_definitions(project)
    dg.materialize(everything(defs))
    from facebook_business.api import FacebookAdsApi, FacebookSession

    session = FacebookSession(access_token=TOKEN)
    session.GRAPH = sandbox.url
    FacebookAdsApi(session, api_version="v26.0").call("POST", ("1001", "users"), params={
        "payload": {"schema": "EMAIL_SHA256", "data": ["a" * 64]}})  # someone added by hand in Ads Manager
    assert len(sandbox.meta.members("1001")) == 101
    job = defs.resolve_job_def("full_resync")
    result = job.execute_in_process(partition_key="buyers_sync", run_config={"ops": {"resync": {"config": {"mode": "replace"}}}})
    assert result.success
    assert len(sandbox.meta.members("1001")) == 100


def test_a_failed_sync_shows_the_platforms_words_redacted_in_the_failure_metadata(tmp_path: Path) -> None:
    from destinations.fake.connector import FakeDestination
    from syncer.errors import PermanentError
    from tests.conftest import FAKE, person

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE)
    FakeDestination.fail_calls = {1: PermanentError("Meta refused the batch", detail="HTTP 400 code 100 fbtrace_id AbC123xyz:"
                                                    " invalid member Person1@Example.com")}
    result = dg.materialize(everything(build_definitions(tmp_path)), raise_on_error=False)
    assert not result.success and "dest/buyers_sync" not in materialized(result)
    [failure] = [e for e in result.get_step_failure_events() if e.step_key.startswith("dest__buyers_sync")]
    data = failure.step_failure_data.user_failure_data
    meta = {k: v.value for k, v in data.metadata.items()}
    assert "Meta refused the batch" in data.description
    assert (meta["error_class"], meta["error_fault"]) == ("PermanentError", "platform")
    assert meta["error_detail"] == "HTTP 400 code 100 fbtrace_id AbC123xyz: invalid member <redacted>"
    assert "Person1@Example.com" not in repr(result.all_events)
