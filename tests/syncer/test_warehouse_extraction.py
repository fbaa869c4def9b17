"""Columnar extraction in the `local` mode, and Databricks (`databricks://`) routed to the Spark SQL dialect.

Snowflake's local mode reads through the connector itself: Arrow batches where it offers them
(``fetch_arrow_batches``), rows where it does not (fakesnow, here). Databricks and BigQuery run against a
real account only when their credentials are set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncer.planning.extract import extract
from syncer.planning.warehouse_dialects import DatabricksDialect, SparkDialect
from syncer.planning.warehouse_sessions import driver_arrow_batches
from syncer.project.project import load_project
from tests.conftest import CUSTOMER_COLUMNS
from tests.syncer.test_warehouse_diff import first_rows, plan_of, project, same
from tests.syncer.test_warehouse_engines import (
    NAMES,
    SNOWFLAKE_URL,
    fakesnow_patch,  # noqa: F401  (the fixture)
    run_scenario,
    snowflake_loader,
)

# --- Snowflake's local mode, through the connector ---------------------------------------------------


def test_snowflake_local_mode_plans_exactly_like_duckdb(tmp_path: Path, fakesnow_patch: None) -> None:  # noqa: F811
    snowflake_loader()(first_rows())
    local = project(tmp_path / "duckdb", first_rows())
    snowflake = project(tmp_path / "snowflake", first_rows())
    (snowflake / "syncer.yml").write_text((snowflake / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", SNOWFLAKE_URL))
    assert load_project(snowflake).config.diff_mode == "local"
    same(plan_of(local), plan_of(snowflake))


def test_snowflake_extraction_keeps_the_warehouses_types_in_bounded_chunks(fakesnow_patch: None) -> None:  # noqa: F811
    snowflake_loader()(first_rows())
    batches = list(extract(SNOWFLAKE_URL, "SELECT customer_id, email, ads_consent FROM customers ORDER BY customer_id",
                           chunk_rows=10))
    assert [b.num_rows for b in batches] == [10, 10, 10, 10, len(first_rows()) - 40]
    assert pa.types.is_boolean(batches[0].schema.field("ADS_CONSENT").type)  # not text: a consent stays a boolean
    assert sum(b.num_rows for b in batches) == len(first_rows())


class ArrowCursor:
    """A DB-API cursor whose driver hands out Arrow, as Snowflake's (``fetch_arrow_batches``, whole server
    chunks) or Databricks' (``fetchmany_arrow``, the size asked for) do."""

    def __init__(self, table: pa.Table, kind: str) -> None:
        self.table, self.offset = table, 0
        if kind == "snowflake":
            self.fetch_arrow_batches = lambda: iter([table.slice(0, 25), table.slice(25)])
        else:
            self.fetchmany_arrow = self._fetchmany_arrow

    def _fetchmany_arrow(self, size: int) -> pa.Table:
        chunk = self.table.slice(self.offset, size)
        self.offset += chunk.num_rows
        return chunk

    def fetchmany(self, size: int) -> list[tuple]:
        raise AssertionError("rows were fetched one by one where the driver offers Arrow")


@pytest.mark.parametrize("kind", ["snowflake", "databricks"])
def test_a_driver_that_offers_arrow_is_read_as_arrow_within_the_chunk_size(kind: str) -> None:
    table = pa.table({"member_key": pa.array([str(i) for i in range(60)]), "consent": pa.array([i % 2 == 0 for i in range(60)])})
    batches = list(driver_arrow_batches(ArrowCursor(table, kind), 20))
    assert max(b.num_rows for b in batches) <= 20
    assert pa.Table.from_batches(batches).equals(table)


def test_a_driver_without_arrow_falls_back_to_rows() -> None:
    class RowsOnly:
        description = [("member_key",)]

    assert driver_arrow_batches(RowsOnly(), 10) is None


# --- Databricks: Spark SQL ----------------------------------------------------------------------------

DATABRICKS_URL = "databricks://token:${DATABRICKS_TOKEN}@example.cloud.databricks.com?http_path=/sql/1.0/warehouses/abc&catalog=main&schema=shop"


