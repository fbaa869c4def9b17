"""The CLI's rough edges, each as a user meets it: one line instead of a traceback, a hint that works when
pasted, a poll that tells "no answer" from "pending", a sandbox banner naming every emulator, `make ui`
keeping tokens off the screen and stopping everything it started, and a missing audience's way out."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests

from destinations.registry import SPECS
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import FAKE, person, write_customers, write_project
from tests.syncer.test_jobs import data_manager_project
from tests.test_cli import ROOT, TOKEN, emails, meta_project, syncer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_suppress_without_the_conversions_table_is_one_line_naming_table_database_and_what_to_do(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(1)])
    write_project(tmp_path, destination=FAKE)
    with (tmp_path / "syncer.yml").open("a") as f:
        f.write("conversions:\n  url: sqlite:///events.db\n  table: orders_done\n"
                "  rules:\n    - types: [purchase]\n      segments: [buyers]\n")
    result = syncer("-p", str(tmp_path), "suppress")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"the conversions table 'orders_done' does not exist in the database {tmp_path / 'events.db'}" in line
    assert "`syncer convert MEMBER_KEY` creates it" in line and "conversions.table" in line


def test_plan_prints_an_apply_command_that_works_pasted_in_another_folder(tmp_path: Path) -> None:
    project = tmp_path / "my project"
    project.mkdir()
    write_customers(project / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(project, destination=FAKE)
    result = syncer("-p", str(project), "plan")
    assert result.returncode == 0, result.stderr
    hint = result.stdout.split("apply it with: ", 1)[1].strip()
    args = shlex.split(hint)
    assert args[:3] == ["syncer", "-p", str(project)] and args[3] == "apply"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pasted = subprocess.run([sys.executable, "-m", "syncer.cli", *args[1:]], capture_output=True, text=True, cwd=elsewhere,
                            env={k: v for k, v in os.environ.items() if k != "SYNCER_PROJECT"}, timeout=120)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert Ledger(load_project(project).ledger_url()).held_count("buyers_sync") == 5


def test_jobs_tells_a_platform_that_did_not_answer_from_a_pending_job(tmp_path: Path) -> None:
    env = {"DM_TOKEN": "sandbox-datamanager-key"}
    with Sandbox(port=0) as sandbox:
        data_manager_project(tmp_path, sandbox, 10)
        assert syncer("-p", str(tmp_path), "run", env=env).returncode == 0
        answered = json.loads(syncer("-p", str(tmp_path), "--json", "jobs", env=env).stdout)["jobs"]
    [job] = answered
    assert job["answered"] is True and job["not_answered_because"] is None and not job["final"]
    pending_status = job["status"]
    # the sandbox is gone: the same job now gets no answer, which is not the same as pending
    [job] = json.loads(syncer("-p", str(tmp_path), "--json", "jobs", env=env).stdout)["jobs"]
    assert job["answered"] is False and job["status"] == pending_status
    assert job["not_answered_because"].startswith("the platform did not answer: ")  # with the platform's own words
    assert "could not reach" in job["not_answered_because"] or "connect" in job["not_answered_because"].lower()
    table = syncer("-p", str(tmp_path), "jobs", env=env)
    assert f"no answer (last said {pending_status})" in table.stdout and "did not answer" in table.stdout


def test_the_sandbox_banner_names_every_emulator_and_the_endpoint_each_destination_type_uses(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(tmp_path), "sandbox", "--port", "0",
                             "--state", str(tmp_path / "sandbox.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        while not lines or "Ctrl-C to stop" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    banner = "".join(lines)
    url = re.search(r"sandbox listening on (http://127\.0\.0\.1:\d+)", banner).group(1)
    for spec in SPECS.values():
        if spec.emulator:
            expected = url if spec.mount == "" else f"{url}/{spec.mount}"
            assert f"{spec.type}" in banner and f"endpoint: {expected}\n" in banner.replace(" (transport: data_manager)", ""), banner
    assert "(transport: data_manager)" in banner


def _stubs(folder: Path) -> Path:
    """Stand-ins for the venv's python, syncer and dagster: each records its arguments and the sandbox token."""
    folder.mkdir()
    script = textwrap.dedent(f"""\
        #!/bin/sh
        echo "$(basename "$0") $* token=${{SANDBOX_META_TOKEN:-unset}}" >> {folder / 'calls.log'}
        """)
    for name in ("python", "syncer", "dagster"):
        (folder / name).write_text(script)
        (folder / name).chmod((folder / name).stat().st_mode | stat.S_IEXEC)
    (folder / ".installed").touch()
    return folder


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_ui_keeps_the_sandbox_tokens_off_the_screen_and_still_passes_them(tmp_path: Path) -> None:
    stubs = _stubs(tmp_path / "bin")
    home_existed = (ROOT / ".dagster_home").exists()  # the target makes it, as `make ui` does
    try:
        result = subprocess.run(["make", "--no-print-directory", "ui", f"BIN={stubs}", f"STAMP={stubs / '.installed'}"],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        if not home_existed:
            shutil.rmtree(ROOT / ".dagster_home", ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for value in ("sandbox-meta-token", "sandbox-datamanager-key", "sandbox-klaviyo-key", "sandbox-twilio-key"):
        assert value not in result.stdout + result.stderr
    calls = (stubs / "calls.log").read_text()
    assert "token=sandbox-meta-token" in calls  # the launcher (or the commands) still get them


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _alive(processes: list[psutil.Process]) -> list[str]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT to the launcher", "SIGTERM to the launcher", "SIGTERM to make"])
def test_the_ui_launcher_stops_the_sandbox_and_dagster_dev_without_a_terminal(tmp_path: Path, how: str) -> None:
    project = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", project, ignore=shutil.ignore_patterns(".syncer", "*.duckdb", "events.db"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    port, sandbox_port = free_port(), free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SANDBOX_META_TOKEN": TOKEN}
    launcher = [sys.executable, str(ROOT / "scripts" / "ui.py"), "--project", str(project), "--port", str(port),
                "--sandbox-port", str(sandbox_port)]
    # "make": a parent that dies of the signal without passing it on, as make does
    command = ["sh", "-c", shlex.join(launcher) + "; exit $?"] if how.endswith("make") else launcher
    log = open(tmp_path / "ui.log", "wb")
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while True:  # up when the UI answers and the sandbox listens
            try:
                if (requests.get(f"http://127.0.0.1:{port}/server_info", timeout=1).ok
                        and requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats", timeout=1).ok):
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the launcher's children did not come up"
            time.sleep(0.5)
        started = _descendants(proc.pid)
        assert any("dagster" in " ".join(p.cmdline()) for p in started) and any("sandbox" in p.cmdline() for p in started)
        proc.send_signal(signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM)
        proc.wait(timeout=120)
        gone = time.monotonic() + 60  # the launcher outlives its parent "make" while it stops the children
        while _alive(started) and time.monotonic() < gone:
            time.sleep(0.5)
        assert _alive(started) == [], (tmp_path / "ui.log").read_text()[-3000:]
    finally:
        for process in started:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def test_an_unknown_meta_audience_says_the_syncer_can_create_it(tmp_path: Path) -> None:
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:  # no audience 1001 there
        write_customers(tmp_path / "warehouse.duckdb", emails(1, 4))
        meta_project(tmp_path, int(sandbox.url.rsplit(":", 1)[1]))
        result = syncer("-p", str(tmp_path), "run")
    assert result.returncode == 1
    output = " ".join((result.stdout + result.stderr).split())
    assert "audience 1001 does not exist" in output, output
    assert "let the syncer create it with `create_audience:`" in output


def test_a_broken_segment_is_named_by_plan_and_run_while_the_other_syncs_go_on(tmp_path: Path) -> None:
    """Before: one segment's failing query aborted `plan` and `run` for every sync."""
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 4)])
    write_project(tmp_path, destination=FAKE)
    (tmp_path / "segments" / "lapsed.yml").write_text(
        "sql: SELECT * FROM customers WHERE no_such_column\nmember_key: customer_id\nidentifiers: {email: email}\n")
    (tmp_path / "syncs" / "lapsed_sync.yml").write_text(
        "segment: lapsed\ndestination: dest\naudience_id: '1002'\nidentifiers: [email]\n")
    planned = syncer("-p", str(tmp_path), "plan")
    text = " ".join(planned.stdout.split())
    assert planned.returncode == 1 and "Traceback" not in planned.stderr
    assert "lapsed_sync not planned: segment 'lapsed': the query failed" in text and "buyers_sync" in text
    ran = syncer("-p", str(tmp_path), "--json", "run")
    assert ran.returncode == 1, ran.stderr
    reports = {r["sync"]: r for r in json.loads(ran.stdout)["syncs"]}
    assert (reports["buyers_sync"]["status"], reports["buyers_sync"]["added"]) == ("ok", 3)
    assert reports["lapsed_sync"]["status"] == "failed" and "no_such_column" in reports["lapsed_sync"]["reason"]


def test_members_left_out_for_consent_are_counted_in_the_run_summary(tmp_path: Path) -> None:
    """Before: 265 of 2,076 members of the demo's high_value were left out for lack of ads consent and no
    figure said so."""
    write_customers(tmp_path / "warehouse.duckdb",
                    [person(i) for i in range(1, 6)] + [person(i, ads_consent=False) for i in range(6, 9)])
    write_project(tmp_path, destination=FAKE)
    ran = syncer("-p", str(tmp_path), "--json", "run")
    [report] = json.loads(ran.stdout)["syncs"]
    assert (report["added"], report["no_consent"]) == (5, 3)
    text = " ".join(syncer("-p", str(tmp_path), "run").stdout.split())
    assert "buyers_sync: 3 segment members left out: their consent does not allow this sync" in text


def test_demo_without_a_project_finds_the_shipped_demo() -> None:
    """`make demo` runs `syncer demo` in the repository's root, which holds no syncer.yml: the demo project is
    then examples/demo. Since the engine's packages moved (syncer/cli/demo.py), it looked in syncer/examples."""
    from syncer.cli.demo import DEMO_PROJECT

    assert DEMO_PROJECT == ROOT / "examples" / "demo" and (DEMO_PROJECT / "syncer.yml").is_file()
