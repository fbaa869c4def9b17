"""Local-mode extraction, rows against Arrow: `python bench/warehouse_extraction.py [--rows N] [--postgres-url URL]`.

Reads a segment of N members (member key, email, phone, country, names, a consent flag) the way
``syncer.planning.extract`` does, in chunks of ``--chunk`` rows, and prints seconds, members per second
and the peak of the Python heap (tracemalloc: row tuples and Python strings show there, Arrow buffers do not):

- ``snowflake rows``: fakesnow through the snowflake-connector API, fetched with ``fetchmany`` and
  converted chunk by chunk (``rows_as_batches``): the fallback, and what fakesnow itself gets.
- ``snowflake arrow``: the same query and connection, read through ``fetch_arrow_batches``, the path the
  real connector takes (``driver_arrow_batches``). fakesnow has no such method, so here it is given one
  over the Arrow table fakesnow already built for the result: the figure is the client side only (no
  network, no server chunking), which is exactly what the change saves.
- ``postgres rows`` (with ``--postgres-url``): the SQLAlchemy path every driver without Arrow takes.

Each path runs ``--repeat`` times; the best time is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncer.planning.extract import extract  # noqa: E402
from syncer.planning.warehouse_sessions import driver_arrow_batches, rows_as_batches  # noqa: E402

QUERY = "SELECT customer_id, email, phone, country, first_name, last_name, ads_consent FROM customers"
SNOWFLAKE_FILL = """CREATE OR REPLACE TABLE customers AS SELECT range AS customer_id,
    'person' || range || '@example.com' AS email, '+1 415 555 ' || lpad(CAST(range % 10000 AS VARCHAR), 4, '0') AS phone,
    'US' AS country, 'Ann' AS first_name, 'Lee' AS last_name, range % 7 <> 0 AS ads_consent FROM range({n})"""

POSTGRES_FILL = """CREATE TABLE customers AS SELECT g AS customer_id,
    'person' || g || '@example.com' AS email, '+1 415 555 ' || lpad(CAST(g % 10000 AS TEXT), 4, '0') AS phone,
    'US' AS country, 'Ann' AS first_name, 'Lee' AS last_name, g % 7 <> 0 AS ads_consent FROM generate_series(0, {last}) AS g"""


def measure(read: Callable[[], Iterator[pa.RecordBatch]], repeat: int) -> tuple[float, int, int]:
    """(best seconds, rows, peak Python heap in bytes) over ``repeat`` reads."""
    best, rows, peak = float("inf"), 0, 0
    for _ in range(repeat):
        tracemalloc.start()
        started = time.perf_counter()
        rows = sum(batch.num_rows for batch in read())
        best = min(best, time.perf_counter() - started)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, rows, peak


def snowflake_paths(n: int, chunk: int) -> dict[str, Callable[[], Iterator[pa.RecordBatch]]]:
    import snowflake.connector

    conn = snowflake.connector.connect(user="bench", account="bench", database="bench", schema="public")
    conn.cursor().execute(SNOWFLAKE_FILL.format(n=n))

    def rows() -> Iterator[pa.RecordBatch]:
        cursor = conn.cursor()
        cursor.execute(QUERY)
        assert driver_arrow_batches(cursor, chunk) is None  # fakesnow: the fallback is what runs
        yield from rows_as_batches(cursor, chunk)

    def arrow() -> Iterator[pa.RecordBatch]:
        cursor = conn.cursor()
        cursor.execute(QUERY)
        cursor.fetch_arrow_batches = lambda: iter([cursor._arrow_table])  # the real connector's method, see above
        yield from driver_arrow_batches(cursor, chunk)

    return {"snowflake rows": rows, "snowflake arrow": arrow}


def postgres_path(url: str, n: int, chunk: int) -> dict[str, Callable[[], Iterator[pa.RecordBatch]]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
        conn.execute(sa.text(POSTGRES_FILL.format(last=n - 1)))
    engine.dispose()
    return {"postgres rows": lambda: extract(url, QUERY, chunk_rows=chunk)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    import fakesnow

    with fakesnow.patch():
        paths = snowflake_paths(args.rows, args.chunk)
        if args.postgres_url:
            paths |= postgres_path(args.postgres_url, args.rows, args.chunk)
        print("| path | members | seconds | members/s | Python heap peak |\n|---|---:|---:|---:|---:|")
        for name, read in paths.items():
            seconds, rows, peak = measure(read, args.repeat)
            print(f"| {name} | {rows:,} | {seconds:.2f} | {rows / seconds:,.0f} | {peak / 2**20:,.0f} MB |")


if __name__ == "__main__":
    main()
