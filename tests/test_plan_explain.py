"""`syncer plan --explain`: the SQL each sync's plan would send to the warehouse, in order, with nothing run
that writes: the bookkeeping schema stays as it was and the ledger records no run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from syncer.cli.main import cli
from syncer.delivery.engine import Engine
from syncer.ledger.store import Ledger
from syncer.planning import warehouse_diff
from syncer.project.project import load_project
from tests.syncer.test_warehouse_diff import apply, first_rows, project
from tests.syncer.test_warehouse_engines import SNOWFLAKE_URL, fakesnow_patch, snowflake_loader  # noqa: F401

SEGMENT_SQL = "SELECT * FROM customers WHERE in_segment"


def explain(root: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-p", str(root), *args, "plan", "--explain"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def explained(root: Path) -> list[str]:
    return json.loads(explain(root, "--json"))["buyers_sync"]


def runs(root: Path) -> int:
    ledger = Ledger(load_project(root).ledger_url())
    return len(ledger.history(None, 100))


def with_warehouse(root: Path, url: str) -> Path:
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", url))
    return root


def schemas(warehouse: Path) -> set[str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {name for (name,) in con.sql("SELECT schema_name FROM information_schema.schemata").fetchall()}
    finally:
        con.close()


# --- local mode: the segment's query as the warehouse gets it -------------------------------------------


def test_local_mode_on_a_duckdb_file_shows_the_columns_probe_and_the_canonical_read(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows())
    probe, read = explained(root)
    assert probe == f"SELECT * FROM ({SEGMENT_SQL}) AS _q LIMIT 0"
    assert read.startswith('SELECT CAST(_q."customer_id" AS VARCHAR) AS member_key, CAST(_q."email" AS VARCHAR) AS k_email')
    assert read.endswith(f"FROM ({SEGMENT_SQL}) AS _q")
    text = explain(root)
    assert "-- sync buyers_sync (local mode): 2 statement(s)" in text and f"FROM ({SEGMENT_SQL}) AS _q;" in text
    assert runs(root) == 0


def test_local_mode_on_another_warehouse_shows_the_query_as_written_without_connecting(tmp_path: Path) -> None:
    root = with_warehouse(project(tmp_path / "p", first_rows()), "postgresql+psycopg://syncer@127.0.0.1:9/nowhere")
    assert explained(root) == [SEGMENT_SQL]  # port 9 answers nobody: nothing was asked of it


# --- warehouse mode: catch-up, checksums and diff, none of them run ------------------------------------


def test_warehouse_mode_lists_every_statement_and_creates_nothing(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    statements = explained(root)
    assert statements[0] == "CREATE SCHEMA IF NOT EXISTS syncer"
    order = ["CREATE TABLE IF NOT EXISTS syncer.held_snapshot", f"SELECT * FROM ({SEGMENT_SQL}) q WHERE 1 = 0",
             "SELECT version FROM syncer.snapshot_version", "INSERT INTO syncer.snapshot_version",
             "SELECT count(*), sum(('0x' || substr(md5(s.member_key", "SELECT count(*), sum(('0x' || substr(md5(h.member_key",
             "SELECT coalesce(d.member_key, h.member_key) AS member_key"]
    found = [next(i for i, s in enumerate(statements) if s.startswith(prefix)) for prefix in order]
    assert found == sorted(found), statements  # catch-up, then the checksums of the shortcut, then the diff
    assert "FULL JOIN (SELECT member_key, fp FROM syncer.held_snapshot WHERE sync = 'buyers_sync') h" in statements[-1]
    assert "-- upload 0 row(s) into syncer_supp (member_key)" in statements  # uploads: how many rows, never the rows
    assert "syncer" not in schemas(root / "warehouse.duckdb")  # the bookkeeping schema was never created
    assert runs(root) == 0


class Recording:
    """A real warehouse session that also keeps every statement it is given."""

    def __init__(self, inner) -> None:
        self.inner, self.dialect, self.statements = inner, inner.dialect, []

    costs = property(lambda self: self.inner.costs, lambda self, value: setattr(self.inner, "costs", value))

    def run(self, sql: str) -> None:
        self.statements.append(sql)
        self.inner.run(sql)

    def rows(self, sql: str) -> list[tuple]:
        self.statements.append(sql)
        return self.inner.rows(sql)

    def columns(self, sql: str) -> list[str]:
        self.statements.append(sql)
        return self.inner.columns(sql)

    def fill(self, table: str, columns: list[str], values: list) -> None:
        self.inner.fill(table, columns, values)

    def stream(self, sql: str, chunk_rows: int):
        self.statements.append(sql)
        return self.inner.stream(sql, chunk_rows)

    def commit(self) -> None:
        self.inner.commit()

    def duckdb_connection(self):
        return self.inner.duckdb_connection()

    def land_in(self, con, table: str, names: list, sql: str) -> None:
        self.statements.append(sql)
        self.inner.land_in(con, table, names, sql)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("snapshot_lost", [False, True], ids=["replayed", "rebuilt"])
def test_warehouse_mode_explains_exactly_what_the_next_plan_runs_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot_lost: bool) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    apply(root)
    warehouse = root / "warehouse.duckdb"
    if snapshot_lost:  # the snapshot's version is gone: the next plan rebuilds it from the ledger
        con = duckdb.connect(str(warehouse))
        con.execute("DELETE FROM syncer.snapshot_version")
        con.close()

    def snapshot() -> list[tuple]:
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            return con.sql("SELECT * FROM syncer.held_snapshot UNION ALL SELECT sync, CAST(version AS VARCHAR), ''"
                           " FROM syncer.snapshot_version ORDER BY ALL").fetchall()
        finally:
            con.close()

    before, history = snapshot(), runs(root)
    listed = explained(root)
    assert snapshot() == before and runs(root) == history
    rebuild = "-- upload 44 row(s) into syncer_rows (member_key, fp)"  # the members held, counted, never listed
    assert (rebuild in listed) == snapshot_lost
    statements = [s for s in listed if not s.startswith("--")]

    sessions: list[Recording] = []
    real = warehouse_diff.open_session
    monkeypatch.setattr(warehouse_diff, "open_session", lambda *a, **k: sessions.append(Recording(real(*a, **k))) or sessions[-1])
    with Engine(load_project(root)) as engine:
        engine.build_plan()
    ran = [textwrap.dedent(s).strip() for s in sessions[0].statements]
    assert ran == statements


def test_snowflake_explain_is_in_snowflakes_sql_and_writes_nothing(tmp_path: Path, fakesnow_patch: None) -> None:  # noqa: F811
    root = with_warehouse(project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n"), SNOWFLAKE_URL)
    snowflake_loader()(first_rows())
    text = "\n".join(explained(root))
    assert "MD5(concat_ws(CHR(31), coalesce(CAST(s.k_email AS VARCHAR), CHR(30))" in text and "BITXOR_AGG(HASH(" in text
    assert "CREATE OR REPLACE TEMPORARY TABLE syncer_supp" in text
    import snowflake.connector

    conn = snowflake.connector.connect(user="syncer", account="fakeaccount", database="analytics", schema="public")
    cursor = conn.cursor()
    cursor.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'SYNCER'")
    assert cursor.fetchone()[0] == 0
    conn.close()
    assert runs(root) == 0


def test_a_warehouse_this_machine_cannot_reach_is_still_explained_in_its_dialect(tmp_path: Path) -> None:
    """No BigQuery driver here: the columns are the configured ones and the snapshot is shown rebuilt."""
    import sqlglot

    root = with_warehouse(project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n"), "bigquery://project/shop")
    statements = explained(root)
    text = "\n".join(statements)
    for needle in ("CREATE SCHEMA IF NOT EXISTS `syncer`", "TO_HEX(MD5(ARRAY_TO_STRING(", "FARM_FINGERPRINT",
                   "DELETE FROM `syncer.held_snapshot` WHERE sync = 'buyers_sync'"):
        assert needle in text, needle
    for statement in statements:
        if not statement.startswith("--"):
            sqlglot.parse_one(statement, read="bigquery")


def test_explain_names_an_unknown_sync(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows())
    result = CliRunner().invoke(cli, ["-p", str(root), "plan", "--explain", "--sync", "nope"])
    assert result.exit_code == 1 and "unknown sync(s): nope" in result.output  # as `syncer plan --sync nope` says


def test_explain_never_records_a_run_even_on_a_ledger_that_has_some(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows())
    apply(root)
    engine = sa.create_engine(load_project(root).ledger_url())
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar()
    explain(root)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == before
    engine.dispose()
