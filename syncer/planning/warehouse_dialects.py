"""The few parts of the warehouse diff's SQL that differ per engine, written out by hand for each one.

Everything else in ``syncer.planning.warehouse_diff`` is a portable core: key joins, ``NOT EXISTS``
anti-joins, ``row_number()``, ``IS DISTINCT FROM`` on a stored fingerprint. What differs is here, one
class per engine: identifier quoting, string literals, the text types, the fingerprint (``md5`` of
the parts joined by ``chr(31)``, NULL written as ``chr(30)``), the 60-bit checksum hash and its exact
sum, session work tables, and how a sync's rows in the snapshot are replaced. Functions are never
translated by a tool (sqlglot's MD5 and regex transpilations change results); each call is written
for its engine, and ``tests/syncer/test_warehouse_engines.py`` checks that every engine's fingerprint
equals the local mode's ``md5_number`` (``syncer.planning.fingerprints``) on the same rows.

Engine     fingerprint                                  checksum hash (within the engine only)
DuckDB     md5(concat_ws(chr(31), ...))                 ('0x' || substr(md5(t), 1, 15))::BIGINT
Postgres   md5(concat_ws(chr(31), ...))                 ('x' || substr(md5(t), 1, 15))::bit(60)::bigint
Snowflake  MD5(CONCAT_WS(CHR(31), ...))                 HASH(t) % 2^60, summed as NUMBER(38,0)
Spark      md5(concat_ws(chr(31), ...))                 CAST(conv(substr(md5(t), 1, 15), 16, 10) AS BIGINT)
Databricks as Spark (the same SQL; Delta tables for the snapshot)
BigQuery   TO_HEX(MD5(ARRAY_TO_STRING([...], CODE_POINTS_TO_STRING([31]))))   FARM_FINGERPRINT(t) % 2^60
"""

from __future__ import annotations

import re

_TWO_60 = 1 << 60


