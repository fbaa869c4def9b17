"""Jobs a platform runs after a sync (Google Customer Match) are recorded and polled, never awaited."""

from pathlib import Path

from syncer.delivery.engine import Engine
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import write_customers, write_project


def data_manager_project(root: Path, sandbox: Sandbox, members: int) -> Path:
    """``members`` members synced to user list 1001 of the sandbox's Data Manager API, token in $DM_TOKEN."""
    sandbox.datamanager.create_user_list("1234567890", "1001")
    write_customers(root / "warehouse.duckdb", [(i, f"m{i}@example.com", None, "US", None, None, True, True)
                                                for i in range(1, members + 1)])
    return write_project(root, destination=f"""\
        type: google_customer_match
        customer_id: "123-456-7890"
        transport: data_manager
        access_token_env: DM_TOKEN
        customer_match_terms_accepted: true
        endpoint: {sandbox.url_for("datamanager")}
        """)


def test_google_jobs_are_recorded_then_polled_to_their_final_status(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DM_TOKEN", "sandbox-datamanager-key")
    with Sandbox(port=0) as sandbox:
        data_manager_project(tmp_path, sandbox, 30)
        engine = Engine(load_project(tmp_path))
        [report] = engine.run()
        assert report.added == 30
        [job] = engine.ledger.jobs()
        assert (job["sync"], job["status"], job["final"]) == ("buyers_sync", "SUBMITTED", False)
        for _ in range(5):  # each poll moves the emulator's job one step; a run never waits for it
            if engine.poll_jobs():
                break
        [job] = engine.ledger.jobs()
        assert job["final"] and job["status"] == "SUCCESS" and job["match_rate_range"].startswith("MATCH_RATE_RANGE_")
        assert engine.ledger.open_jobs() == {}
