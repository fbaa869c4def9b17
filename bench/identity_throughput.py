"""Rows per second of ``identify_many`` against ``identify_columns``: `python bench/identity_throughput.py [--rows N]`.

Two corpora: clean rows shaped like bench/run_bench.py's warehouse (``member{i}@example.com``, US
phones ``+1 415 2xx xxxx``, country column ``US``) and a mixed one (national, international, ``00``
and invalid phones of several countries, messy emails). Both are checked to give identical results.
Prints rows/s per platform and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncer.identity.columnar import fallback_rows, identify_columns, to_identified  # noqa: E402
from syncer.identity.rows import identify_many  # noqa: E402

_MIXED_PHONES = ["+1 415 {a} {b}", "(650) {a}-{b}", "1-212-{a}-{b}", "07911 {a}{b}", "+44 20 7946 {b}",
                 "030 {a}{b}", "+49 151 {a}{b}", "06 12 {a} {b}", "0412 {a} {b}", "(11) 9{a}-{b}",
                 "0044 20 7946 {b}", "12345", "555-CALL-NOW", ""]
_MIXED_REGIONS = ["US", "US", "US", "GB", "GB", "DE", "DE", "FR", "AU", "BR", "US", "US", "US", None]
_MIXED_EMAILS = ["Member{i}@Example.com", " member{i}@gmail.com ", "m.{i}+x@gmail.com", "bad{i}", ""]


def clean(rows: int) -> pa.Table:
    ids = range(1, rows + 1)
    return pa.table({
        "email": [f"member{i}@example.com" for i in ids],
        "phone": [f"+1 415 {200 + (i // 10000) % 800:03d} {i % 10000:04d}" for i in ids],
        "country": pa.array(["US"] * rows).dictionary_encode().cast(pa.string()),
    })


def mixed(rows: int) -> pa.Table:
    k = len(_MIXED_PHONES)
    phones = [_MIXED_PHONES[i % k].format(a=f"{200 + i % 700:03d}", b=f"{i % 10000:04d}") for i in range(rows)]
    regions = [_MIXED_REGIONS[i % k] for i in range(rows)]
    emails = [_MIXED_EMAILS[i % 5].format(i=i) for i in range(rows)]
    return pa.table({"email": emails, "phone": phones, "country": regions})


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--platforms", default="meta,google,plain")
    parser.add_argument("--skip-python", action="store_true", help="time identify_columns only")
    args = parser.parse_args()
    for name, table in (("clean", clean(args.rows)), ("mixed", mixed(args.rows))):
        for platform in args.platforms.split(","):
            kwargs = dict(kinds=["email", "phone"], platform=platform, region=None, region_column="country")
            col_s, result = timed(lambda: identify_columns(table, **kwargs))
            line = f"{name:5} {platform:20} identify_columns {args.rows / col_s:>11,.0f} rows/s " \
                   f"(fell back {fallback_rows(result):,})"
            if not args.skip_python:
                py_s, expected = timed(lambda: identify_many(table, **kwargs))
                assert to_identified(result) == expected, "identify_columns differs from identify_many"
                line += f"  identify_many {args.rows / py_s:>9,.0f} rows/s  x{py_s / col_s:.1f}"
            print(line, flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
