"""The `warehouse` diff mode gives the same plans as the `local` mode, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from destinations.fake.connector import FakeDestination
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError
from syncer.ledger.store import Ledger
from syncer.planning import warehouse_sessions
from syncer.planning.plan import SyncPlan
from syncer.project.project import load_project
from tests.conftest import CUSTOMER_COLUMNS, FAKE, person, write_customers, write_project
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the fixture)

IDENTIFIERS = "[email, phone]"


def first_rows() -> list[tuple]:
    return [person(i) for i in range(1, 41)] + [
        person(41, email="not-an-email", phone="12"),  # rejected: no usable identifier
        person(42, ads_consent=False),  # never sent
        person(43, ads_consent=None),  # unknown consent: ads send it
        person(44, email="first@example.com"), person(44, email="second@example.com"),  # a repeated key
        person(45), person(45),  # an exact duplicate row
        person(0, customer_id=None), person(46, phone="+44 20 7946 0958", country="GB"),
    ]


def second_rows() -> list[tuple]:
    rows = [person(i) for i in range(4, 41)] + [person(i) for i in range(47, 52)]  # 1-3 leave, 47-51 join
    rows[0] = person(4, email="changed4@example.com")  # a changed identifier: remove then add
    rows[1] = person(5, email=" PERSON5@example.com")  # same after normalising: a ledger-only refresh
    return rows + [
        person(41, email="fixed41@example.com"),  # the rejected member is fixed
        person(42, ads_consent=True), person(43, ads_consent=False),  # consent granted / withdrawn
        person(44, email="first@example.com"), person(44, email="third@example.com"),
        person(45), person(45), person(46, phone="+44 20 7946 0958", country="GB"),
    ]


def project(root: Path, rows: list[tuple], extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_customers(root / "warehouse.duckdb", rows)
    write_project(root, destination=FAKE, identifiers=IDENTIFIERS)
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text() + extra)
    return root


def plan_of(root: Path) -> SyncPlan:
    with Engine(load_project(root)) as engine:
        return engine.build_plan().syncs[0]


def apply(root: Path) -> None:
    with Engine(load_project(root)) as engine:
        [report] = engine.run()
    assert report.status == "ok", report
    FakeDestination.reset()


def same(local: SyncPlan, warehouse: SyncPlan) -> None:
    """Everything a plan says, equal; the content hash covers every row's key, fingerprint and identifiers."""
    assert warehouse.content_hash == local.content_hash
    assert (warehouse.members, warehouse.held_before, warehouse.retried) == (local.members, local.held_before, local.retried)
    assert warehouse.rejections == local.rejections and warehouse.cleared_rejections == local.cleared_rejections
    for figure in ("segment_rows", "null_or_duplicate_keys", "dropped_identifiers", "unchanged_by_checksum"):
        assert warehouse.stats[figure] == local.stats[figure], figure


def test_duckdb_warehouse_mode_plans_exactly_like_the_local_mode(tmp_path: Path) -> None:
    local = project(tmp_path / "local", first_rows())
    inside = project(tmp_path / "warehouse", first_rows(), "diff_mode: warehouse\n")
    first_local, first_inside = plan_of(local), plan_of(inside)
    same(first_local, first_inside)
    assert (len(first_local.adds), len(first_local.rejections)) == (44, 1)  # 1-40, 43, 44, 45 and 46; the repeated keys once
    # left out for consent (42), counted by both modes: "where did that member go?" (Dagster's no_consent)
    assert first_local.stats["no_consent"] == first_inside.stats["no_consent"] == 1
    apply(local)
    apply(inside)

    write_customers(local / "warehouse.duckdb", second_rows())
    write_customers(inside / "warehouse.duckdb", second_rows())
    second_local, second_inside = plan_of(local), plan_of(inside)
    same(second_local, second_inside)
    assert {r.member_key for r in second_local.removes} == {"1", "2", "3", "4", "43", "44"}
    assert {r.member_key for r in second_local.refreshes} == {"5"}
    assert second_local.cleared_rejections == ["41"]
    apply(local)
    apply(inside)

    third_local, third_inside = plan_of(local), plan_of(inside)
    same(third_local, third_inside)
    assert third_local.is_empty and third_inside.is_empty
    assert not third_local.stats["unchanged_by_checksum"]  # key 44 repeats: the rows differ from what is held

    # without repeated keys an unchanged segment is proven by checksums, with no join, in both modes
    unique = [row for row in second_rows() if row[0] not in (44, 45)]
    write_customers(local / "warehouse.duckdb", unique)
    write_customers(inside / "warehouse.duckdb", unique)
    apply(local)
    apply(inside)
    fourth_local, fourth_inside = plan_of(local), plan_of(inside)
    same(fourth_local, fourth_inside)
    assert fourth_local.is_empty and fourth_local.stats["unchanged_by_checksum"]
    # the warehouse mode kept its fingerprint snapshot in the warehouse (the machine keeps only the
    # identifier digests that tell which members share a value: syncer.planning.shared)
    con = duckdb.connect(str(inside / "warehouse.duckdb"), read_only=True)
    held = con.sql("SELECT count(*) FROM syncer.held_snapshot WHERE sync = 'buyers_sync'").fetchall()[0][0]
    con.close()
    assert held == fourth_local.held_before == 45