class Dialect:
    """DuckDB, and the defaults the other engines share (standard SQL with ``md5`` and ``chr``)."""

    name = "duckdb"
    text = "VARCHAR"
    boolean = "BOOLEAN"
    quote = '"'
    except_ = "EXCEPT"  # set difference; BigQuery insists on naming it EXCEPT DISTINCT

    def ident(self, name: str) -> str:
        return self.quote + name.replace(self.quote, self.quote * 2) + self.quote

    def literal(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def md5(self, text: str) -> str:
        """SQL: the lowercase 32-digit hex md5 of the UTF-8 bytes of ``text``."""
        return f"md5({text})"

    def char(self, code: int) -> str:
        return f"chr({code})"

    def fingerprint_text(self, parts: list[str]) -> str:
        """SQL: the text a row's fingerprint hashes; must equal ``fingerprints.concat_sql`` byte for byte."""
        joined = ", ".join(f"coalesce(CAST({p} AS {self.text}), {self.char(30)})" for p in parts)
        return f"concat_ws({self.char(31)}, {joined})"

    def hash60(self, text: str) -> str:
        """SQL: a BIGINT hash of ``text`` for the checksums (compared within one engine, never across)."""
        return f"('0x' || substr(md5({text}), 1, 15))::BIGINT"

    def checksum(self, text: str) -> str:
        """SQL: ``count(*), <exact sum>, <xor>`` of ``hash60(text)`` over the rows."""
        h = self.hash60(text)
        return f"count(*), sum({h}), bit_xor({h})"

    def filter(self, wanted: str) -> str:
        """The consent filter (``local_diff.consent_filter``) in this dialect."""
        return wanted

    # --- bookkeeping tables ----------------------------------------------------------------------

    def bookkeeping(self, schema: str) -> list[str]:
        # DuckDB joins without a key; its in-memory key index on ten million rows would cost more
        # memory than the table
        return [f"CREATE SCHEMA IF NOT EXISTS {schema}",
                f"""CREATE TABLE IF NOT EXISTS {schema}.held_snapshot (
                    sync VARCHAR(128) NOT NULL, member_key VARCHAR(256) NOT NULL, fp CHAR(32) NOT NULL{self._key})""",
                f"CREATE TABLE IF NOT EXISTS {schema}.snapshot_version (sync VARCHAR(128) PRIMARY KEY, version INTEGER NOT NULL)"]

    _key = ""

    def table(self, schema: str, name: str) -> str:
        return f"{schema}.{name}"

    def work_table(self, name: str, columns: list[str]) -> tuple[str, list[str]]:
        """(the name to query, the statements that create it empty) for a session's upload table."""
        return name, [f"DROP TABLE IF EXISTS {name}",
                      f"CREATE TEMP TABLE {name} ({', '.join(f'{c} {self.text}' for c in columns)})"]

    def clear_sync(self, table: str, sync: str) -> list[str]:
        return [f"DELETE FROM {table} WHERE sync = {self.literal(sync)}"]

    def remove_keys(self, table: str, sync: str, keys: str) -> list[str]:
        """Statements deleting the members listed in work table ``keys`` from ``sync``'s snapshot."""
        return [f"DELETE FROM {table} WHERE sync = {self.literal(sync)} AND member_key IN (SELECT member_key FROM {keys})"]

    def append_rows(self, table: str, sync: str, rows: str) -> str:
        return f"INSERT INTO {table} (sync, member_key, fp) SELECT {self.literal(sync)}, member_key, fp FROM {rows}"

    def set_version(self, table: str, sync: str, version: int) -> list[str]:
        return [f"DELETE FROM {table} WHERE sync = {self.literal(sync)}",
                f"INSERT INTO {table} (sync, version) VALUES ({self.literal(sync)}, {int(version)})"]


class PostgresDialect(Dialect):
    name = "postgresql"
    _key = ", PRIMARY KEY (sync, member_key)"  # deletes by key go through the index

    def hash60(self, text: str) -> str:
        return f"('x' || substr(md5({text}), 1, 15))::bit(60)::bigint"


class SnowflakeDialect(Dialect):
    """Snowflake: MD5 returns 32 lowercase hex digits (https://docs.snowflake.com/sql-reference/functions/md5);
    CONCAT_WS keeps NULLs as NULL, so every part is coalesced first
    (https://docs.snowflake.com/en/sql-reference/functions/concat_ws); CHR gives the separators; HASH is a
    signed 64-bit value (https://docs.snowflake.com/sql-reference/functions-hash-scalar) xored with
    BITXOR_AGG and summed as NUMBER(38,0) after ``% 2^60``, so the sum is exact on Snowflake and on
    fakesnow (whose HASH is unsigned and whose plain SUM returns a float). String literals also treat
    a backslash as an escape."""

    name = "snowflake"

    def literal(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    def md5(self, text: str) -> str:
        return f"MD5({text})"

    def char(self, code: int) -> str:
        return f"CHR({code})"

    def hash60(self, text: str) -> str:
        return f"CAST(HASH({text}) % {_TWO_60} AS NUMBER(38, 0))"

    def checksum(self, text: str) -> str:
        return f"count(*), SUM({self.hash60(text)}), BITXOR_AGG(HASH({text}))"

    def filter(self, wanted: str) -> str:
        return _coalesce_is_true(wanted)

    def work_table(self, name: str, columns: list[str]) -> tuple[str, list[str]]:
        return name, [f"CREATE OR REPLACE TEMPORARY TABLE {name} ({', '.join(f'{c} VARCHAR' for c in columns)})"]


class SparkDialect(Dialect):
    """Spark SQL (pyspark locally, Databricks): ``md5``, ``concat_ws`` and ``chr`` as in DuckDB
    (https://spark.apache.org/docs/latest/api/sql/); backticked names; exact sums in DECIMAL(38,0).
    Plain Spark tables have no DELETE or MERGE (those are Delta's), so the snapshot is partitioned by
    sync and a sync's partition is rewritten with ``INSERT OVERWRITE`` from a staging table (Spark
    refuses to overwrite a table in the statement that reads it). Work tables are temp views the
    session registers (``warehouse_sessions.SparkSession``)."""

    name = "spark"
    text = "STRING"
    quote = "`"

    def literal(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def hash60(self, text: str) -> str:
        return f"CAST(conv(substr(md5({text}), 1, 15), 16, 10) AS BIGINT)"

    def checksum(self, text: str) -> str:
        h = self.hash60(text)
        return f"count(*), sum(CAST({h} AS DECIMAL(38, 0))), bit_xor({h})"

    def filter(self, wanted: str) -> str:
        return _coalesce_is_true(wanted)

    def bookkeeping(self, schema: str) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS {schema}",
                f"""CREATE TABLE IF NOT EXISTS {schema}.held_snapshot (member_key STRING, fp STRING, sync STRING)
                    USING parquet PARTITIONED BY (sync)""",
                f"""CREATE TABLE IF NOT EXISTS {schema}.snapshot_version (version INT, sync STRING)
                    USING parquet PARTITIONED BY (sync)"""]

    def work_table(self, name: str, columns: list[str]) -> tuple[str, list[str]]:
        return name, []  # a temp view, registered by the session

    def _overwrite(self, table: str, sync: str, select: str) -> str:
        return f"INSERT OVERWRITE TABLE {table} PARTITION (sync = {self.literal(sync)}) {select}"

    def clear_sync(self, table: str, sync: str) -> list[str]:
        return [f"ALTER TABLE {table} DROP IF EXISTS PARTITION (sync = {self.literal(sync)})"]

    def remove_keys(self, table: str, sync: str, keys: str) -> list[str]:
        staging = f"{table}_staging"
        return [f"DROP TABLE IF EXISTS {staging}",
                f"""CREATE TABLE {staging} USING parquet AS SELECT h.member_key, h.fp FROM {table} h
                    WHERE h.sync = {self.literal(sync)} AND NOT EXISTS (SELECT 1 FROM {keys} k WHERE k.member_key = h.member_key)""",
                self._overwrite(table, sync, f"SELECT member_key, fp FROM {staging}"),
                f"DROP TABLE {staging}"]

    def append_rows(self, table: str, sync: str, rows: str) -> str:
        return f"INSERT INTO {table} PARTITION (sync = {self.literal(sync)}) SELECT member_key, fp FROM {rows}"

    def set_version(self, table: str, sync: str, version: int) -> list[str]:
        return [self._overwrite(table, sync, f"SELECT {int(version)}")]


class DatabricksDialect(SparkDialect):
    """Databricks SQL (``databricks://``, the databricks-sqlalchemy dialect): Spark SQL, so every function,
    literal, fingerprint and checksum is ``SparkDialect``'s, character for character. Only the tables
    differ: a SQL warehouse over the connector has no session to register temp views in, and its
    tables are Delta (the default table format; https://docs.databricks.com/en/delta/index.html), which
    take ``DELETE``. So the snapshot's rows are replaced with ``DELETE`` + ``INSERT`` as on DuckDB, and work
    tables are ordinary tables in the bookkeeping schema, named per schema as on BigQuery."""

    name = "databricks"

    def __init__(self, schema: str = "syncer", tag: str = "w") -> None:
        self.schema, self.tag = schema, tag

    def bookkeeping(self, schema: str) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS {schema}",
                f"CREATE TABLE IF NOT EXISTS {schema}.held_snapshot (sync STRING NOT NULL, member_key STRING NOT NULL,"
                f" fp STRING NOT NULL) CLUSTER BY (sync, member_key)",
                f"CREATE TABLE IF NOT EXISTS {schema}.snapshot_version (sync STRING NOT NULL, version INT NOT NULL)"]

    def work_table(self, name: str, columns: list[str]) -> tuple[str, list[str]]:
        table = f"{self.schema}.{name}_{self.tag}"
        return table, [f"CREATE OR REPLACE TABLE {table} ({', '.join(f'{c} STRING' for c in columns)})"]

    clear_sync = Dialect.clear_sync
    remove_keys = Dialect.remove_keys
    set_version = Dialect.set_version
    append_rows = Dialect.append_rows


class BigQueryDialect(Dialect):
    """BigQuery: MD5 returns BYTES, so TO_HEX(MD5(...)) gives the same 32 lowercase digits; there is
    no CONCAT_WS, so the parts are joined with ARRAY_TO_STRING and CODE_POINTS_TO_STRING([31]);
    FARM_FINGERPRINT is the checksum hash and BIT_XOR its xor; backticked names; literals escape with
    a backslash (https://cloud.google.com/bigquery/docs/reference/standard-sql/functions-and-operators).
    Temporary tables exist only inside scripts, so work tables are ordinary tables in the bookkeeping
    dataset that expire after a day."""

    name = "bigquery"
    text = "STRING"
    boolean = "BOOL"
    quote = "`"
    except_ = "EXCEPT DISTINCT"

    def __init__(self, schema: str = "syncer", tag: str = "w") -> None:
        self.schema, self.tag = schema, tag

    def literal(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def md5(self, text: str) -> str:
        return f"TO_HEX(MD5({text}))"

    def char(self, code: int) -> str:
        return f"CODE_POINTS_TO_STRING([{code}])"

    def fingerprint_text(self, parts: list[str]) -> str:
        joined = ", ".join(f"COALESCE(CAST({p} AS STRING), {self.char(30)})" for p in parts)
        return f"ARRAY_TO_STRING([{joined}], {self.char(31)})"

    def hash60(self, text: str) -> str:
        return f"MOD(FARM_FINGERPRINT({text}), {_TWO_60})"

    def checksum(self, text: str) -> str:
        return f"COUNT(*), SUM(CAST({self.hash60(text)} AS BIGNUMERIC)), BIT_XOR(FARM_FINGERPRINT({text}))"

    def filter(self, wanted: str) -> str:
        return _coalesce_is_true(wanted)

    def bookkeeping(self, schema: str) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS `{schema}`",
                f"CREATE TABLE IF NOT EXISTS `{schema}.held_snapshot` (sync STRING NOT NULL, member_key STRING NOT NULL,"
                f" fp STRING NOT NULL) CLUSTER BY sync, member_key",
                f"CREATE TABLE IF NOT EXISTS `{schema}.snapshot_version` (sync STRING NOT NULL, version INT64 NOT NULL)"]

    def table(self, schema: str, name: str) -> str:
        return f"`{schema}.{name}`"

    def work_table(self, name: str, columns: list[str]) -> tuple[str, list[str]]:
        table = f"`{self.schema}.{name}_{self.tag}`"
        return table, [f"CREATE OR REPLACE TABLE {table} ({', '.join(f'{c} STRING' for c in columns)})"
                       " OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"]


def _coalesce_is_true(wanted: str) -> str:
    """``x IS TRUE`` as ``coalesce(x, FALSE)``: the same truth table, in every engine's grammar."""
    return re.sub(r"(\w+) IS TRUE", r"coalesce(\1, FALSE)", wanted)


DIALECTS: dict[str, type[Dialect]] = {
    "duckdb": Dialect, "postgresql": PostgresDialect, "snowflake": SnowflakeDialect, "spark": SparkDialect,
    "bigquery": BigQueryDialect, "databricks": DatabricksDialect,
}
