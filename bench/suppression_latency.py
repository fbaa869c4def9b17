"""Time to suppression: conversion inserted -> remove acknowledged by the Meta emulator.

    python bench/suppression_latency.py [--count 200] [--max-gap 1.0] [--modes sensor follow]

Builds a project whose two segments are synced to the Meta emulator, then for each mode inserts
``count`` conversions (each for a member both audiences hold) at random gaps while the fast path runs:

- sensor: `dagster-daemon run` on the project's code location with the conversion_suppression sensor;
- follow: `syncer suppress --follow`.

The time of each conversion is its insert time; the ledger records when each destination acknowledged
the remove. Prints p50/p95/max per mode and checks the emulator no longer holds any converter.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers import worker  # noqa: E402

from syncer.delivery.conversions import record_conversion  # noqa: E402
from syncer.delivery.engine import Engine  # noqa: E402
from syncer.delivery.fast_path import percentiles  # noqa: E402
from syncer.ledger.store import Ledger, suppression_events  # noqa: E402
from syncer.project.project import load_project  # noqa: E402
from syncer.sandbox import Sandbox  # noqa: E402

TOKEN = "latency-bench-token"


def build_project(root: Path, port: int, members: int) -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute(f"CREATE TABLE customers AS SELECT i AS customer_id, 'm' || i || '@example.com' AS email FROM range(1, {members} + 1) t(i)")
    con.close()
    (root / "syncer.yml").write_text(
        "warehouse_url: duckdb:///warehouse.duckdb\nconversions:\n  url: sqlite:///events.db\n  table: conversions\n"
        "  poll_interval_ms: 100\n  rules:\n    - {types: [purchase], segments: [abandoners, lapsed]}\n")
    for name in ("abandoners", "lapsed"):
        (root / "segments" / f"{name}.yml").write_text("sql: SELECT * FROM customers\nmember_key: customer_id\nidentifiers: {email: email}\n")
    (root / "destinations" / "meta.yml").write_text(
        f"type: meta_audience\nad_account_id: act_1\naccess_token_env: SANDBOX_META_TOKEN\nendpoint: http://127.0.0.1:{port}\n")
    for audience, name in (("1", "abandoners"), ("2", "lapsed")):
        (root / "syncs" / f"{name}_meta.yml").write_text(f"segment: {name}\ndestination: meta\naudience_id: '{audience}'\nidentifiers: [email]\n")


def removed_count(ledger: Ledger, since: float) -> int:
    import sqlalchemy as sa

    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(suppression_events).where(
            suppression_events.c.outcome == "removed", suppression_events.c.converted_at >= since)).scalar()


def run_mode(mode: str, root: Path, sandbox: Sandbox, members: list[int], gaps: list[float]) -> dict:
    env = {**os.environ, "SANDBOX_META_TOKEN": TOKEN}
    project = load_project(root)
    ledger = Ledger(project.ledger_url())
    record_conversion(project, "0", "warmup")  # the table exists before the fast path starts
    with worker(mode, root, env, ["suppress", "--follow"], stop_wait=30):
        time.sleep(15 if mode == "sensor" else 3)  # the daemon's first tick, or the worker's start
        started = time.time()
        for member, gap in zip(members, gaps):
            time.sleep(gap)
            record_conversion(project, str(member), "purchase")
        deadline = time.monotonic() + 120
        while removed_count(ledger, started) < 2 * len(members) and time.monotonic() < deadline:
            time.sleep(0.2)
    latencies = ledger.suppression_latencies(since=started)
    still_held = {m["EMAIL"] for a in ("1", "2") for m in sandbox.meta.members(a)}
    import hashlib

    leaked = sum(hashlib.sha256(f"m{m}@example.com".encode()).hexdigest() in still_held for m in members)
    return {"mode": mode, **percentiles(latencies), "expected": 2 * len(members), "still_held": leaked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--max-gap", type=float, default=1.0, help="gaps are uniform in [0.05, max-gap] seconds")
    parser.add_argument("--modes", nargs="+", default=["sensor", "follow"])
    args = parser.parse_args()
    rng = random.Random(42)
    rows = []
    with Sandbox(port=0, meta_token=TOKEN) as sandbox, tempfile.TemporaryDirectory(prefix="syncer-latency-") as tmp:
        for index, mode in enumerate(args.modes):
            sandbox.reset()
            sandbox.meta.create_audience("1")
            sandbox.meta.create_audience("2")
            root = Path(tmp) / mode
            build_project(root, int(sandbox.url.rsplit(":", 1)[1]), members=5000)
            os.environ["SANDBOX_META_TOKEN"] = TOKEN
            Engine(load_project(root)).run()
            members = rng.sample(range(1, 5001), args.count)
            gaps = [rng.uniform(0.05, args.max_gap) for _ in members]
            rows.append(run_mode(mode, root, sandbox, members, gaps))
    print(f"{'mode':>8} {'count':>6} {'p50_s':>7} {'p95_s':>7} {'p99_s':>7} {'max_s':>7} {'expected':>9} {'still_held':>10}")
    for r in rows:
        print(f"{r['mode']:>8} {r.get('count', 0):>6} {r.get('p50', float('nan')):>7} {r.get('p95', float('nan')):>7} "
              f"{r.get('p99', float('nan')):>7} {r.get('max', float('nan')):>7} {r['expected']:>9} {r['still_held']:>10}")


if __name__ == "__main__":
    main()
