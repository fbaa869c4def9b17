"""The real peer, drt, on the table our first sync is judged on:
`.venv/bin/python bench/drt_peer.py [--members N] [--shape invalid_phones] [--rounds R] [--markdown]`.

drt (PyPI `drt-core==1.2.1`, "Reverse ETL as code"; not the PyPI package `drt`) is installed into its own
venv, `.venv-drt` at the repo root, apart from the product's (skipped when it already holds 1.2.1). Its
source is `bench/run_bench.py`'s `members` table for the same shape, a DuckDB file; its destination is its
generic REST API destination (`drt/destinations/rest_api.py`) in batch mode, POSTing 1,000-row JSON
requests to a loopback sink in its own process (keep-alive, reads and parses each body, answers 200,
counts requests and rows). The sync, as written by `write_project` below:

    model: ref('members')                   # SELECT * FROM members
    destination: {type: rest_api, url: http://127.0.0.1:PORT/rows, method: POST, body_mode: batch,
                  batch_template: '{"rows": {{ rows | tojson_safe }}}', max_records_per_request: 1000}
    sync: {mode: full | incremental, cursor_field: customer_id (incremental only),
           batch_size: 1000 (--drt-batch-size), rate_limit: {requests_per_second: 0}, on_error: fail}

`batch_size` is drt's engine batch (one `load()` call, default 100, which would cap requests at 100 rows);
`max_records_per_request` splits it into requests, so by default one load is one request. Each `load()`
opens a new `httpx.Client`, whose TLS context loads the CA bundle even for plain http (~24 ms here, most
of drt's time at this batch size); `--drt-batch-size 10000` pays it once per 10 requests, a fairer best
case. `requests_per_second: 0` turns drt's pacing off (its default is 10/s).
`mode: full` is drt's resend mode for a REST destination (its `replace` and `mirror` modes are for SQL
destinations only and refused here). `mode: incremental` is its cursor mode: it keeps the largest cursor
seen in `.drt/state.json` and wraps the model in `WHERE customer_id > '<last>'`; `customer_id` is the
cursor because churn's new members get larger ids, so the table needs no `updated_at`.

Each run is a fresh `drt run --output json` process: wall from its start to its exit, and its own peak
RSS (wait4; the warehouse is built and churned in spawned children so this process stays small, as a
child's peak counts its parent's pages). Per mode, on a fresh table and fresh drt state: initial, no
change, then after `churn(..., 1.0, shape)` (1% of members deleted, 1% new inserted). `rows` and
`requests` are what the sink received. drt sends raw rows: no normalisation, no hashing, no diff, and
the REST destination has no delete, so neither mode ever tells the sink about the deleted 1%
(`missed_deletes`); full mode resends every remaining row, incremental sends only the new ids (an
update to an existing row would be missed too, as its id does not move). `--rounds R` repeats each mode
on a fresh table and prints the median of each figure.
"""

from __future__ import annotations

import argparse
import http.server
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_resend import _Sink as ResendSink  # noqa: E402
from run_bench import SHAPES, build_warehouse, churn, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DRT_VENV = ROOT / ".venv-drt"
DRT_VERSION = "1.2.1"
BATCH = 1_000
RUN_TIMEOUT_S = 1800  # a hung drt run is killed, so the bench always ends
COLS = ["mode", "run", "wall_s", "peak_mb", "rows", "requests", "missed_deletes"]
_SPAWN = multiprocessing.get_context("spawn")  # children start small, not as copies of this process