def test_databricks_sql_is_the_spark_dialects() -> None:
    spark, databricks = SparkDialect(), DatabricksDialect("syncer")
    parts = ["s.k_email", "s.k_phone", "s.region"]
    for make in (lambda d: d.md5(d.fingerprint_text(parts)), lambda d: d.checksum("s.member_key"), lambda d: d.hash60("t"),
                 lambda d: d.literal("it's a \\ test"), lambda d: d.ident("odd`name"), lambda d: d.filter("consent_ads IS TRUE")):
        assert make(databricks) == make(spark)
    assert (databricks.text, databricks.quote, databricks.except_) == (spark.text, spark.quote, spark.except_)


def test_a_databricks_warehouse_is_accepted_in_warehouse_mode_and_explained_in_spark_sql(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlglot
    from click.testing import CliRunner

    from syncer.cli.main import cli

    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", DATABRICKS_URL))
    monkeypatch.setenv("DATABRICKS_TOKEN", "not-a-real-token")
    assert load_project(root).config.diff_mode == "warehouse"
    result = CliRunner().invoke(cli, ["-p", str(root), "--json", "plan", "--explain"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import json

    statements = json.loads(result.output)["buyers_sync"]
    text = "\n".join(statements)
    spark = SparkDialect()
    assert spark.md5(spark.fingerprint_text(["s.k_email", "s.k_phone", "s.region"])) in text
    assert spark.checksum("h.member_key || '|' || h.fp") in text
    assert "DELETE FROM syncer.held_snapshot WHERE sync = 'buyers_sync'" in text  # Delta tables take DELETE
    for statement in statements:
        if not statement.startswith("--"):
            sqlglot.parse_one(statement, read="databricks")


@pytest.mark.skipif(not all(os.environ.get(v) for v in ("DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN")),
                    reason="runs on a real Databricks SQL warehouse: set DATABRICKS_SERVER_HOSTNAME, DATABRICKS_HTTP_PATH and"
                           " DATABRICKS_TOKEN (and DATABRICKS_CATALOG, default main)")
def test_databricks_scenario(tmp_path: Path) -> None:
    pytest.importorskip("databricks.sqlalchemy")
    catalog = os.environ.get("DATABRICKS_CATALOG", "main")
    schema = f"syncer_test_{os.getpid()}"
    url = (f"databricks://token:${{DATABRICKS_TOKEN}}@{os.environ['DATABRICKS_SERVER_HOSTNAME']}"
           f"?http_path={os.environ['DATABRICKS_HTTP_PATH']}&catalog={catalog}&schema={schema}")
    engine = sa.create_engine(url.replace("${DATABRICKS_TOKEN}", os.environ["DATABRICKS_TOKEN"]))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))

    def load(rows: list[tuple]) -> None:
        types = CUSTOMER_COLUMNS.replace("VARCHAR", "STRING")
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE OR REPLACE TABLE {schema}.customers ({types})"))
            conn.execute(sa.text(f"INSERT INTO {schema}.customers VALUES ({', '.join(':' + n for n in NAMES)})"),
                         [dict(zip(NAMES, row)) for row in rows])

    try:
        run_scenario(tmp_path, url, load)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text("DROP SCHEMA IF EXISTS syncer CASCADE"))
        engine.dispose()


@pytest.mark.skipif(not (os.environ.get("SYNCER_BIGQUERY_PROJECT") and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")),
                    reason="runs on a real BigQuery project: set SYNCER_BIGQUERY_PROJECT and GOOGLE_APPLICATION_CREDENTIALS")
def test_bigquery_local_mode_reads_arrow(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy_bigquery")
    gcp = os.environ["SYNCER_BIGQUERY_PROJECT"]
    batches = list(extract(f"bigquery://{gcp}", "SELECT x, x * 2 AS y FROM UNNEST(GENERATE_ARRAY(1, 2500)) AS x", chunk_rows=1000))
    assert max(b.num_rows for b in batches) <= 1000 and sum(b.num_rows for b in batches) == 2500
    assert pa.types.is_integer(batches[0].schema.field("y").type)
