"""The ``reconcile_audiences`` job: it loads with its schedule, runs, repairs, and leaves each sync's figures on
the sync's asset (as an observation) and a summary on the op."""

from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from syncer.sandbox import Sandbox
from tests.conftest import write_customers, write_project

ROOT = Path(__file__).resolve().parents[2]
LIST = "a1b2c3d4e5"


def people(ids) -> list[tuple]:
    return [(i, f"person{i}@example.com", None, "US", None, None, True, True) for i in ids]


@pytest.fixture
def sandbox(monkeypatch):
    sb = Sandbox(port=0).start()
    sb.mailchimp.create_list(LIST, name="Customers")
    monkeypatch.setenv("SANDBOX_MAILCHIMP_KEY", sb.mailchimp.key)
    yield sb
    sb.stop()


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox) -> Path:
    write_customers(tmp_path / "warehouse.duckdb", people(range(1, 31)))
    write_project(tmp_path, destination=f"type: mailchimp_audience\napi_key_env: SANDBOX_MAILCHIMP_KEY\n"
                                        f"endpoint: {sandbox.url_for('mailchimp')}\n",
                  sync_extra="send_unknown_consent: true\nextras: remove\ngates: {max_removals: 1}\n")
    sync = tmp_path / "syncs" / "buyers_sync.yml"
    sync.write_text(sync.read_text().replace('audience_id: "1001"', f'audience_id: "{LIST}:tag:Buyers"'))
    return tmp_path


def observations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): {k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()}
            for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION}


def summary(result: dg.ExecuteInProcessResult) -> dict:
    """The op's own metadata: the figures summed over the syncs."""
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def test_the_demo_loads_the_job_and_its_schedule() -> None:
    defs = build_definitions(ROOT / "examples" / "demo")
    job = defs.resolve_job_def("reconcile_audiences")
    assert [node.name for node in job.nodes] == ["reconcile"]
    schedule = defs.resolve_schedule_def("reconcile_audiences_nightly")
    assert (schedule.job_name, schedule.cron_schedule) == ("reconcile_audiences", "41 4 * * *")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_the_job_reconciles_and_puts_the_figures_on_the_sync_asset(project: Path, sandbox: Sandbox) -> None:
    defs = build_definitions(project)
    assert dg.materialize(list(defs.assets) + list(defs.asset_checks)).success
    job = defs.resolve_job_def("reconcile_audiences")
    clean = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert clean.success
    seen = observations(clean)["dest/buyers_sync"]
    assert (seen["reconcile_status"], seen["read"], seen["held"], seen["listed"], seen["missing"]) == ("in_sync", "listed", 30, 30, 0)

    mc = sandbox.mailchimp
    mc.remove_from_list(f"{LIST}:tag:Buyers", "person1@example.com")
    mc.add_to_list(f"{LIST}:tag:Buyers", email="walk-in@example.com")
    mc.add_to_list(f"{LIST}:tag:Buyers", email="walk-in2@example.com")
    held = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    seen = observations(held)["dest/buyers_sync"]
    assert held.success  # a gate holding the removal is reported, not a failure
    assert (seen["reconcile_status"], seen["missing"], seen["readded"], seen["extra"], seen["removed"]) == ("held", 1, 1, 2, 0)
    assert "max_removals" in seen["note"] and seen["sample_member_keys"] == {"missing": ["1"]}
    assert summary(held)["statuses"] == {"held": 1} and summary(held)["readded"] == 1

    approved = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags={"syncer/approve": "buyers_sync"})
    assert observations(approved)["dest/buyers_sync"]["removed"] == 2
    assert summary(approved)["statuses"] == {"repaired": 1}
    assert mc.tag_members(LIST, "Buyers") == {f"person{i}@example.com" for i in range(1, 31)}


def test_a_failed_read_fails_the_run_after_recording_it(project: Path, sandbox: Sandbox, monkeypatch) -> None:
    defs = build_definitions(project)
    dg.materialize(list(defs.assets) + list(defs.asset_checks))
    monkeypatch.setenv("SANDBOX_MAILCHIMP_KEY", "not-the-key")
    result = defs.resolve_job_def("reconcile_audiences").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    seen = observations(result)["dest/buyers_sync"]
    assert seen["reconcile_status"] == "failed" and seen["error_class"] == "ConfigError"
    assert "not-the-key" not in repr(result.all_events)
