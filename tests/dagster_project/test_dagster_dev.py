"""End to end: `dagster dev` headless, a run launched through GraphQL, its metadata read back."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project

TOKEN = "dagster-dev-token"
ASSET_QUERY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label
      ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } }
  }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_a_run_launched_through_graphql_lands_and_reports_its_figures(tmp_path: Path) -> None:
    from dagster_graphql import DagsterGraphQLClient

    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        sandbox.meta.create_audience("1001")
        write_customers(tmp_path / "warehouse.duckdb", [(i, f"m{i}@example.com", None, "US", None, None, True, True) for i in range(1, 41)])
        write_project(tmp_path / "project", destination=meta_on(sandbox.url))
        (tmp_path / "warehouse.duckdb").rename(tmp_path / "project" / "warehouse.duckdb")
        home = tmp_path / "dagster_home"
        home.mkdir()
        port = free_port()
        env = {**os.environ, "SYNCER_PROJECT": str(tmp_path / "project"), "DAGSTER_HOME": str(home),
               "SANDBOX_META_TOKEN": TOKEN}
        log = open(tmp_path / "dagster.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "dagster_project.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True, preexec_fn=_default_signals)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert proc.poll() is None, (tmp_path / "dagster.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster dev did not come up"
                time.sleep(0.5)
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution("refresh_buyers", repository_location_name="dagster_project.definitions")
            status = None
            while time.monotonic() < deadline + 120:
                status = client.get_run_status(run_id).value
                if status in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                time.sleep(0.5)
            assert status == "SUCCESS", (tmp_path / "dagster.log").read_text()[-3000:]
            answer = requests.post(f"http://127.0.0.1:{port}/graphql", timeout=10, json={
                "query": ASSET_QUERY, "variables": {"path": ["dest", "buyers_sync"]}}).json()
            [materialization] = answer["data"]["assetOrError"]["assetMaterializations"]
            figures = {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}
            assert materialization["runId"] == run_id
            assert figures["added"] == 40 and figures["removed"] == 0 and figures["status"] == "ok"
            assert len(sandbox.meta.members("1001")) == 40
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
