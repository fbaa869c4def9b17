"""The SQL the real-time path wraps around a segment's own query: restricted to some members, without the
members whose ``expires_at`` has passed, and the members whose moment passed in a window.

Each wraps the query as a subquery and filters on its output columns, so the segment's SQL is never
parsed or rewritten; warehouses push such filters down to the scan (a key filter becomes an index or
zone-map lookup). Times are UTC literals made from the engine's clock, so "now" is the same moment for
the batch plan and for the follower, and a fake clock in tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from syncer.environment import scheme_of

_BACKTICK_DIALECTS = ("bigquery", "spark", "databricks", "mysql")


def dialect_of(url: str) -> str:
    """The SQL dialect of a SQLAlchemy URL: ``postgresql+psycopg://...`` and ``postgres://`` -> ``postgresql``."""
    scheme = scheme_of(url)
    return {"postgres": "postgresql"}.get(scheme, scheme)


def quote_ident(name: str, dialect: str) -> str:
    if dialect in _BACKTICK_DIALECTS:
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def timestamp_literal(epoch: float, dialect: str) -> str:
    """A UTC instant as a literal the dialect compares with a timestamp column (SQLite keeps ISO text)."""
    text = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    if dialect == "sqlite":
        return quote_text(text)
    return f"TIMESTAMP {quote_text(text)}"


def only_members(sql: str, member_key: str, keys: Sequence[str], dialect: str) -> str:
    """The segment's rows of ``keys`` only. The keys are compared as text literals, which DuckDB, PostgreSQL,
    Snowflake and Spark cast to the column's type, so an integer key column keeps its index."""
    listed = ", ".join(quote_text(str(k)) for k in sorted(set(keys))) or "NULL"
    column = f"_m.{quote_ident(member_key, dialect)}"
    if dialect == "bigquery":  # no implicit text -> INT64 cast there
        column = f"CAST({column} AS STRING)"
    return f"SELECT * FROM ({sql}) AS _m WHERE {column} IN ({listed})"


def unexpired(sql: str, expires_at: str, now: float, dialect: str) -> str:
    """The segment without members whose ``expires_at`` is at or before ``now`` (NULL never expires)."""
    column = f"_e.{quote_ident(expires_at, dialect)}"
    return f"SELECT * FROM ({sql}) AS _e WHERE {column} IS NULL OR {column} > {timestamp_literal(now, dialect)}"


def expiring_between(sql: str, member_key: str, expires_at: str, after: float, until: float, dialect: str) -> str:
    """(member key, expires_at) of the members whose ``expires_at`` lies in (after, until]."""
    column = f"_e.{quote_ident(expires_at, dialect)}"
    return (f"SELECT _e.{quote_ident(member_key, dialect)}, {column} FROM ({sql}) AS _e"
            f" WHERE {column} > {timestamp_literal(after, dialect)} AND {column} <= {timestamp_literal(until, dialect)}")