def ensure_drt() -> Path:
    """drt's own venv with drt-core DRT_VERSION; returns its `drt` executable."""
    python = DRT_VENV / "bin" / "python"
    probe = "import importlib.metadata as m; print(m.version('drt-core'))"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip() == DRT_VERSION:
        print(f"# drt-core {DRT_VERSION} already installed in {DRT_VENV}", file=sys.stderr)
    else:
        print(f"# creating {DRT_VENV} and installing drt-core[duckdb]=={DRT_VERSION}", file=sys.stderr)
        subprocess.run(["python3", "-m", "venv", DRT_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", f"drt-core[duckdb]=={DRT_VERSION}"], check=True)
    return DRT_VENV / "bin" / "drt"


_counts = None  # the sink process's shared [requests, rows]


class _Sink(ResendSink):
    """naive_resend's loopback sink (keep-alive, parses each body, answers 200), counting requests and rows.
    drt opens a new client per load() call, so keep-alive only helps within one."""

    def received(self, body) -> None:
        with _counts.get_lock():
            _counts[0] += 1
            _counts[1] += len(body["rows"])


def _serve(ready, counts) -> None:
    global _counts
    _counts = counts
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    ready.put(server.server_address[1])
    server.serve_forever()


def _in_child(target, *args) -> None:
    """Run a DuckDB step in a spawned process, so its memory never counts towards a drt run's peak."""
    proc = _SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{target.__name__} failed (exit {proc.exitcode})")


def write_project(root: Path, warehouse: Path, port: int, mode: str, batch_size: int) -> None:
    """A drt project under ``root``: its profile in ``root/home/.drt`` (drt reads `~/.drt/profiles.yml`)."""
    (root / "home" / ".drt").mkdir(parents=True)
    (root / "project" / "syncs").mkdir(parents=True)
    (root / "home" / ".drt" / "profiles.yml").write_text(f"bench:\n  type: duckdb\n  database: {warehouse}\n")
    (root / "project" / "drt_project.yml").write_text('name: drt_peer\nversion: "0.1"\nprofile: bench\n')
    cursor = "\n  cursor_field: customer_id" if mode == "incremental" else ""
    (root / "project" / "syncs" / "members.yml").write_text(textwrap.dedent(f"""\
        name: members
        model: ref('members')
        destination:
          type: rest_api
          url: http://127.0.0.1:{port}/rows
          method: POST
          headers: {{Content-Type: application/json}}
          body_mode: batch
          batch_template: '{{"rows": {{{{ rows | tojson_safe }}}}}}'
          max_records_per_request: {BATCH}
        sync:
          mode: {mode}{{cursor}}
          batch_size: {batch_size}
          rate_limit: {{requests_per_second: 0}}
          on_error: fail
        """).replace("{cursor}", cursor))


def run_drt(drt: Path, root: Path) -> tuple[float, float, dict]:
    """One `drt run` in a fresh process; returns (wall s, its own peak RSS MB, its JSON report of the sync)."""
    env = dict(os.environ, HOME=str(root / "home"), DO_NOT_TRACK="1")  # telemetry is opt-in; made sure
    out, err = root / "stdout.json", root / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:  # files, not pipes: no pipe can fill and stall it
        started = time.perf_counter()
        proc = subprocess.Popen([drt, "run", "--output", "json"], cwd=root / "project", env=env,
                                stdout=stdout, stderr=stderr)
        watchdog = threading.Timer(RUN_TIMEOUT_S, proc.kill)
        watchdog.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
    if proc.returncode != 0:
        raise SystemExit(f"drt run failed ({proc.returncode}): {err.read_text()[-2000:]}{out.read_text()[-2000:]}")
    report = json.loads(out.read_text())["syncs"][0]
    if report["status"] != "success":
        raise SystemExit(f"drt run ended {report['status']}: {report}")
    return wall, usage.ru_maxrss / 1024, report


def bench_mode(mode: str, drt: Path, workdir: Path, port: int, counts, args: argparse.Namespace) -> list[dict]:
    root, members, shape = workdir / mode, args.members, args.shape
    warehouse = root / "warehouse.duckdb"
    write_project(root, warehouse, port, mode, args.drt_batch_size)
    _in_child(build_warehouse, warehouse, members, shape)
    deleted = members // 100  # what churn(..., 1.0) deletes (and inserts)
    rows = []
    for label in ("initial", "no change", "after 1% churn"):
        if label == "after 1% churn":
            _in_child(churn, warehouse, members, 1.0, shape)
        requests_before, rows_before = counts[:]
        wall, peak, report = run_drt(drt, root)
        requests, received = counts[0] - requests_before, counts[1] - rows_before
        if received != report["rows_synced"]:
            raise SystemExit(f"{mode} {label}: drt reports {report['rows_synced']:,} rows synced, the sink got {received:,}")
        rows.append({"mode": mode, "run": label, "wall_s": wall, "peak_mb": peak, "rows": received, "requests": requests,
                     "missed_deletes": deleted if label == "after 1% churn" else "-"})
        print(f"# {mode:<11} {label:<15} {wall:7.2f} s {peak:6.0f} MB {received:>10,} rows {requests:>6,} requests",
              file=sys.stderr)
    return rows


def median_rows(rounds: list[list[dict]]) -> list[dict]:
    """Each (mode, run) row with the median of each figure over the rounds."""
    merged = []
    for same in zip(*rounds):
        row = dict(same[0])
        for col in ("wall_s", "peak_mb"):
            row[col] = statistics.median(r[col] for r in same)
        for col in ("rows", "requests"):  # counts stay whole numbers
            row[col] = statistics.median_low(r[col] for r in same)
        row["wall_s"], row["peak_mb"] = round(row["wall_s"], 2), round(row["peak_mb"])
        merged.append(row)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--shape", default="invalid_phones", choices=SHAPES)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each mode R times; print the medians")
    parser.add_argument("--drt-batch-size", type=int, default=BATCH,
                        help=f"drt's sync.batch_size, rows per load() call (a multiple of {BATCH:,}: a request never spans two)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.drt_batch_size % BATCH:
        parser.error(f"--drt-batch-size must be a multiple of {BATCH:,}, or some requests carry fewer rows")
    drt = ensure_drt()
    counts = _SPAWN.Array("q", 2)  # [requests, rows], shared with the sink
    ready = _SPAWN.Queue()
    sink = _SPAWN.Process(target=_serve, args=(ready, counts), daemon=True)  # its own process: its own GIL
    sink.start()
    load = os.getloadavg()
    try:
        port = ready.get(timeout=60)
        with tempfile.TemporaryDirectory(prefix="drt-peer-") as tmp:
            rounds = [[row for mode in ("full", "incremental")
                       for row in bench_mode(mode, drt, Path(tmp) / f"round{r}", port, counts, args)]
                      for r in range(args.rounds)]
    finally:
        sink.terminate()
        sink.join()
    print(f"drt-core {DRT_VERSION}, REST destination, {BATCH:,}-row requests, sync.batch_size "
          f"{args.drt_batch_size:,}; {args.members:,} members, shape "
          f"{args.shape}; median of {args.rounds} round(s); load average {load[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print_table(median_rows(rounds), COLS, args.markdown)


if __name__ == "__main__":
    main()
