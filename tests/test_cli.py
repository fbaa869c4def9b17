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

from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import FAKE, meta_on, person, write_customers, write_project

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
    return write_project(root, destination=meta_on(f"http://127.0.0.1:{port}"), **kwargs)


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


def test_a_run_never_loads_pandas(tmp_path: Path, sandbox: Sandbox) -> None:
    """pyarrow would import pandas (33 MB, 0.25 s) only to ask whether a value is a DataFrame."""
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 51))
    meta_project(tmp_path, _port(sandbox))
    result = syncer("-p", str(tmp_path), "--json", "run", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["syncs"][0]["added"] == 50
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    # a declined import is still listed as "pandas"; pandas itself would load its submodules
    assert "pyarrow" in imported and not [m for m in imported if m.startswith("pandas.")]


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
    # the batch in flight at the kill (its remove landed, never recorded) is sent again before planning
    assert json.loads(rerun.stdout)["syncs"][0]["settled"] == 10_000
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
    assert first["created_audience"] == created[0]["id"]  # before: the new id was printed nowhere
    write_customers(tmp_path / "warehouse.duckdb", emails(1, 26))
    second = json.loads(syncer("-p", str(tmp_path), "--json", "run").stdout)["syncs"][0]
    assert second["added"] == 5 and len([a for a in sandbox.meta.audiences() if a["name"] == "Buyers"]) == 1
    assert second["created_audience"] is None
    other = tmp_path / "other"  # a second project, read as a person reads the summary
    other.mkdir()
    write_customers(other / "warehouse.duckdb", emails(1, 4))
    meta_project(other, _port(sandbox))
    (other / "syncs" / "buyers_sync.yml").write_text(sync_file.read_text().replace("name: Buyers", "name: Others"))
    text = " ".join(syncer("-p", str(other), "run").stdout.split())
    [made] = [a["id"] for a in sandbox.meta.audiences() if a["name"] == "Others"]
    assert f'buyers_sync: created audience {made} (kept in the ledger; to pin it, put audience_id: "{made}"' in text


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


# --- faults of the files we keep: one message naming the file and what to do, exit 1, no traceback ----------


def _honour_file_permissions() -> None:
    """``preexec_fn`` for a child that honours file permissions even when the tests run as root: it drops
    CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from its bounding set before exec, as
    ``setpriv --bounding-set=-dac_override,...`` does. Any other user honours them already."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _as_user(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncer.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, preexec_fn=_honour_file_permissions)


def _require_honoured_permissions(folder: Path) -> None:
    probe = folder / "read-only-probe"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        result = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'a')"], capture_output=True,
                                preexec_fn=_honour_file_permissions)
    except subprocess.SubprocessError:
        pytest.skip("this machine lets no process give up root's access to files")
    finally:
        probe.unlink()
    if result.returncode == 0:
        pytest.skip("this process writes read-only files regardless of their permissions")


def _leave_wal_behind(ledger: Path) -> None:
    """The -wal and -shm a process leaves when it dies with the ledger open (SQLite deletes them on a clean close)."""
    code = (f"import os, sqlite3; c = sqlite3.connect({str(ledger)!r}); c.execute('PRAGMA journal_mode=WAL');"
            " c.execute('UPDATE runs SET status = status'); c.commit(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("read_only", ["the ledger and its folder", "the -wal and -shm beside it"])
def test_a_read_only_ledger_is_one_message_naming_it_and_no_run_is_left_running(tmp_path: Path, read_only: str) -> None:
    """Before: a traceback (attempt to write a readonly database); in the field, a SIGBUS with no message."""

    _require_honoured_permissions(tmp_path)
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE)
    assert syncer("-p", str(tmp_path), "run").returncode == 0
    state = tmp_path / ".syncer"
    ledger = state / "ledger.db"
    if read_only == "the ledger and its folder":
        locked = [ledger, state]
    else:
        _leave_wal_behind(ledger)
        locked = [state / "ledger.db-wal", state / "ledger.db-shm"]
    modes = {path: path.stat().st_mode for path in locked}
    for path in locked:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        results = [_as_user("-p", str(tmp_path), command) for command in ("run", "history", "status")]
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    for result in results:
        assert result.returncode == 1, (result.returncode, result.stderr)  # an exit code, not a signal
        assert "Traceback" not in result.stderr, result.stderr
        assert f"error: ledger {ledger}" in result.stderr and "writable by this user" in result.stderr, result.stderr
    history = json.loads(syncer("-p", str(tmp_path), "--json", "history").stdout)["runs"]
    assert [run["status"] for run in history] == ["ok"]  # the refused runs were never recorded, so none is "running"


_SNAPSHOT_DISK_FULL = """
import errno, os, sys
_replace = os.replace
def replace(src, dst, *args, **kwargs):  # the disk fills up just as a snapshot is written
    if str(dst).endswith(".held.parquet"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
sys.argv[0] = "syncer"
from syncer.cli.main import main
main()
"""


def _run_into_a_full_disk_at_the_snapshot_refresh(root: Path) -> subprocess.CompletedProcess:
    """A first run, then 45 joiners (a large change, so the apply refreshes the snapshot) on a disk that is full."""

    write_customers(root / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(root, destination=FAKE)
    assert syncer("-p", str(root), "run").returncode == 0
    write_customers(root / "warehouse.duckdb", [person(i) for i in range(1, 51)])
    return subprocess.run([sys.executable, "-c", _SNAPSHOT_DISK_FULL, "-p", str(root), "run"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_a_full_disk_during_the_snapshot_refresh_is_one_message_naming_the_snapshot(tmp_path: Path) -> None:
    result = _run_into_a_full_disk_at_the_snapshot_refresh(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    snapshot = tmp_path / ".syncer" / "snapshots" / "buyers_sync.held.parquet"
    assert f"cannot write the snapshot {snapshot} (No space left on device): free space on that disk" in out, out


def test_a_run_cut_short_by_a_full_disk_is_failed_in_history_not_running(tmp_path: Path) -> None:
    assert _run_into_a_full_disk_at_the_snapshot_refresh(tmp_path).returncode == 1
    history = json.loads(syncer("-p", str(tmp_path), "--json", "history").stdout)["runs"]
    assert [run["status"] for run in history] == ["failed", "ok"]
    assert "cannot write the snapshot" in history[0]["reason"]


@pytest.mark.parametrize("damage", ["rows cut short", "rows missing", "header cut short"])
def test_apply_of_a_damaged_plan_names_the_file_and_says_to_plan_again(tmp_path: Path, damage: str) -> None:
    """Before: a raw pyarrow traceback ("Parquet magic bytes not found in footer")."""

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE)
    folder = Path(json.loads(syncer("-p", str(tmp_path), "--json", "plan").stdout)["plan"])
    damaged = folder / ("plan.json" if damage == "header cut short" else "buyers_sync.parquet")
    if damage == "rows missing":
        damaged.unlink()
    else:
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    result = syncer("-p", str(tmp_path), "apply", str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: plan file {damaged} " in result.stderr and "plan again with `syncer plan`" in result.stderr, result.stderr
    assert json.loads(syncer("-p", str(tmp_path), "--json", "history").stdout)["runs"] == []


# --- overlapping runs: a lease per sync ----------------------------------------------------------------------


def test_two_runs_at_once_add_every_member_once_and_the_loser_names_the_holder(tmp_path: Path, sandbox: Sandbox) -> None:
    """Two `syncer run` started together on one SQLite ledger, the platform slow: the first add waits at the
    emulator until the other process is done (``HeldAdds``). Before leases both planned the same adds and
    both sent them: every member went twice. Now the second run skips the sync (status ``busy``, exit code 5)
    naming the first's pid and since when, in its output and its history."""
    from syncer.cli import common
    from tests.syncer.test_leases import HeldAdds, check_one_won, meta_project, run_at_once

    root = meta_project(tmp_path, sandbox, 300)
    gate = HeldAdds(sandbox)
    results = run_at_once(root, gate)
    lost = check_one_won(results, gate, sandbox, 300)
    [code] = [code for _, code, report in results if report["status"] == "busy"]
    assert code == common.EXIT_BUSY == 5  # another run holds the sync: not a failure, not a success either
    history = json.loads(syncer("-p", str(root), "--json", "history").stdout)["runs"]
    assert sorted(r["status"] for r in history) == ["busy", "ok"]
    assert [r["reason"] for r in history if r["status"] == "busy"] == [lost["reason"]]
    again = syncer("-p", str(root), "--json", "run")  # the lease was released: the next run goes ahead
    assert json.loads(again.stdout)["syncs"][0]["status"] == "ok" and gate.add_rows() == [300]


def test_run_wait_waits_for_the_holder_then_skips_the_sync_saying_how_long_it_waited(tmp_path: Path) -> None:
    from tests.syncer.test_leases import OTHER

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 4)])
    write_project(tmp_path, destination=FAKE)
    Ledger(load_project(tmp_path).ledger_url()).acquire_lease("buyers_sync", OTHER, ttl=86_400)
    result = syncer("-p", str(tmp_path), "run", "--wait", "0.2")
    assert result.returncode == 5, result.stderr
    text = " ".join(result.stdout.split())
    assert "syncer run (run 7, pid 4242 on db-host-2) holds this sync since" in text
    assert "skipped after waiting 0.2 s, nothing was sent for it" in text
    refused = syncer("-p", str(tmp_path), "run", "--wait", "-1")
    assert refused.returncode == 2 and "--wait" in refused.stderr


