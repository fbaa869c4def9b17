"""Dagster against the CLI on the same data: `.venv/bin/python bench/dagster_vs_cli.py [--customers N] [--rounds R]`.

A copy of the demo project over a fresh sample warehouse (20,000 customers by default) and the sandbox
emulators, synced once so every later run is a no-change run. Then, alternating R times:

- `syncer run`: one process, as an operator or cron runs it;
- `dagster asset materialize --select '*'`: one process that loads the code location and materializes
  every asset of the demo (segments, plans, syncs and their checks) with the code location's executor,
  as a schedule's run worker does.

Prints each wall time, the medians and their ratio (the target is at most 1.5x). Both commands are timed
from process start to exit, imports included. Run it on a quiet machine: it measures start-up too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRETS = {"SANDBOX_META_TOKEN": "sandbox-meta-token", "SANDBOX_DATAMANAGER_KEY": "sandbox-datamanager-key",
           "SANDBOX_KLAVIYO_KEY": "sandbox-klaviyo-key", "SANDBOX_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000001",
           "SANDBOX_TWILIO_KEY": "sandbox-twilio-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 3):  # 3: a gate held a sync, which is an answer, not a failure
        sys.exit(f"{' '.join(cmd[:3])} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncer-dagster-bench-"))
    project = work / "demo"
    shutil.copytree(ROOT / "examples" / "demo", project, ignore=shutil.ignore_patterns(".syncer", "*.duckdb", "*.db"))
    port = free_port()
    env = dict(os.environ, **SECRETS, SANDBOX_URL=f"http://127.0.0.1:{port}", SYNCER_PROJECT=str(project),
               DAGSTER_HOME=str(work / "dagster_home"), PYTHONPATH=str(ROOT))
    (work / "dagster_home").mkdir()
    shutil.copy(ROOT / "dagster_project" / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
    syncer = [str(BIN / "syncer"), "-p", str(project)]
    subprocess.run(syncer + ["sample-data", "--customers", str(args.customers)], env=env, check=True, capture_output=True)
    sandbox = subprocess.Popen(syncer + ["sandbox", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        subprocess.run(syncer + ["run", "--approve"], env=env, check=True, capture_output=True)
        # the CLI without $DAGSTER_HOME: it would report its run to Dagster too (one history), which an
        # operator without Dagster does not pay for
        cli_env = {k: v for k, v in env.items() if k != "DAGSTER_HOME"}
        dagster = [str(BIN / "dagster"), "asset", "materialize", "--select", "*", "-m", "dagster_project.definitions"]
        timed(dagster, env)  # the first Dagster run creates its storage: not part of the comparison
        cli, dag = [], []
        for round_ in range(1, args.rounds + 1):
            cli.append(timed(syncer + ["run"], cli_env))
            dag.append(timed(dagster, env))
            print(f"round {round_}: syncer run {cli[-1]:.2f} s, dagster materialize all {dag[-1]:.2f} s", flush=True)
        ratio = statistics.median(dag) / statistics.median(cli)
        print(f"median: syncer run {statistics.median(cli):.2f} s, dagster {statistics.median(dag):.2f} s, "
              f"ratio {ratio:.2f}x (target <= 1.5x) on {args.customers:,} customers, no change")
    finally:
        sandbox.terminate()
        sandbox.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
