"""The long-running worker a latency benchmark times: a `syncer` command (``follow`` mode) or the Dagster
daemon running the project's sensors (``sensor`` mode), each in its own process group so that stopping it
stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def worker(mode: str, root: Path, env: dict, syncer_args: list[str], *, stop_wait: float = 60) -> Iterator[subprocess.Popen]:
    """Run ``syncer -p root *syncer_args`` (mode ``follow``) or ``dagster-daemon`` over the project (mode
    ``sensor``), its output in ``root/<mode>.log``; on exit, SIGTERM to its group, SIGKILL after ``stop_wait``."""
    if mode == "follow":
        args = [sys.executable, "-m", "syncer.cli.main", "-p", str(root), *syncer_args]
    else:
        home = root / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**env, "DAGSTER_HOME": str(home), "SYNCER_PROJECT": str(root)}
        args = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "dagster_project.definitions"]
    with open(root / f"{mode}.log", "wb") as log:
        # default signal handling in the child, whatever this process ignores
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: (signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=stop_wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
