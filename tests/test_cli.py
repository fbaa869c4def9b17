"""The `syncer` command as a user runs it: real processes, the Meta emulator over HTTP, kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncer.sandbox import Sandbox
from tests.conftest import write_customers, write_project

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "cli-test-token"


def syncer(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncer.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SANDBOX_META_TOKEN": TOKEN, **(env or {})}, cwd=ROOT)


@pytest.fixture
def sandbox():
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience("1001", name="test")
        yield sb


def _port(sb: Sandbox) -> int:
    return int(sb.url.rsplit(":", 1)[1])


def meta_project(root: Path, port: int, **kwargs) -> Path:
    return write_project(root, destination=f"""\
        type: meta_audience
        ad_account_id: act_1
        access_token_env: SANDBOX_META_TOKEN
        endpoint: http://127.0.0.1:{port}
        """, **kwargs)


def emails(n_from: int, n_to: int) -> list[tuple]:
    return [(i, f"M{i}@Example.com ", None, "US", None, None, True, True) for i in range(n_from, n_to)]


def held_emails(sandbox: Sandbox) -> set[str]:
    return {m["EMAIL"] if "EMAIL" in m else m.get("EMAIL_SHA256") for m in sandbox.meta.members("1001")}


def expected(ids) -> set[str]:
    return {hashlib.sha256(f"m{i}@example.com".encode()).hexdigest() for i in ids}


def test_validate_reports_every_problem_with_file_and_line_and_exits_2(tmp_path: Path) -> None:
    meta_project(tmp_path, 1)
    (tmp_path / "syncs" / "buyers_sync.yml").write_text('segment: buyers\ndestination: dest\naudiance_id: "1"\nidentifiers: [email]\n')
    (tmp_path / "syncs" / "other.yml").write_text('segment: buyer\ndestination: dest\naudience_id: "2"\nidentifiers: [email]\n')
    result = syncer("-p", str(tmp_path), "validate")
    assert result.returncode == 2
    assert "syncs/buyers_sync.yml:3: audiance_id: unknown key 'audiance_id'; did you mean 'audience_id'?" in result.stderr
    assert "syncs/other.yml:1: segment:" in result.stderr and "did you mean 'buyers'" in result.stderr


def test_run_then_rerun_sends_nothing_then_only_the_difference(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 501))
    meta_project(tmp_path, _port(sandbox))
    first = syncer("-p", str(tmp_path), "--json", "run")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["syncs"][0]["added"] == 500
    assert held_emails(sandbox) == expected(range(1, 501))

    before = sandbox.meta.request_count
    second = syncer("-p", str(tmp_path), "--json", "run")
    report = json.loads(second.stdout)["syncs"][0]
    assert (report["added"], report["removed"], report["requests"]) == (0, 0, 0)
    assert sandbox.meta.request_count == before

    write_customers(tmp_path / "warehouse.duckdb", emails(11, 511))
    third = json.loads(syncer("-p", str(tmp_path), "--json", "run").stdout)["syncs"][0]
    assert (third["added"], third["removed"]) == (10, 10)
    assert held_emails(sandbox) == expected(range(11, 511))


def test_plan_then_apply_executes_that_plan_and_refuses_it_when_stale(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 51))
    meta_project(tmp_path, _port(sandbox))
    planned = json.loads(syncer("-p", str(tmp_path), "--json", "plan").stdout)
    assert planned["syncs"][0]["add"] == 50 and sandbox.meta.request_count == 0
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 61))  # data moves on; the plan stays what it was
    applied = syncer("-p", str(tmp_path), "--json", "apply", planned["plan"])
    assert applied.returncode == 0, applied.stderr
    assert held_emails(sandbox) == expected(range(1, 51))
    stale = syncer("-p", str(tmp_path), "apply", planned["plan"])
    assert stale.returncode == 1 and "changed since this plan was made" in stale.stderr


def test_a_tripped_gate_exits_3_and_the_emulator_receives_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 101))
    meta_project(tmp_path, _port(sandbox), sync_extra="gates: {max_removal_pct: 10}\n")
    assert syncer("-p", str(tmp_path), "run").returncode == 0
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 51))
    before = sandbox.meta.request_count
    held = syncer("-p", str(tmp_path), "run")
    assert held.returncode == 3
    assert "max_removal_pct" in held.stdout and "50 removals are 50.0%" in held.stdout
    assert sandbox.meta.request_count == before and len(held_emails(sandbox)) == 100
    approved = syncer("-p", str(tmp_path), "run", "--approve")
    assert approved.returncode == 0
    assert held_emails(sandbox) == expected(range(1, 51))
    history = json.loads(syncer("-p", str(tmp_path), "--json", "history").stdout)["runs"]
    assert [r["status"] for r in history[:3]] == ["ok", "held", "ok"]
    assert "max_removal_pct" in history[1]["reason"]


def test_throttling_and_5xx_from_meta_are_retried_within_the_run(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 101))
    meta_project(tmp_path, _port(sandbox))
    sandbox.meta.inject(code=80003, times=1, eta_minutes=0)
    sandbox.meta.inject_http(status=503, times=1)
    result = syncer("-p", str(tmp_path), "--json", "run")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["syncs"][0]
    assert report["added"] == 100 and report["requests"] == 3
    assert held_emails(sandbox) == expected(range(1, 101))


def test_an_expired_token_stops_the_sync_with_what_to_fix(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 11))
    meta_project(tmp_path, _port(sandbox))
    result = syncer("-p", str(tmp_path), "run", env={"SANDBOX_META_TOKEN": "expired"})
    assert result.returncode == 1
    assert "SANDBOX_META_TOKEN" in result.stdout and "190" not in result.stdout.split("SANDBOX_META_TOKEN")[0][-20:]
    assert held_emails(sandbox) == set()


@pytest.mark.parametrize("kill_after_requests", [1, 2])
def test_kill_9_mid_apply_then_next_run_converges(tmp_path: Path, sandbox: Sandbox, kill_after_requests: int) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 30_001))
    meta_project(tmp_path, _port(sandbox), sync_extra="gates: {max_removal_pct: 100}\n")
    assert syncer("-p", str(tmp_path), "run", timeout=300).returncode == 0
    # 25,000 leave and 10,000 join: 3 remove batches and 1 add batch of at most 10,000 rows
    write_customers(tmp_path / "warehouse.duckdb", emails(25_001, 40_001))
    sandbox.meta.latency = 0.3
    start = sandbox.meta.request_count
    proc = subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(tmp_path), "run"], cwd=ROOT,
                            env=dict(os.environ, SANDBOX_META_TOKEN=TOKEN), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while sandbox.meta.request_count - start < kill_after_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert held_emails(sandbox) != expected(range(25_001, 40_001))  # it really was cut short
    sandbox.meta.latency = 0.0
    rerun = syncer("-p", str(tmp_path), "--json", "run", "--approve", timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert held_emails(sandbox) == expected(range(25_001, 40_001))
    status = json.loads(syncer("-p", str(tmp_path), "--json", "status").stdout)["syncs"][0]
    assert status["held"] == 15_000 and status["pending_retries"] == 0


def test_demo_shows_adds_then_nothing_then_the_difference(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", project, ignore=shutil.ignore_patterns(".syncer", "*.duckdb*"))
    with Sandbox(port=0) as probe:
        port = _port(probe)
    result = syncer("-p", str(project), "demo", "--customers", "3000", "--port", str(port), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "second run: nothing changed" in out and "(0 requests reached the emulators)" in out
    assert out.count("sync summary") == 3


def test_create_audience_makes_it_on_the_first_run_and_reuses_it(tmp_path: Path, sandbox: Sandbox) -> None:
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 21))
    meta_project(tmp_path, _port(sandbox))
    sync_file = tmp_path / "syncs" / "buyers_sync.yml"
    sync_file.write_text(sync_file.read_text().replace('audience_id: "1001"', "create_audience: {name: Buyers, description: made by syncer}"))
    first = json.loads(syncer("-p", str(tmp_path), "--json", "run").stdout)["syncs"][0]
    created = [a for a in sandbox.meta.audiences() if a["name"] == "Buyers"]
    assert len(created) == 1 and created[0]["count"] == 20 and first["added"] == 20
    assert first["platform_counts"]["approximate_count_lower_bound"] == 20  # Meta's own view, after the change
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 26))
    second = json.loads(syncer("-p", str(tmp_path), "--json", "run").stdout)["syncs"][0]
    assert second["added"] == 5 and len([a for a in sandbox.meta.audiences() if a["name"] == "Buyers"]) == 1


def test_validate_online_calls_each_destination_and_names_the_variable_to_fix(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", project, ignore=shutil.ignore_patterns(".syncer", "*.duckdb"))
    with Sandbox(port=0) as sb:
        env = {"SANDBOX_URL": sb.url, "SANDBOX_META_TOKEN": "sandbox-meta-token",
               "SANDBOX_DATAMANAGER_KEY": "sandbox-datamanager-key", "SANDBOX_KLAVIYO_KEY": "not-the-key",
               "SANDBOX_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1", "SANDBOX_TWILIO_KEY": "sandbox-twilio-key"}
        offline = syncer("-p", str(project), "validate", env=env)
        online = syncer("-p", str(project), "--json", "validate", "--online", env=env)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert online.returncode == 2, online.stdout + online.stderr
    report = json.loads(online.stdout)["online"]
    assert report["meta_ads"] == report["google_ads"] == report["twilio"] == "ok"
    assert "SANDBOX_KLAVIYO_KEY" in report["klaviyo"] and "not-the-key" not in online.stdout


def test_history_detail_shows_the_redacted_platform_words_of_a_failed_sync(tmp_path: Path) -> None:
    from destinations.fake.connector import FakeDestination
    from syncer.delivery.engine import Engine
    from syncer.errors import PermanentError
    from syncer.project.project import load_project
    from tests.conftest import FAKE, person

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE)
    FakeDestination.fail_calls = {1: PermanentError("Meta refused the batch", detail="HTTP 400 code 100 fbtrace_id AbC123xyz:"
                                                    " invalid member Person1@Example.com")}
    with Engine(load_project(tmp_path)) as engine:
        assert [r.status for r in engine.run()] == ["failed"]

    detailed = syncer("-p", str(tmp_path), "history", "--detail")
    assert detailed.returncode == 0, detailed.stderr
    [line] = [ln for ln in detailed.stdout.splitlines() if ln.startswith("run ")]
    assert line == ("run 1 buyers_sync failed: PermanentError (fault: platform): HTTP 400 code 100 fbtrace_id AbC123xyz:"
                    " invalid member <redacted>")
    plain = syncer("-p", str(tmp_path), "history")
    assert "fbtrace_id" not in plain.stdout and "PermanentError" not in plain.stdout
    assert plain.stdout == detailed.stdout.split("\nrun 1 ")[0] + "\n"  # without --detail: the table alone, as before
    [run] = json.loads(syncer("-p", str(tmp_path), "--json", "history").stdout)["runs"]
    assert (run["error_class"], run["error_fault"]) == ("PermanentError", "platform")
    assert run["error_detail"].endswith("invalid member <redacted>")
    assert "Person1@Example.com" not in detailed.stdout + plain.stdout + json.dumps(run)


def test_a_long_throttle_is_kept_shown_in_status_and_honoured_by_the_next_run(tmp_path: Path, sandbox) -> None:
    """Meta says "regain access in 5 minutes": the run defers, `status` says until when, and a run a few
    seconds later sends nothing at all (before, it sent at once and earned a longer wait)."""
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 31))
    meta_project(tmp_path, _port(sandbox))
    sandbox.meta.throttle_next(300)
    first = syncer("-p", str(tmp_path), "run")
    assert first.returncode != 0 and "deferred" in first.stdout, first.stdout
    shown = syncer("-p", str(tmp_path), "status").stdout
    assert "destination dest is waiting until" in shown and "min left" in shown, shown
    waits = json.loads(syncer("-p", str(tmp_path), "--json", "status").stdout)["destination_waits"]
    assert set(waits) == {"dest"} and waits["dest"]["not_before"] > time.time() + 200
    before = sandbox.meta.request_count
    again = syncer("-p", str(tmp_path), "run")
    assert "asked us to wait until" in again.stdout, again.stdout
    assert sandbox.meta.request_count == before and held_emails(sandbox) == set()
