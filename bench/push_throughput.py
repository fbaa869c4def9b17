"""Push throughput of each ad connector to its emulator: `python bench/push_throughput.py [--members N]`.

The emulators run in a child process (so the figures are the syncer's side: rows per second, requests,
and this process's peak memory); members are pre-hashed so only the connector and the wire are timed.
Each platform gets N adds in batches of its limit, then N removes.

Options for the cost of applying a plan (see bench/RESULTS.md):
  --platforms meta             only these platforms (comma-separated: meta, google data manager, google ads api)
  --identifiers email,phone    what each member carries (default email; Meta then sends its multi-key schema)
  --ledger sqlite|URL          also commit each batch to a ledger, as ``syncer.delivery.apply`` does, so the figure is
                               connector + emulator + ledger; ``sqlite`` is a fresh file in a temporary folder
Members are in member_key order, as a plan sends them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destinations.base import AudienceRef, Member, RowStatus  # noqa: E402

CHILD = r"""
import json, sys, os
sys.path.insert(0, sys.argv[1])
from syncer.sandbox import Sandbox
from destinations.google_customer_match.ads_api_emulator import start_google_ads_emulator
sb = Sandbox(port=0, meta_token="bench").start()
sb.meta.create_audience("777")
sb.datamanager.create_user_list("1234567890", "888")
ads = start_google_ads_emulator(tls=False)
ads.create_user_list("1234567890", "999")
print(json.dumps({"sandbox": sb.url, "ads": ads.endpoint}), flush=True)
sys.stdin.read()
"""


IDENTIFIERS = {"email": "sha256('m' || i || '@example.com')", "phone": "sha256('1415' || lpad(CAST(i AS VARCHAR), 7, '0'))"}


def members(n: int, kinds: tuple[str, ...] = ("email",)) -> list[Member]:
    columns = ", ".join(IDENTIFIERS[k] for k in kinds)
    rows = duckdb.sql(f"SELECT CAST(i AS VARCHAR) AS k, {columns} FROM range({n}) t(i) ORDER BY k").fetchall()
    return [Member(key, dict(zip(kinds, digests))) for key, *digests in rows]


def push(destination, audience: AudienceRef, batch: list[Member], size: int, op: str, ledger=None) -> tuple[float, int]:
    call = destination.add if op == "add" else destination.remove
    sync_run = ledger and ledger.start_sync_run(ledger.start_run("bench"), "bench", plan_hash=None, members=len(batch))
    started, requests_made = time.perf_counter(), 0
    for start in range(0, len(batch), size):
        chunk = batch[start:start + size]
        result = call(audience, chunk)
        requests_made += result.requests
        if ledger is not None:
            _commit(ledger, sync_run, op, chunk, result)
    return time.perf_counter() - started, requests_made


def _commit(ledger, sync_run: int, op: str, chunk: list[Member], result) -> None:
    """What syncer.delivery.apply records for one acknowledged batch."""
    from syncer.ledger.store import HeldRow

    by_key = {o.member_key: o for o in result.outcomes}
    landed = [HeldRow(m.member_key, m.member_key.rjust(32, "0"), m.identifiers) for m in chunk
              if by_key[m.member_key].status is RowStatus.SENT]
    failed = [(o.member_key, o.status.value, o.reason or "unknown") for o in result.outcomes if o.status is not RowStatus.SENT]
    ledger.commit_batch(sync="bench", sync_run_id=sync_run, op=op, landed=landed, failed=failed, attempts=1,
                        platform_counts=dict(result.platform_counts), rows=len(chunk))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--platforms", default="meta,google data manager,google ads api", help="comma-separated")
    parser.add_argument("--identifiers", default="email", help="comma-separated: email, phone")
    parser.add_argument("--ledger", default=None, help="'sqlite' (a temporary file) or a ledger URL: commit every batch")
    args = parser.parse_args()
    wanted = [p.strip() for p in args.platforms.split(",")]
    kinds = [k.strip() for k in args.identifiers.split(",")]
    if unknown := set(kinds) - set(IDENTIFIERS):
        parser.error(f"unknown identifiers {sorted(unknown)}; choose from {sorted(IDENTIFIERS)}")
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp:
        ledger_url = f"sqlite:///{tmp}/ledger.db" if args.ledger == "sqlite" else args.ledger
        run(args.members, wanted, kinds, ledger_url)


def run(n: int, wanted: list[str], kinds: list[str], ledger_url: str | None) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(child.stdout.readline())
        os.environ.update(BENCH_META="bench", BENCH_DM="sandbox-datamanager-key", BENCH_ADS="sandbox-google-ads-token",
                          BENCH_DEV="sandbox-developer-token")
        platforms = [p for p in _destinations(urls) if p[0] in wanted]
        batch = members(n, tuple(kinds))
        ledger = None
        if ledger_url:
            from syncer.ledger.store import Ledger

            ledger = Ledger(ledger_url)
            print(f"# each batch also committed to the ledger ({ledger.engine.dialect.name}); identifiers: {', '.join(kinds)}")
        print(f"{'platform':>20} {'op':>7} {'members':>9} {'seconds':>8} {'rows/s':>9} {'requests':>9} {'peak_mb':>8}")
        for name, destination, audience_id in platforms:
            audience = AudienceRef("bench", audience_id)
            for op in ("add", "remove"):
                seconds, made = push(destination, audience, batch, destination.capabilities.max_batch, op, ledger)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{name:>20} {op:>7} {len(batch):>9,} {seconds:>8.2f} {len(batch) / seconds:>9,.0f} {made:>9} {peak:>8.0f}", flush=True)
            destination.close()
        if ledger is not None:
            ledger.close()
        stats = requests.get(urls["sandbox"] + "/_sandbox/stats", timeout=10).json()
        print(f"# emulator requests: meta {stats['meta']['requests']}, datamanager {stats['datamanager']['requests']}")
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def _destinations(urls: dict[str, str]) -> list[tuple[str, object, str]]:
    """(name, destination, audience id) of each platform, pointed at the emulators."""
    from destinations.google_customer_match.config import GoogleCustomerMatchConfig
    from destinations.google_customer_match.connector import GoogleCustomerMatchDestination
    from destinations.meta.config import MetaAudienceConfig
    from destinations.meta.connector import MetaAudienceDestination

    return [
        ("meta", MetaAudienceDestination(MetaAudienceConfig(type="meta_audience", ad_account_id="act_1", access_token_env="BENCH_META",
                                                            endpoint=urls["sandbox"])), "777"),
        ("google data manager", GoogleCustomerMatchDestination(GoogleCustomerMatchConfig(
            type="google_customer_match", customer_id="1234567890", transport="data_manager", access_token_env="BENCH_DM",
            customer_match_terms_accepted=True, endpoint=urls["sandbox"] + "/datamanager")), "888"),
        ("google ads api", GoogleCustomerMatchDestination(GoogleCustomerMatchConfig(
            type="google_customer_match", customer_id="1234567890", transport="google_ads_api", access_token_env="BENCH_ADS",
            developer_token_env="BENCH_DEV", endpoint=urls["ads"])), "999"),
    ]


if __name__ == "__main__":
    main()
