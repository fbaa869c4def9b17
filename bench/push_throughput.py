"""Push throughput of each ad connector to its emulator: `python bench/push_throughput.py [--members N]`.

The emulators run in a child process (so the figures are the syncer's side: rows per second, requests,
and this process's peak memory); members are pre-hashed so only the connector and the wire are timed.
Each platform gets N adds in batches of its limit, then N removes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destinations.base import AudienceRef, Member  # noqa: E402

CHILD = r"""
import json, sys, os
sys.path.insert(0, sys.argv[1])
from syncer.sandbox import Sandbox
from syncer.sandbox.google_ads import start_google_ads_emulator
sb = Sandbox(port=0, meta_token="bench").start()
sb.meta.create_audience("777")
sb.datamanager.create_user_list("1234567890", "888")
ads = start_google_ads_emulator(tls=False)
ads.create_user_list("1234567890", "999")
print(json.dumps({"sandbox": sb.url, "ads": ads.endpoint}), flush=True)
sys.stdin.read()
"""


def members(n: int) -> list[Member]:
    rows = duckdb.sql(f"SELECT CAST(i AS VARCHAR), sha256('m' || i || '@example.com') FROM range({n}) t(i)").fetchall()
    return [Member(key, {"email": digest}) for key, digest in rows]


def push(destination, audience: AudienceRef, batch: list[Member], size: int, op: str) -> tuple[float, int]:
    call = destination.add if op == "add" else destination.remove
    started, requests_made = time.perf_counter(), 0
    for start in range(0, len(batch), size):
        requests_made += call(audience, batch[start:start + size]).requests
    return time.perf_counter() - started, requests_made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(child.stdout.readline())
        os.environ.update(BENCH_META="bench", BENCH_DM="sandbox-datamanager-key", BENCH_ADS="sandbox-google-ads-token",
                          BENCH_DEV="sandbox-developer-token")
        from destinations.google_customer_match import GoogleCustomerMatchDestination
        from destinations.meta_audience import MetaAudienceDestination
        from syncer.config import GoogleCustomerMatchConfig, MetaAudienceConfig

        platforms = [
            ("meta", MetaAudienceDestination(MetaAudienceConfig(type="meta_audience", ad_account_id="act_1", access_token_env="BENCH_META",
                                                                endpoint=urls["sandbox"])), "777"),
            ("google data manager", GoogleCustomerMatchDestination(GoogleCustomerMatchConfig(
                type="google_customer_match", customer_id="1234567890", transport="data_manager", access_token_env="BENCH_DM",
                customer_match_terms_accepted=True, endpoint=urls["sandbox"] + "/datamanager")), "888"),
            ("google ads api", GoogleCustomerMatchDestination(GoogleCustomerMatchConfig(
                type="google_customer_match", customer_id="1234567890", transport="google_ads_api", access_token_env="BENCH_ADS",
                developer_token_env="BENCH_DEV", endpoint=urls["ads"])), "999"),
        ]
        batch = members(args.members)
        print(f"{'platform':>20} {'op':>7} {'members':>9} {'seconds':>8} {'rows/s':>9} {'requests':>9} {'peak_mb':>8}")
        for name, destination, audience_id in platforms:
            audience = AudienceRef("bench", audience_id)
            for op in ("add", "remove"):
                seconds, made = push(destination, audience, batch, destination.capabilities.max_batch, op)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{name:>20} {op:>7} {len(batch):>9,} {seconds:>8.2f} {len(batch) / seconds:>9,.0f} {made:>9} {peak:>8.0f}", flush=True)
            destination.close()
        stats = requests.get(urls["sandbox"] + "/_sandbox/stats", timeout=10).json()
        print(f"# emulator requests: meta {stats['meta']['requests']}, datamanager {stats['datamanager']['requests']}")
    finally:
        child.stdin.close()
        child.wait(timeout=30)


if __name__ == "__main__":
    main()
