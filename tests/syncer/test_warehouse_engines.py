"""The `warehouse` diff mode on every engine: the same plans as the `local` mode, and the same fingerprints.

DuckDB and PostgreSQL run as themselves, Snowflake through fakesnow (the real snowflake-connector API
over an embedded DuckDB; its SQL translated by fakesnow, so the test checks the values that come out),
Spark through pyspark in local mode (one small JVM for the module, stopped at the end). BigQuery has
no local engine: its SQL is parsed for the BigQuery dialect, and ``test_bigquery_scenario`` runs on a
real project only when ``SYNCER_BIGQUERY_PROJECT`` and Google credentials are set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncer.errors import ConfigError
from syncer.ledger.store import Ledger
from syncer.planning.fingerprints import concat_sql, number_from_hex
from syncer.planning.plan import SyncPlan
from syncer.planning.warehouse_dialects import BigQueryDialect, Dialect
from syncer.planning.warehouse_diff import WarehouseDiff, _ExplainSession
from syncer.planning.warehouse_sessions import open_session
from syncer.project.project import load_project
from tests.conftest import CUSTOMER_COLUMNS, write_customers
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the fixture)
from tests.syncer.test_warehouse_diff import apply, first_rows, plan_of, project, same, second_rows

NAMES = [c.split()[0] for c in CUSTOMER_COLUMNS.split(", ")]
Loader = Callable[[list[tuple]], None]

# --- the engines ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pyspark.sql import SparkSession  # the test extra installs it; a missing install fails, never skips

    session = (SparkSession.builder.master("local[1]").appName("syncer-tests")
               .config("spark.driver.memory", "512m").config("spark.sql.shuffle.partitions", "1")
               .config("spark.ui.enabled", "false").config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-wh")))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def fakesnow_patch() -> Iterator[None]:
    import fakesnow

    with fakesnow.patch():
        yield


SNOWFLAKE_URL = "snowflake://syncer@fakeaccount/analytics/public"


def snowflake_loader() -> Loader:
    import snowflake.connector

    def load(rows: list[tuple]) -> None:
        conn = snowflake.connector.connect(user="syncer", account="fakeaccount", database="analytics", schema="public")
        cursor = conn.cursor()
        cursor.execute(f"CREATE OR REPLACE TABLE customers ({CUSTOMER_COLUMNS})")
        cursor.executemany(f"INSERT INTO customers VALUES ({', '.join(['%s'] * len(NAMES))})", rows)
        conn.commit()
        conn.close()

    return load


def spark_loader(spark) -> Loader:
    def load(rows: list[tuple]) -> None:
        columns = list(zip(*rows))
        table = pa.table({n: pa.array(list(c)) for n, c in zip(NAMES, columns)})
        spark.createDataFrame(table).createOrReplaceTempView("customers")

    return load


def postgres_loader(url: str) -> Loader:
    def load(rows: list[tuple]) -> None:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
            conn.execute(sa.text(f"CREATE TABLE customers ({CUSTOMER_COLUMNS.replace('VARCHAR', 'TEXT')})"))
            conn.execute(sa.text(f"INSERT INTO customers VALUES ({', '.join(':' + n for n in NAMES)})"),
                         [dict(zip(NAMES, row)) for row in rows])
        engine.dispose()

    return load


# --- the scenario ---------------------------------------------------------------------------------


def keys(plan: SyncPlan) -> dict[str, list[str]]:
    return {op: sorted(r.member_key for r in getattr(plan, op)) for op in ("adds", "removes", "refreshes")} | {
        "rejections": sorted(plan.rejections)}


def identical(local: SyncPlan, warehouse: SyncPlan) -> None:
    assert keys(warehouse) == keys(local)
    same(local, warehouse)


def run_scenario(tmp_path: Path, url: str, load: Loader) -> None:
    """Initial, leavers, joiners, a changed identifier, consent changes, repeated keys, then no change:
    the warehouse plans equal the local mode's (on DuckDB files with the same rows) at every step."""
    local = project(tmp_path / "local", first_rows())
    inside = project(tmp_path / "inside", first_rows(), "diff_mode: warehouse\n")
    (inside / "syncer.yml").write_text((inside / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", url))

    def step(rows: list[tuple]) -> tuple[SyncPlan, SyncPlan]:
        write_customers(local / "warehouse.duckdb", rows)
        load(rows)
        plans = plan_of(local), plan_of(inside)
        identical(*plans)
        apply(local)
        apply(inside)
        return plans

    first, _ = step(first_rows())
    assert (len(first.adds), len(first.rejections)) == (44, 1)
    second, _ = step(second_rows())
    assert {r.member_key for r in second.removes} == {"1", "2", "3", "4", "43", "44"}
    assert {r.member_key for r in second.refreshes} == {"5"} and second.cleared_rejections == ["41"]
    third, _ = step(second_rows())
    assert third.is_empty and not third.stats["unchanged_by_checksum"]  # key 44 repeats with differing rows
    unique = [row for row in second_rows() if row[0] not in (44, 45)]
    step(unique)
    fourth_local, fourth_inside = step(unique)
    assert fourth_inside.is_empty and fourth_inside.stats["unchanged_by_checksum"]  # proven in the warehouse
    assert fourth_inside.held_before == fourth_local.held_before == 45


def test_duckdb_scenario(tmp_path: Path) -> None:
    warehouse = tmp_path / "inside" / "warehouse.duckdb"
    run_scenario(tmp_path, "duckdb:///warehouse.duckdb", lambda rows: write_customers(warehouse, rows))


def test_postgres_scenario(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    try:
        run_scenario(tmp_path, postgres_url, postgres_loader(postgres_url))
    finally:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS syncer CASCADE"))
            conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
        engine.dispose()


def test_snowflake_scenario_through_fakesnow(tmp_path: Path, fakesnow_patch: None) -> None:
    run_scenario(tmp_path, SNOWFLAKE_URL, snowflake_loader())


def test_spark_scenario(tmp_path: Path, spark) -> None:
    try:
        run_scenario(tmp_path, "spark://", spark_loader(spark))
        held = spark.sql("SELECT count(*) FROM syncer.held_snapshot WHERE sync = 'buyers_sync'").collect()[0][0]
        assert held == 45  # the snapshot lives in Spark, one partition per sync
    finally:
        spark.sql("DROP SCHEMA IF EXISTS syncer CASCADE")


# --- fingerprints ----------------------------------------------------------------------------------

PARTS = [("Zoë", None, "granted"), ("", "x\x1fy", "unknown"), (None, None, None), ("+1 415 555 0001", "US", "it's"),
         ("名前", "🙂", "a\\b"), ("same", "same", "same")]


def local_fingerprints() -> list[int]:
    """``md5_number`` of each row, as the local mode computes it."""
    con = duckdb.connect()
    con.register("t", pa.table({n: pa.array(list(c), pa.string()) for n, c in zip("abc", zip(*PARTS))}))
    numbers = [n for (n,) in con.sql(f"SELECT md5_number({concat_sql(['s.a', 's.b', 's.c'])}) FROM t s ORDER BY s.a NULLS FIRST").fetchall()]
    con.close()
    return numbers


def engine_fingerprints(session) -> list[int]:
    """The same rows' fingerprints computed by the engine behind ``session``, read as ``md5_number``."""
    d: Dialect = session.dialect
    table, create = d.work_table("syncer_fp", ["a", "b", "c"])
    for statement in create:
        session.run(statement)
    session.fill(table, ["a", "b", "c"], [list(c) for c in zip(*PARTS)])
    hexes = session.rows(f"SELECT s.a, {d.md5(d.fingerprint_text(['s.a', 's.b', 's.c']))} FROM {table} s")
    ordered = [h for _, h in sorted(hexes, key=lambda r: (r[0] is not None, r[0] or ""))]
    con = duckdb.connect()
    con.register("h", pa.table({"raw": pa.array(ordered, pa.string())}))
    numbers = [n for (n,) in con.sql(f"SELECT {number_from_hex('raw')} FROM h").fetchall()]
    con.close()
    return numbers


def test_fingerprints_equal_the_local_modes_on_duckdb_and_postgres(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    for url in (f"duckdb:///{tmp_path / 'fp.duckdb'}", postgres_url):
        session = open_session(url, "syncer")
        try:
            assert engine_fingerprints(session) == local_fingerprints(), url
        finally:
            session.close()


def test_fingerprints_equal_the_local_modes_on_snowflake(fakesnow_patch: None) -> None:
    session = open_session(SNOWFLAKE_URL, "syncer")
    try:
        assert engine_fingerprints(session) == local_fingerprints()
    finally:
        session.close()


def test_fingerprints_equal_the_local_modes_on_spark(spark) -> None:
    session = open_session("spark://", "syncer")
    try:
        assert engine_fingerprints(session) == local_fingerprints()
    finally:
        session.close()


# --- BigQuery: the SQL parses ------------------------------------------------------------------------


def test_the_bigquery_sql_parses_for_bigquery(tmp_path: Path) -> None:
    import sqlglot

    root = project(tmp_path / "p", first_rows())
    segment = load_project(root).segments["buyers"]
    # the recorder `syncer plan --explain` uses: it answers as a warehouse whose segment differs from its snapshot
    session = _ExplainSession(BigQueryDialect("syncer", tag="t1"), None, {"buyers": NAMES})
    session.segment = "buyers"
    warehouse = WarehouseDiff("bigquery://project/syncer", "syncer", session=session)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    warehouse.catch_up(ledger, "buyers_sync")
    warehouse._delete("buyers_sync", ["1"])
    warehouse._insert("buyers_sync", ["1"], ["0" * 32])
    source = warehouse.source("SELECT * FROM `project.shop.customers` WHERE in_segment", segment, "buyers")
    warehouse.segment_counts(source)
    warehouse.left_segment(source, ["7"])
    shape = SimpleNamespace(kinds=["email", "phone"], has_region=True, wanted="consent_ads IS TRUE",
                            consent_sql="CASE WHEN s.consent_ads THEN 'granted' ELSE 'unknown' END")
    con = duckdb.connect()
    warehouse.diff(con, source=source, sync_name="buyers_sync", shape=shape, suppressed={"9"}, rejected={"41": "0" * 32},
                   held_count=0, resend_all=False, chunk_rows=1000)
    con.close()
    text = "\n".join(session.statements)
    for needle in ("TO_HEX(MD5(ARRAY_TO_STRING(", "CODE_POINTS_TO_STRING([31])", "EXCEPT DISTINCT", "`syncer.held_snapshot`",
                   "FARM_FINGERPRINT", "FULL JOIN", "row_number() OVER"):
        assert needle in text, needle
    for statement in session.statements:
        if not statement.startswith("-- upload "):  # the recorder's note of an upload, not SQL
            sqlglot.parse_one(statement, read="bigquery")  # raises on anything BigQuery's grammar refuses


@pytest.mark.skipif(not (os.environ.get("SYNCER_BIGQUERY_PROJECT") and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")),
                    reason="runs on a real BigQuery project: set SYNCER_BIGQUERY_PROJECT and GOOGLE_APPLICATION_CREDENTIALS")
def test_bigquery_scenario(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy_bigquery")
    gcp = os.environ["SYNCER_BIGQUERY_PROJECT"]
    dataset = f"syncer_test_{os.getpid()}"
    url = f"bigquery://{gcp}/{dataset}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS `{gcp}.{dataset}`"))

    def load(rows: list[tuple]) -> None:
        types = CUSTOMER_COLUMNS.replace("BIGINT", "INT64").replace("VARCHAR", "STRING").replace("BOOLEAN", "BOOL")
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE OR REPLACE TABLE `{gcp}.{dataset}.customers` ({types})"))
            conn.execute(sa.text(f"INSERT INTO `{gcp}.{dataset}.customers` VALUES ({', '.join(':' + n for n in NAMES)})"),
                         [dict(zip(NAMES, row)) for row in rows])

    try:
        run_scenario(tmp_path, url, load)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS `{gcp}.{dataset}` CASCADE"))
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS `{gcp}.syncer` CASCADE"))
        engine.dispose()


# --- the project accepts these engines ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["snowflake://syncer@account/db/public", "spark://", "bigquery://project/dataset",
                                 "postgresql+psycopg://syncer@host/db", "duckdb:///warehouse.duckdb"])
def test_warehouse_mode_accepts_the_engines_it_writes_sql_for(tmp_path: Path, url: str) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", url))
    assert load_project(root).config.diff_mode == "warehouse"


@pytest.mark.parametrize(("url", "named"), [("mysql://syncer@host/db", "'mysql'"), ("sqlite:///wh.db", "'sqlite'"),
                                            ("redshift+psycopg2://u@host/db", "'redshift'")])
def test_warehouse_mode_refuses_other_engines_by_name(tmp_path: Path, url: str, named: str) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", url))
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert named in str(caught.value) and "Snowflake" in str(caught.value) and "diff_mode: local" in str(caught.value)


def test_a_spark_warehouse_needs_warehouse_mode(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows())
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", "spark://"))
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert "diff_mode: warehouse" in str(caught.value)


