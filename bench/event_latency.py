"""Real-time segments: event inserted -> add acknowledged by the Meta emulator, and -> trigger text accepted
by the Twilio emulator, on a 1M-member DuckDB warehouse.

    python bench/event_latency.py [--members 1000000] [--count 100] [--max-gap 1.0] [--modes follow sensor]

The warehouse holds ``members`` customers (email, phone, SMS consent for 1 in 20) and their cart events;
the segment ``cart_abandoners`` is every customer with a cart event whose ``expires_at`` (last cart event +
24 h) has not passed, computed over the whole table; ``events: [cart_add]``. Two syncs: Meta (mirror) and
Twilio (trigger: one text per entry). A batch run first syncs the members who already have carts, then,
per mode, ``count`` cart events for customers not in the segment are inserted at random gaps while the
worker runs:

- follow: `syncer follow`;
- sensor: `dagster-daemon run` on the project's code location with the `realtime_follow` sensor.

Each event is written by a short connection of its own (DuckDB lets one process write a file at a time,
so the worker reads with read-only connections between writes, as it would beside a loader). Latency is
the event's own time (``occurred_at``, set just before its insert) to the platform's acknowledgement, as
the ledger records it (``stream_changes``). Prints p50/p95/p99/max per mode and sync, and checks that
every event's member reached Meta and was texted exactly once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers import worker  # noqa: E402

from syncer.delivery.engine import Engine  # noqa: E402
from syncer.ledger.store import Ledger  # noqa: E402
from syncer.ledger.suppressions import percentiles  # noqa: E402
from syncer.ledger.tables import stream_changes  # noqa: E402
from syncer.project.project import load_project  # noqa: E402
from syncer.sandbox import Sandbox  # noqa: E402

TOKEN = "event-bench-token"
TWILIO = {"SANDBOX_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000001", "SANDBOX_TWILIO_KEY": "event-bench-twilio"}
SEGMENT_SQL = """\
  SELECT c.customer_id, c.email, c.phone, c.sms_ok, max(e.occurred_at) + INTERVAL 24 HOUR AS cart_expires_at
  FROM customers c JOIN cart_events e ON e.customer_id = c.customer_id AND e.type = 'cart_add'
  GROUP BY ALL"""


def build_project(root: Path, port: int, members: int, carts: int) -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute(f"""CREATE TABLE customers AS SELECT i AS customer_id, 'm' || i || '@example.com' AS email,
                    '+1415' || lpad(CAST(2000000 + i AS VARCHAR), 7, '0') AS phone, i % 20 = 0 AS sms_ok
                    FROM range(1, {members} + 1) t(i)""")
    con.execute("CREATE TABLE cart_events (event_id BIGINT, customer_id BIGINT, type VARCHAR, occurred_at TIMESTAMP)")
    # members with a cart already: the audience the batch run builds first (event ids below the bench's)
    con.execute(f"""INSERT INTO cart_events SELECT i, i * 7 % {members} + 1, 'cart_add', now()::TIMESTAMP - INTERVAL 1 HOUR
                    FROM range(1, {carts} + 1) t(i)""")
    con.close()
    (root / "syncer.yml").write_text(
        "warehouse_url: duckdb:///warehouse.duckdb\ngates: {max_removal_pct: 100}\n"
        "events: {table: cart_events, cursor_column: event_id, member_key_column: customer_id, type_column: type,"
        " time_column: occurred_at, poll_interval_ms: 50}\n")
    (root / "segments" / "cart_abandoners.yml").write_text(
        f"sql: |\n{SEGMENT_SQL}\nmember_key: customer_id\nidentifiers: {{email: email, phone: phone}}\n"
        "consent: {sms: sms_ok}\nevents: [cart_add]\nexpires_at: cart_expires_at\n")
    (root / "destinations" / "meta.yml").write_text(
        f"type: meta_audience\nad_account_id: act_1\naccess_token_env: SANDBOX_META_TOKEN\nendpoint: http://127.0.0.1:{port}\n")
    (root / "destinations" / "twilio.yml").write_text(
        "type: twilio_sms\naccount_sid_env: SANDBOX_TWILIO_ACCOUNT_SID\nauth_token_env: SANDBOX_TWILIO_KEY\n"
        f"from_number: '+15005550006'\nendpoint: http://127.0.0.1:{port}/twilio\nsandbox_time: '2026-06-02T17:00:00+00:00'\n"
        "messages: {cart_reminder: 'You left something in your cart. Reply STOP to opt out.'}\n")
    (root / "syncs" / "cart_meta.yml").write_text("segment: cart_abandoners\ndestination: meta\naudience_id: '1'\nidentifiers: [email]\n"
                                                  "stream_gates: {max_adds: 100000}\n")
    (root / "syncs" / "cart_sms.yml").write_text("segment: cart_abandoners\ndestination: twilio\naudience_id: cart_reminder\n"
                                                 "mode: trigger\nidentifiers: [phone]\nstream_gates: {max_adds: 100000}\n")


def insert_event(warehouse: Path, event_id: int, customer: int) -> float:
    """One cart event, written by a connection of its own; returns its time (epoch)."""
    while True:
        try:
            con = duckdb.connect(str(warehouse))
        except duckdb.IOException:  # the worker is reading: a DuckDB file has one writer or many readers
            time.sleep(0.002)
            continue
        try:
            at = time.time()
            con.execute("INSERT INTO cart_events VALUES (?, ?, 'cart_add', ?)",
                        [event_id, customer, dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(tzinfo=None)])
            return at
        finally:
            con.close()


def changes(ledger: Ledger, since: float) -> list[tuple[str, str, float]]:
    with ledger.engine.connect() as conn:
        q = sa.select(stream_changes.c.sync, stream_changes.c.member_key, stream_changes.c.acked_at - stream_changes.c.event_at
                      ).where(stream_changes.c.event_at >= since, stream_changes.c.op == "add")
        return [tuple(row) for row in conn.execute(q)]


def run_mode(mode: str, root: Path, sandbox: Sandbox, customers: list[int], gaps: list[float], texts_before: int) -> list[dict]:
    env = {**os.environ, "SANDBOX_META_TOKEN": TOKEN, **TWILIO}
    ledger = Ledger(load_project(root).ledger_url())
    texted = sum(1 for m in customers if m % 20 == 0)
    with worker(mode, root, env, ["follow"]):
        time.sleep(15 if mode == "sensor" else 4)  # the daemon's first tick, or the worker's start
        started = time.time()
        next_id = 10_000_000
        for customer, gap in zip(customers, gaps):
            time.sleep(gap)
            next_id += 1
            insert_event(root / "warehouse.duckdb", next_id, customer)
        deadline = time.monotonic() + 120
        while len(changes(ledger, started)) < len(customers) + texted and time.monotonic() < deadline:
            time.sleep(0.2)
    found = changes(ledger, started)
    import hashlib

    on_meta = {m["EMAIL"] for m in sandbox.meta.members("1")}
    missing = sum(hashlib.sha256(f"m{c}@example.com".encode()).hexdigest() not in on_meta for c in customers)
    texts = [m["to"] for m in sandbox.twilio.messages[texts_before:]]
    out = []
    for sync, expected in (("cart_meta", len(customers)), ("cart_sms", texted)):
        seconds = [s for name, _, s in found if name == sync]
        out.append({"mode": mode, "sync": sync, **percentiles(seconds), "expected": expected})
    out.append({"mode": mode, "sync": "check", "missing_on_meta": missing, "texts": len(texts), "distinct_texts": len(set(texts))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--carts", type=int, default=20_000, help="members already in the segment before the bench")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--max-gap", type=float, default=1.0, help="gaps are uniform in [0.05, max-gap] seconds")
    parser.add_argument("--modes", nargs="+", default=["follow", "sensor"])
    parser.add_argument("--keep", metavar="DIR", help="build the projects in DIR and keep them (ledger, worker logs)")
    args = parser.parse_args()
    rng = random.Random(7)
    os.environ.update({"SANDBOX_META_TOKEN": TOKEN, **TWILIO})
    rows = []
    with Sandbox(port=0, meta_token=TOKEN) as sandbox, tempfile.TemporaryDirectory(prefix="syncer-events-") as scratch:
        tmp = args.keep or scratch
        for mode in args.modes:
            sandbox.reset()
            sandbox.meta.create_audience("1")
            root = Path(tmp) / mode
            build_project(root, int(sandbox.url.rsplit(":", 1)[1]), args.members, args.carts)
            started = time.perf_counter()
            Engine(load_project(root)).run()
            print(f"{mode}: initial batch run {time.perf_counter() - started:.1f} s ({args.carts:,} carts)", flush=True)
            in_segment = {i * 7 % args.members + 1 for i in range(1, args.carts + 1)}
            # half of them with SMS consent (every 20th customer): a trigger text each
            pool = [c for c in range(20, args.members + 1, 20) if c not in in_segment and c + 1 not in in_segment]
            customers = rng.sample(pool, args.count // 2) + rng.sample([c + 1 for c in pool], args.count - args.count // 2)
            gaps = [rng.uniform(0.05, args.max_gap) for _ in customers]
            texts_before = len(sandbox.twilio.messages)
            result = run_mode(mode, root, sandbox, customers, gaps, texts_before)
            rows += result
    print(f"{'mode':>7} {'sync':>10} {'count':>6} {'expected':>8} {'p50_s':>7} {'p95_s':>7} {'p99_s':>7} {'max_s':>7}")
    for r in rows:
        if r["sync"] == "check":
            print(f"{r['mode']:>7} check: {r['missing_on_meta']} event members missing on Meta; {r['texts']} texts,"
                  f" {r['distinct_texts']} distinct numbers")
            continue
        print(f"{r['mode']:>7} {r['sync']:>10} {r.get('count', 0):>6} {r['expected']:>8} {r.get('p50', float('nan')):>7}"
              f" {r.get('p95', float('nan')):>7} {r.get('p99', float('nan')):>7} {r.get('max', float('nan')):>7}")


if __name__ == "__main__":
    main()
