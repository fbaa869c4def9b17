"""Writing a sample warehouse: `generate`, and `populate`, which adds customers with their activity
(`generate` for a new file, `mutate` for new customers in an existing one)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import duckdb

from .customers import customers_sql
from .macros import install_helpers
from .sql import utc_now
from .tables import DDL, TABLES, carts_sql, conversions_sql, orders_sql, page_views_sql


def generate(path: str | Path, customers: int, *, seed: int = 7, now: datetime | None = None,
             memory_limit: str | None = "2GB") -> dict[str, int]:
    """Write (replace) a DuckDB sample warehouse at `path`.

    Args:
        path: the DuckDB file to write; an existing file is replaced atomically.
        customers: number of customers (ids 1..customers); activity tables scale with it.
        seed: the same seed, size and `now` give identical data.
        now: the reference time (naive = UTC); default the current UTC time, to the second.
        memory_limit: DuckDB memory cap while generating (it spills to disk beyond it).

    Returns:
        Row counts per table.
    """
    if customers < 0:
        raise ValueError("customers must be >= 0")
    path = Path(path)
    now = utc_now(now)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for stale in (tmp, Path(f"{tmp}.wal")):
        stale.unlink(missing_ok=True)
    con = connect(tmp, memory_limit)
    try:
        install_helpers(con, seed, now)
        con.execute(DDL)
        populate(con, 1, customers + 1, guests=customers // 50, anonymous=customers // 4)
        counts = _counts(con)
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        for partial in (tmp, Path(f"{tmp}.wal")):
            partial.unlink(missing_ok=True)
        raise
    con.close()
    Path(f"{path}.wal").unlink(missing_ok=True)  # a stale WAL would be replayed onto the new file
    os.replace(tmp, path)
    return counts


def column_max(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The highest value of an id column, 0 for an empty table: new rows' ids continue from it."""
    return int(con.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchone()[0])


def populate(con: duckdb.DuckDBPyConnection, lo: int, hi: int, *, guests: int, anonymous: int) -> None:
    """Insert customers lo..hi-1 with their activity, continuing every id sequence.

    `guests` guest checkouts and `anonymous` page views (and a 25th as many carts) without a
    customer come on top. The temp macros (install_helpers) must be in place."""
    order_floor, cart_floor = column_max(con, "orders", "order_id"), column_max(con, "carts", "cart_id")
    view_floor, conv_floor = column_max(con, "page_views", "view_id"), column_max(con, "conversions", "conversion_id")
    # A table scan runs on every core; the range() table function would run on one.
    con.execute(f"CREATE OR REPLACE TEMP TABLE _ids AS SELECT range FROM range({lo}, {hi})")
    con.execute("INSERT INTO customers " + customers_sql(lo, hi))
    con.execute(orders_sql(lo, hi, guests, order_floor))
    con.execute(carts_sql(lo, hi, anonymous // 25, order_floor, cart_floor))
    con.execute(page_views_sql(lo, hi, anonymous, view_floor))
    con.execute(conversions_sql(lo, hi, order_floor, conv_floor))
    con.execute("DROP TABLE _ids")


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def connect(path: str | Path, memory_limit: str | None = "2GB") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute("SET preserve_insertion_order = false")  # lets big inserts stream instead of buffering
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con
