"""Rows per second of the columnar identity path per data shape: `python bench/identity_dirty.py [--rows N]`.

The shapes are bench/run_bench.py's (`sample`, `invalid_phones`, `emails_only`, `unicode`), built by
the same SQL in an in-memory DuckDB, so this times the identity step of the plans that benchmark
runs. Each shape is identified for email and phone (the columnar path's kinds; the `unicode` shape's
first names go through the per-row rules whatever this path does) with the segment's `country`
column, and the script prints rows/s of `identify_columns`, how many rows needed the per-value rules,
and the process's peak RSS. `--check` also compares every row with `identify_many` (slow on dirty
shapes, which is the point of the path).

To time another tree, run a copy of this file placed in that tree's `bench/` (it imports `syncer`
from the tree it sits in).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from run_bench import SHAPES, shape_select  # noqa: E402

from syncer.identity.columnar import fallback_rows, identify_columns, to_identified  # noqa: E402
from syncer.identity.rows import identify_many  # noqa: E402


def shape_table(shape: str, rows: int):
    """The first ``rows`` members of a shape as an Arrow table."""
    return duckdb.sql(shape_select(shape, 1, rows)).to_arrow_table()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--platforms", default="meta")
    parser.add_argument("--check", action="store_true", help="compare every row with identify_many")
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        table = shape_table(shape, args.rows)
        for platform in args.platforms.split(","):
            kwargs = dict(kinds=["email", "phone"], platform=platform, region=None, region_column="country")
            started = time.perf_counter()
            result = identify_columns(table, **kwargs)
            seconds = time.perf_counter() - started
            line = (f"{shape:15} {platform:8} identify_columns {args.rows / seconds:>11,.0f} rows/s "
                    f"{seconds / args.rows * 1e6:6.2f} us/row (fell back {fallback_rows(result):,})")
            if args.check:
                assert to_identified(result) == identify_many(table, **kwargs), "identify_columns differs"
                line += "  same as identify_many"
            print(line, flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