def test_postgres_warehouse_mode_plans_like_the_local_mode_on_duckdb(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    engine = sa.create_engine(postgres_url)

    def load_postgres(rows: list[tuple]) -> None:
        names = [c.split()[0] for c in CUSTOMER_COLUMNS.split(", ")]
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
            conn.execute(sa.text(f"CREATE TABLE customers ({CUSTOMER_COLUMNS.replace('VARCHAR', 'TEXT')})"))
            conn.execute(sa.text(f"INSERT INTO customers VALUES ({', '.join(':' + n for n in names)})"),
                         [dict(zip(names, row)) for row in rows])

    local = project(tmp_path / "local", first_rows())
    inside = project(tmp_path / "pg", first_rows(), "diff_mode: warehouse\nbookkeeping_schema: syncer_test\n")
    (inside / "syncer.yml").write_text((inside / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", postgres_url))
    try:
        load_postgres(first_rows())
        same(plan_of(local), plan_of(inside))
        apply(local)
        apply(inside)
        write_customers(local / "warehouse.duckdb", second_rows())
        load_postgres(second_rows())
        second_local, second_inside = plan_of(local), plan_of(inside)
        same(second_local, second_inside)
        assert len(second_local.adds) > 0 and len(second_local.removes) > 0
        apply(local)
        apply(inside)
        third = plan_of(inside)  # catches the warehouse snapshot up with the second apply
        with engine.connect() as conn:
            held = conn.execute(sa.text("SELECT count(*) FROM syncer_test.held_snapshot")).scalar()
        assert third.is_empty and held == third.held_before == 47
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS syncer_test CASCADE"))
            conn.execute(sa.text("DROP TABLE IF EXISTS customers"))
        engine.dispose()


def test_warehouse_mode_refuses_a_warehouse_without_the_sql_it_needs(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    (root / "syncer.yml").write_text((root / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", "sqlite:///wh.db"))
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert "syncer.yml" in str(caught.value) and "diff_mode: warehouse" in str(caught.value)


def test_a_failing_segment_query_names_the_segment_in_warehouse_mode(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    segment = root / "segments" / "buyers.yml"
    segment.write_text(segment.read_text().replace("FROM customers", "FROM no_such_table"))
    with Engine(load_project(root)) as engine:
        plan = engine.build_plan()
    assert plan.syncs == [] and "segment 'buyers'" in plan.failed["buyers_sync"]  # its own sync fails, not the run


def test_the_warehouse_snapshot_is_rebuilt_from_the_ledger_when_it_is_lost(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    apply(root)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("DROP SCHEMA syncer CASCADE")
    con.close()
    again = plan_of(root)
    assert again.is_empty and again.held_before == 44
    shutil.rmtree(root / ".syncer" / "tmp", ignore_errors=True)


def test_a_snapshot_rebuild_cut_short_is_rebuilt_whole_by_the_next_plan(tmp_path: Path, monkeypatch) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    apply(root)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("DELETE FROM syncer.snapshot_version")  # the ledger moved on: the next plan rebuilds the snapshot
    con.close()
    chunks = Ledger.held_fingerprint_chunks

    def killed_after_one_chunk(self, sync, size=200_000):
        yield next(iter(chunks(self, sync, size=10)))  # each chunk is committed on its own
        raise KeyboardInterrupt

    monkeypatch.setattr(Ledger, "held_fingerprint_chunks", killed_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        plan_of(root)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    assert con.sql("SELECT count(*) FROM syncer.held_snapshot").fetchall() == [(10,)]
    assert con.sql("SELECT count(*) FROM syncer.snapshot_version").fetchall() == [(0,)]  # so it is not trusted
    con.close()
    monkeypatch.setattr(Ledger, "held_fingerprint_chunks", chunks)
    again = plan_of(root)
    assert again.is_empty and again.held_before == 44


def test_a_duckdb_warehouse_lends_its_instance_to_the_in_process_diff_under_one_memory_limit(tmp_path: Path) -> None:
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\nmemory_limit: 200MB\n")
    with Engine(load_project(root)) as engine, engine._warehouse() as warehouse:
        con = warehouse.in_process_connection()
        assert con.sql("SELECT count(*) FROM customers").fetchall() == [(len(first_rows()),)]  # the warehouse's own database
        assert con.sql("SELECT current_setting('memory_limit')").fetchall() == [("190.7 MiB",)]  # 200MB, once
        con.execute("CREATE TEMP TABLE _work AS SELECT 1 AS x")  # the diff's work tables stay its own
        assert warehouse.session.rows("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_work'") == [(0,)]
        con.close()
    assert plan_of(root).members == 44


def test_a_duckdb_warehouse_lands_the_changes_in_place_not_through_python(tmp_path: Path, monkeypatch) -> None:
    def streamed(self, sql, chunk_rows):
        raise AssertionError("the changes went through Python")

    monkeypatch.setattr(warehouse_sessions._SqlAlchemySession, "stream", streamed)
    root = project(tmp_path / "p", first_rows(), "diff_mode: warehouse\n")
    plan = plan_of(root)
    assert len(plan.adds) == 44 and plan.stats["warehouse"]["rows_returned"] >= 44
