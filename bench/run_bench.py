"""Plan + apply benchmark against the Meta emulator: `make bench` or `python bench/run_bench.py [SIZES...]`.

For each size (default 100k, 1M and 10M members) it builds a DuckDB warehouse of N members (valid
emails and phones), then times three `syncer run` invocations, each in a fresh process (so wall time
includes start-up, and peak memory is that process's own maximum RSS): the initial sync, a run with no
change, and a run after 1% adds and 1% removes. `--diff-mode warehouse` runs the diff inside the
warehouse instead of in-process. Prints a table; `--markdown` prints it as Markdown for bench/RESULTS.md.

`--shape` picks the data (default `sample`, the table above, every phone a valid US number):
    invalid_phones  drt's `users` table: every phone `+1 555 xxx xxxx` with pseudo-random digits, plausible
                    and invalid everywhere (555 is no NANP area code), plus a valid email per member.
    emails_only     a valid email per member, no phone.
    unicode         heavy Unicode and whitespace: full-width, IDN and Greek emails, NBSP and zero-width
                    marks around them, phones in full-width and Arabic-Indic digits or with NBSP
                    separators, accented and CJK first names (mapped as an identifier too).
Every member keeps one usable, distinct identifier, so the emulator must hold the whole segment after
each run. With a shape other than `sample` each row also shows the per-row cost, `plan_us` and
`apply_us` (seconds over the segment size, in microseconds per member).
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


def _pick(i: str, choices: list[str]) -> str:
    """SQL: the (i mod k)-th of k SQL expressions."""
    return "CASE " + " ".join(f"WHEN {i} % {len(choices)} = {k} THEN {c}" for k, c in enumerate(choices)) + " END"


_FULL_WIDTH = "translate({}, '+0123456789', '＋０１２３４５６７８９')"
_ARABIC_INDIC = "translate({}, '0123456789', '٠١٢٣٤٥٦٧٨٩')"


def _unicode_columns(i: str, prefix: str, area_codes: str) -> dict[str, str]:
    phone = _phone(i, area_codes)
    return {
        "email": _pick(i, [
            f"'  {prefix.title()}' || {i} || '@Example.com	'",
            f"'ｍｅｍｂｅｒ' || {i} || '{prefix}@ｅｘａｍｐｌｅ.ｃｏｍ'",
            f"'Jörg' || {i} || '{prefix}@Bücher.de'",
            f"chr(160) || 'ANNA.' || {i} || '{prefix}@GMAIL.com' || chr(160)",
            f"chr(8203) || 'zoë' || {i} || '{prefix}@exämple.com '",
            f"'δοκιμή' || {i} || '{prefix}@παράδειγμα.δοκιμή'",
        ]),
        "phone": _pick(i, [
            _FULL_WIDTH.format(phone),
            _ARABIC_INDIC.format(phone),
            f"replace({phone}, ' ', chr(160))",
            f"' ' || {phone} || chr(9)",
        ]),
        "first_name": _pick(i, ["'  Zoë '", "'José'", "chr(9) || 'Łukasz'", "'山田'", "'Ｍａｒｙ'", "'Ó Briain'",
                                "chr(8203) || 'Ünal'"]),
    }


def shape_columns(shape: str, i: str, new: bool) -> dict[str, str]:
    """SQL expressions over the member number ``i`` for each column of the shape (``new``: churn's added members)."""
    prefix = "new" if new else "member"
    areas = "['646', '617', '213']" if new else "['415', '212', '312']"
    if shape == "sample":
        return {"email": f"'{prefix}' || {i} || '@example.com'", "phone": _phone(i, areas)}
    if shape == "invalid_phones":
        digits = f"lpad(CAST(hash({i}) % 10000000 AS VARCHAR), 7, '0')"
        return {"email": f"'{prefix}' || {i} || '@example.com'",
                "phone": f"'+1 555 ' || substr({digits}, 1, 3) || ' ' || substr({digits}, 4, 4)"}
    if shape == "emails_only":
        return {"email": f"'{prefix}' || {i} || '@example.com'", "phone": "CAST(NULL AS VARCHAR)"}
    if shape == "unicode":
        return _unicode_columns(i, prefix, areas)
    raise ValueError(f"unknown shape {shape!r}")


SHAPES = ("sample", "invalid_phones", "emails_only", "unicode")


def shape_select(shape: str, first: int, last: int, new: bool = False) -> str:
    """SQL: the members ``first``..``last`` of a shape, as (customer_id, email, phone, country[, first_name])."""
    cols = shape_columns(shape, "i", new)
    extra = f", {cols['first_name']} AS first_name" if "first_name" in cols else ""
    return (f"SELECT i AS customer_id, {cols['email']} AS email, {cols['phone']} AS phone, 'US' AS country{extra}"
            f" FROM range({first}, {last} + 1) t(i)")


def build_warehouse(path: Path, members: int, shape: str = "sample") -> None:
    con = duckdb.connect(str(path))
    con.execute(f"CREATE OR REPLACE TABLE members AS {shape_select(shape, 1, members)}")
    con.close()


def churn(path: Path, members: int, pct: float, shape: str = "sample") -> None:
    n = int(members * pct / 100)
    con = duckdb.connect(str(path))
    con.execute(f"DELETE FROM members WHERE customer_id <= {n}")
    con.execute(f"INSERT INTO members {shape_select(shape, members + 1, members + n, new=True)}")
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


def write_project(root: Path, port: int, diff_mode: str = "local", shape: str = "sample", memory_limit: str | None = None) -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    limit = f"memory_limit: {memory_limit}\n" if memory_limit else ""
    (root / "syncer.yml").write_text(f"name: bench\nwarehouse_url: duckdb:///warehouse.duckdb\ndiff_mode: {diff_mode}\n{limit}")
    names = "first_name" in shape_columns(shape, "i", False)
    (root / "segments" / "members.yml").write_text(textwrap.dedent(f"""\
        sql: SELECT customer_id, email, phone, country{', first_name' if names else ''} FROM members
        member_key: customer_id
        identifiers: {{email: email, phone: phone{', first_name: first_name' if names else ''}}}
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
        identifiers: [email, phone{}]
        gates: {{max_removal_pct: 5}}
        """).format(", first_name" if names else ""))


def run_once(root: Path) -> tuple[dict, float]:
    """One `syncer run` in a fresh process; returns its report and its own peak RSS in MB (wait4)."""
    env = dict(os.environ, BENCH_META_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    # cwd too: `-m` puts it before PYTHONPATH, so a copy of this script times the tree it sits in
    proc = subprocess.Popen([sys.executable, "-m", "syncer.cli.main", "-p", str(root), "--json", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    out = proc.stdout.read()
    errout = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"syncer run failed: {errout.decode()[-2000:]}")
    return {"wall_s": wall, "report": json.loads(out)["syncs"][0]}, usage.ru_maxrss / 1024


def bench_size(members: int, sandbox: SandboxProcess, workdir: Path, diff_mode: str, shape: str = "sample",
               memory_limit: str | None = None) -> list[dict]:
    root = workdir / f"{shape}-n{members}"
    write_project(root, int(sandbox.url.rsplit(':', 1)[1]), diff_mode, shape, memory_limit)
    sandbox.admin("POST", "/_sandbox/meta/audiences", {"id": AUDIENCE, "name": "bench"})
    t0 = time.perf_counter()
    build_warehouse(root / "warehouse.duckdb", members, shape)
    build_s = time.perf_counter() - t0
    rows = []
    for label, prepare in (("initial", None), ("no change", None), ("1% adds + 1% removes", lambda: churn(root / "warehouse.duckdb", members, 1.0, shape))):
        if prepare:
            prepare()
        before = sandbox.requests()
        result, rss = run_once(root)
        r = result["report"]
        rows.append({"shape": shape, "members": members, "run": label, "wall_s": round(result["wall_s"], 2), "plan_s": r["plan_seconds"],
                     "apply_s": r["duration"], "peak_mb": round(rss), "sent": r["added"] + r["removed"], "added": r["added"],
                     "removed": r["removed"], "requests": sandbox.requests() - before, "status": r["status"],
                     "plan_us": round(r["plan_seconds"] / members * 1e6, 1),
                     "apply_us": round(r["duration"] / sent * 1e6, 1) if (sent := r["added"] + r["removed"]) else "-"})
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
    parser.add_argument("--shape", default="sample",
                        help=f"data shape, or several joined by commas: {', '.join(SHAPES)} (see the module docstring)")
    parser.add_argument("--memory-limit", help="the project's memory_limit (DuckDB's cap, in-process diff and DuckDB warehouse), "
                        "e.g. 128MB; default: the project default")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    shapes = args.shape.split(",")
    if unknown := set(shapes) - set(SHAPES):
        parser.error(f"unknown shape {sorted(unknown)}; choose from {', '.join(SHAPES)}")
    sandbox = SandboxProcess()
    try:
        with tempfile.TemporaryDirectory(prefix="syncer-bench-") as tmp:
            rows = [row for shape in shapes for size in args.sizes
                    for row in bench_size(size, sandbox, Path(tmp), args.diff_mode, shape, args.memory_limit)]
    finally:
        sandbox.stop()
    cols = ["members", "run", "wall_s", "plan_s", "apply_s", "peak_mb", "sent", "added", "removed", "requests", "status"]
    if shapes != ["sample"]:  # the default table stays as it was; other shapes add their per-row cost
        cols = ["shape", *cols[:5], "plan_us", "apply_us", *cols[5:]]
    print_table(rows, cols, args.markdown)


def print_table(rows: list[dict], cols: list[str], markdown: bool) -> None:
    """``plan_us`` is per segment member, ``apply_us`` per member sent."""
    if markdown:
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in cols) + " |")
    else:
        wide = ("run", "shape")
        print(" ".join(f"{c:>22}" if c in wide else f"{c:>9}" for c in cols))
        for row in rows:
            print(" ".join(f"{str(row[c]):>22}" if c in wide else f"{str(row[c]):>9}" for c in cols))


if __name__ == "__main__":
    main()
