"""`make ui`: the sandbox and `dagster dev` on one project, started together and stopped together.

A shell running both (``syncer sandbox & trap "kill $sandbox" EXIT; dagster dev``) leaves them running
when it is stopped without a terminal: a SIGTERM or SIGINT sent to it alone is acted on only after its
foreground child exits, and nobody tells ``dagster dev`` (nor its webserver, daemon and code server).
This launcher runs each in its own process group, turns SIGINT and SIGTERM into a SIGINT to both groups
(what a terminal's Ctrl-C does), and also stops them when its parent goes away (``make`` killed by a signal
does not pass it on). It waits for both; whatever is left of a group after ``--grace`` seconds is killed.
Exit code: 0 when stopped on request, else that of the child that stopped on its own.

    python scripts/ui.py --project examples/demo --port 3000 --sandbox-port 8510

Standard library only; the commands are taken from the folder of the Python running it (the venv's bin).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _commands(args: argparse.Namespace) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "sandbox": [str(bin_dir / "syncer"), "-p", args.project, "sandbox", "--host", args.host,
                    "--port", str(args.sandbox_port)],
        "dagster dev": [str(bin_dir / "dagster"), "dev", "-h", args.host, "-p", str(args.port),
                        "-m", "dagster_project.definitions"],
    }


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(children: dict[str, subprocess.Popen], grace: float) -> None:
    """SIGINT every group (what a terminal's Ctrl-C does; ``dagster dev`` shuts its services down on it, while
    it may sit on a SIGTERM), wait up to ``grace`` seconds for the leaders, then kill what is left of each group."""
    for child in children.values():
        if child.poll() is None:
            _signal_group(child, signal.SIGINT)
    deadline = time.monotonic() + grace
    for child in children.values():
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
    for child in children.values():  # a grandchild (dagster's webserver) may outlive its parent: sweep the group
        _signal_group(child, signal.SIGKILL)
        child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ui.py", description=__doc__.split("\n")[0])
    parser.add_argument("--project", default="examples/demo", help="project folder (also SYNCER_PROJECT for Dagster)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--sandbox-port", type=int, default=8510)
    parser.add_argument("--grace", type=float, default=20.0, help="seconds each group has to stop before it is killed")
    args = parser.parse_args(argv)
    args.project = str(Path(args.project).resolve())
    env = {**os.environ, "SYNCER_PROJECT": args.project}
    requested: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _: requested.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _: requested.append(signum))
    parent = os.getppid()
    children = {name: subprocess.Popen(command, env=env, start_new_session=True)
                for name, command in _commands(args).items()}
    print(f"Dagster UI at http://{args.host}:{args.port}, sandbox at http://{args.host}:{args.sandbox_port};"
          " Ctrl-C stops both", flush=True)
    ended = None
    while not requested and ended is None:
        if os.getppid() != parent:  # our parent (make) is gone: nobody is left to pass a signal on
            requested.append(signal.SIGTERM)
            break
        ended = next((name for name, child in children.items() if child.poll() is not None), None)
        time.sleep(0.2)
    if ended is not None and not requested:
        print(f"{ended} stopped (exit code {children[ended].returncode}); stopping the rest", file=sys.stderr, flush=True)
    _stop(children, args.grace)
    return 0 if requested else (children[ended].returncode or 1)


if __name__ == "__main__":
    sys.exit(main())