def test_a_dagster_materialization_beside_a_running_sync_skips_it_naming_the_cli_run(
        tmp_path: Path, sandbox: Sandbox, monkeypatch) -> None:
    """A `syncer run` is mid-apply (its add held at the emulator) when Dagster materializes the same sync: the
    apply asset sends nothing and is not materialized; its observation says who holds the sync. Before, Dagster
    added every member a second time."""
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from tests.dagster_project.test_defs import everything
    from tests.syncer.test_leases import HeldAdds, meta_project

    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    root = meta_project(tmp_path, sandbox, 200)
    gate = HeldAdds(sandbox)
    cli = subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(root), "--json", "run"], cwd=ROOT,
                           env=dict(os.environ, SANDBOX_META_TOKEN=TOKEN), stdout=subprocess.PIPE, text=True)
    try:
        while not gate.first.wait(0.1):  # until the CLI run, holding the lease, has its add at the platform
            assert cli.poll() is None, "the CLI run ended before sending its add"
        result = dg.materialize(everything(build_definitions(root)))
    finally:
        gate.release()
        out, _ = cli.communicate(timeout=300)
    assert result.success and "dest/buyers_sync" not in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    [observed] = [e.asset_observation_data.asset_observation for e in result.all_events
                  if e.event_type_value == "ASSET_OBSERVATION"]
    note = observed.metadata["note"].value
    assert observed.metadata["status"].value == "busy" and f"syncer run (run 1, pid {cli.pid} on " in note
    assert json.loads(out)["syncs"][0]["added"] == 200
    assert gate.add_rows() == [200] and len(sandbox.meta.members("1001")) == 200
