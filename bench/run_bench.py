"""Plan + apply benchmark against the Meta emulator: `make bench` or `python bench/run_bench.py [SIZES...]`.

For each size (default 100k, 1M and 10M members) it builds a DuckDB warehouse of N members (valid
emails and phones), then times three `syncer run` invocations, each in a fresh process (so wall time
includes start-up, and peak memory is that process's own maximum RSS): the initial sync, a run with no
change, and a run after 1% adds and 1% removes. `--diff-mode warehouse` runs the diff inside the
warehouse instead of in-process. Prints a table; `--markdown` prints it as Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
AUDIENCE = "777"


def _phone(i: str, area_codes: str) -> str:
    """SQL: a valid US number unique per i (8M per area code), so every member is a different person."""
    return (f"'+1 ' || {area_codes}[1 + {i} // 8000000] || ' ' || CAST(200 + ({i} // 10000) % 800 AS VARCHAR)"
            f" || ' ' || lpad(CAST({i} % 10000 AS VARCHAR), 4, '0')")


def build_warehouse(path: Path, members: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"""
        CREATE OR REPLACE TABLE members AS
        SELECT i AS customer_id, 'member' || i || '@example.com' AS email, {_phone('i', "['415', '212', '312']")} AS phone,
               'US' AS country
        FROM range(1, {members} + 1) t(i)""")
    con.close()


def churn(path: Path, members: int, pct: float) -> None:
    n = int(members * pct / 100)
    con = duckdb.connect(str(path))
    con.execute(f"DELETE FROM members WHERE customer_id <= {n}")
    con.execute(f"""INSERT INTO members SELECT i, 'new' || i || '@example.com', {_phone('i', "['646', '617', '213']")}, 'US'
                    FROM range({members} + 1, {members} + {n} + 1) t(i)""")
    con.close()


class SandboxProcess:
    """The emulators in their own process, driven through the sandbox's admin API: the benchmark's own
    process stays small, so a child's peak RSS (which counts the parent's pages until exec) is its own."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "syncer.sandbox.server", "--port", "0", "--meta-token", TOKEN],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.url = self.proc.stdout.readline().strip().rsplit(" ", 1)[1]

    def admin(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(self.url + path, method=method, data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def requests(self) -> int:
        return self.admin("GET", "/_sandbox/stats")["meta"]["requests"]

    def holds(self) -> int:
        return next(a["count"] for a in self.admin("GET", "/_sandbox/meta/audiences") if a["id"] == AUDIENCE)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def write_project(root: Path, port: int, diff_mode: str = "local") -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "syncer.yml").write_text(f"name: bench\nwarehouse_url: duckdb:///warehouse.duckdb\ndiff_mode: {diff_mode}\n")
    (root / "segments" / "members.yml").write_text(textwrap.dedent("""\
        sql: SELECT customer_id, email, phone, country FROM members
        member_key: customer_id
        identifiers: {email: email, phone: phone}
        phone_region_column: country
        """))
    (root / "destinations" / "meta.yml").write_text(textwrap.dedent(f"""\
        type: meta_audience
        ad_account_id: act_1
        access_token_env: BENCH_META_TOKEN
        endpoint: http://127.0.0.1:{port}
        """))
    (root / "syncs" / "members_meta.yml").write_text(textwrap.dedent("""\
        segment: members
        destination: meta
        audience_id: "777"
        identifiers: [email, phone]
        gates: {max_removal_pct: 5}
        """))


def run_once(root: Path) -> tuple[dict, float]:
    """One `syncer run` in a fresh process; returns its report and its own peak RSS in MB (wait4)."""
    env = dict(os.environ, BENCH_META_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "syncer.cli.main", "-p", str(root), "--json", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    errout = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"syncer run failed: {errout.decode()[-2000:]}")
    return {"wall_s": wall, "report": json.loads(out)["syncs"][0]}, usage.ru_maxrss / 1024


def bench_size(members: int, sandbox: SandboxProcess, workdir: Path, diff_mode: str) -> list[dict]:
    root = workdir / f"n{members}"
    write_project(root, int(sandbox.url.rsplit(':', 1)[1]), diff_mode)
    sandbox.admin("POST", "/_sandbox/meta/audiences", {"id": AUDIENCE, "name": "bench"})
    t0 = time.perf_counter()
    build_warehouse(root / "warehouse.duckdb", members)
    build_s = time.perf_counter() - t0
    rows = []
    for label, prepare in (("initial", None), ("no change", None), ("1% adds + 1% removes", lambda: churn(root / "warehouse.duckdb", members, 1.0))):
        if prepare:
            prepare()
        before = sandbox.requests()
        result, rss = run_once(root)
        r = result["report"]
        rows.append({"members": members, "run": label, "wall_s": round(result["wall_s"], 2), "plan_s": r["plan_seconds"],
                     "apply_s": r["duration"], "peak_mb": round(rss), "sent": r["added"] + r["removed"], "added": r["added"],
                     "removed": r["removed"], "requests": sandbox.requests() - before, "status": r["status"]})
        held = sandbox.holds()
        if held != members:
            raise SystemExit(f"after the {label} run the Meta emulator holds {held:,} members, not {members:,}")
    print(f"# n={members:,}: warehouse built in {build_s:.1f}s; the emulator held {members:,} after each run", file=sys.stderr)
    sandbox.admin("POST", "/_sandbox/reset")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--diff-mode", choices=["local", "warehouse"], default="local")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    sandbox = SandboxProcess()
    try:
        with tempfile.TemporaryDirectory(prefix="syncer-bench-") as tmp:
            rows = [row for size in args.sizes for row in bench_size(size, sandbox, Path(tmp), args.diff_mode)]
    finally:
        sandbox.stop()
    cols = ["members", "run", "wall_s", "plan_s", "apply_s", "peak_mb", "sent", "added", "removed", "requests", "status"]
    if args.markdown:
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in cols) + " |")
    else:
        print(" ".join(f"{c:>22}" if c == "run" else f"{c:>9}" for c in cols))
        for row in rows:
            print(" ".join(f"{str(row[c]):>22}" if c == "run" else f"{str(row[c]):>9}" for c in cols))


if __name__ == "__main__":
    main()
