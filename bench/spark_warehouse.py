"""The 1M suite in `diff_mode: warehouse` on Spark SQL (pyspark in local mode), beside DuckDB's.

    python bench/spark_warehouse.py [--members 1000000] [--engines spark duckdb]

The same members and phases as `bench/run_bench.py` (initial sync, no change, 1% adds + 1% removes) into
the Meta emulator, with the diff run as SQL in the warehouse. Spark's catalog lives in its JVM, so the
three phases run in one Python process holding one SparkSession (`spark://` is "the process's active
session"); the members are a Parquet file the segment reads (`parquet.`path``), rewritten for the churn.
DuckDB runs in the same process for comparison. For each phase it prints wall seconds, plan and apply
seconds, the rows that left the warehouse and the statements run (``warehouse_costs``: the point of the
mode is that only changed members leave), and what was sent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run_bench import AUDIENCE, TOKEN, SandboxProcess, churn, shape_select  # noqa: E402

from syncer.delivery.engine import Engine  # noqa: E402
from syncer.project.project import load_project  # noqa: E402


def write_project(root: Path, port: int, engine: str) -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    url, source = ("spark://", f"parquet.`{root / 'members.parquet'}`") if engine == "spark" else ("duckdb:///warehouse.duckdb", "members")
    (root / "syncer.yml").write_text(f"name: bench\nwarehouse_url: {url}\ndiff_mode: warehouse\nbookkeeping_schema: syncer_bench\n")
    (root / "segments" / "members.yml").write_text(textwrap.dedent(f"""\
        sql: SELECT customer_id, email, phone, country FROM {source}
        member_key: customer_id
        identifiers: {{email: email, phone: phone}}
        phone_region_column: country
        """))
    (root / "destinations" / "meta.yml").write_text(
        f"type: meta_audience\nad_account_id: act_1\naccess_token_env: BENCH_META_TOKEN\nendpoint: http://127.0.0.1:{port}\n")
    (root / "syncs" / "members_meta.yml").write_text(
        f"segment: members\ndestination: meta\naudience_id: '{AUDIENCE}'\nidentifiers: [email, phone]\ngates: {{max_removal_pct: 5}}\n")


def export(root: Path) -> None:
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute(f"COPY members TO '{root / 'members.parquet'}' (FORMAT parquet)")
    con.close()


def spark_session(workdir: Path):
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("syncer-bench")
               .config("spark.driver.memory", "3g").config("spark.sql.shuffle.partitions", "8")
               .config("spark.ui.enabled", "false").config("spark.sql.warehouse.dir", str(workdir / "spark-warehouse"))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def bench(engine: str, members: int, sandbox: SandboxProcess, workdir: Path) -> list[dict]:
    root = workdir / engine
    write_project(root, int(sandbox.url.rsplit(":", 1)[1]), engine)
    sandbox.admin("POST", "/_sandbox/meta/audiences", {"id": AUDIENCE, "name": "bench"})
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute(f"CREATE OR REPLACE TABLE members AS {shape_select('sample', 1, members)}")
    con.close()
    rows = []
    for label in ("initial", "no change", "1% adds + 1% removes"):
        if label.startswith("1%"):
            churn(root / "warehouse.duckdb", members, 1.0)
        if engine == "spark":
            export(root)
        before = sandbox.requests()
        started = time.perf_counter()
        with Engine(load_project(root)) as eng:
            [report] = eng.run()
        wall = time.perf_counter() - started
        costs = report.warehouse or {}
        rows.append({"engine": engine, "run": label, "wall_s": round(wall, 2), "plan_s": report.plan_seconds,
                     "apply_s": report.duration, "rows_returned": costs.get("rows_returned"),
                     "statements": costs.get("statements"), "sent": report.added + report.removed,
                     "requests": sandbox.requests() - before, "status": report.status})
        held = sandbox.holds()
        if held != members:
            raise SystemExit(f"{engine}: after the {label} run the Meta emulator holds {held:,} members, not {members:,}")
    sandbox.admin("POST", "/_sandbox/reset")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", default=["spark", "duckdb"])
    args = parser.parse_args()
    os.environ["BENCH_META_TOKEN"] = TOKEN
    sandbox = SandboxProcess()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="syncer-spark-bench-") as tmp:
            if "spark" in args.engines:
                spark = spark_session(Path(tmp))
            for engine in args.engines:
                rows += bench(engine, args.members, sandbox, Path(tmp))
            if "spark" in args.engines:
                spark.stop()
    finally:
        sandbox.stop()
    print(f"{'engine':>7} {'run':>22} {'wall_s':>8} {'plan_s':>7} {'apply_s':>8} {'rows_out':>9} {'stmts':>6} {'sent':>9} {'requests':>8}")
    for r in rows:
        print(f"{r['engine']:>7} {r['run']:>22} {r['wall_s']:>8} {r['plan_s']:>7} {r['apply_s']:>8} {str(r['rows_returned']):>9}"
              f" {str(r['statements']):>6} {r['sent']:>9,} {r['requests']:>8}")


if __name__ == "__main__":
    main()
