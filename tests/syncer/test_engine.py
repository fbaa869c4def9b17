"""The engine end to end over the in-process fake destination: diff, gates, retries, plan files."""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.fake.connector import FakeDestination
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.engine import Engine, StalePlanError
from syncer.errors import ConfigError, RateLimited, TransientError
from syncer.planning.plan import load_plan, save_plan
from syncer.project.project import load_project
from tests.conftest import FAKE, person, write_customers, write_project

FAST = RetryPolicy(attempts=3, base_wait=0.0, max_wait=60.0, jitter=0.0)


def make_engine(root: Path, sleeps: list[float] | None = None) -> Engine:
    sleeps = sleeps if sleeps is not None else []
    return Engine(load_project(root), policy=FAST, sleep=sleeps.append)


def held_keys() -> set[str]:
    return set(FakeDestination.audiences.get("1001", {}))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 26)])
    return write_project(tmp_path, destination=FAKE)


def test_first_run_adds_everyone_in_batches_and_second_run_sends_nothing(project: Path) -> None:
    [report] = make_engine(project).run()
    assert (report.status, report.added, report.removed) == ("ok", 25, 0)
    assert held_keys() == {str(i) for i in range(1, 26)}
    assert [n for op, n in FakeDestination.calls] == [10, 10, 5]  # max_batch 10
    FakeDestination.calls.clear()
    [again] = make_engine(project).run()
    assert (again.added, again.removed, again.requests) == (0, 0, 0)
    assert FakeDestination.calls == []


def test_identifiers_are_normalised_and_hashed_before_sending(project: Path) -> None:
    make_engine(project).run()
    sent = FakeDestination.audiences["1001"]["1"]
    import hashlib

    assert sent == {"email": hashlib.sha256(b"person1@example.com").hexdigest()}


def test_only_the_difference_is_sent_after_the_warehouse_changes(project: Path) -> None:
    make_engine(project).run()
    FakeDestination.calls.clear()
    rows = [person(i) for i in range(3, 26)] + [person(26), person(27)]
    rows[0] = person(3, email="new3@example.com")  # changed identifier: remove old, add new
    write_customers(project / "warehouse.duckdb", rows)
    [report] = make_engine(project).run()
    assert (report.added, report.removed) == (3, 3)  # 26, 27, new 3 / 1, 2, old 3
    assert held_keys() == {str(i) for i in range(3, 28)}
    assert FakeDestination.audiences["1001"]["3"]["email"] != FakeDestination.audiences["1001"]["4"]["email"]


def test_invalid_identifiers_are_rejected_with_a_reason_and_never_sent(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2, email="not-an-email"), person(3, email=None)])
    write_project(tmp_path, destination=FAKE)
    [report] = make_engine(tmp_path).run()
    assert report.members == 1 and report.added == 1 and report.rejected == 2
    assert held_keys() == {"1"}
    assert sum(report.reasons.values()) == 2 and "invalid_email" in report.reasons
    # unchanged rejected rows are not re-reported as new work
    [again] = make_engine(tmp_path).run()
    assert (again.added, again.requests) == (0, 0)


def test_denied_consent_is_never_sent_and_withdrawal_removes(project: Path) -> None:
    write_customers(project / "warehouse.duckdb", [person(1), person(2, ads_consent=False), person(3, ads_consent=None)])
    make_engine(project).run()
    assert held_keys() == {"1", "3"}  # unknown consent is sent by default for ads
    write_customers(project / "warehouse.duckdb", [person(1, ads_consent=False), person(2, ads_consent=False), person(3, ads_consent=None)])
    [report] = make_engine(project).run()
    assert report.removed == 1 and held_keys() == {"3"}


def test_zero_row_guard_holds_and_sends_nothing_until_approved(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE, sync_extra="gates: {zero_row_guard: true, max_removal_pct: 100}\n")
    make_engine(tmp_path).run()
    FakeDestination.calls.clear()
    write_customers(tmp_path / "warehouse.duckdb", [])
    [report] = make_engine(tmp_path).run()
    assert report.status == "held" and "zero_row_guard" in report.reason and "holds 5" in report.reason
    assert FakeDestination.calls == [] and len(held_keys()) == 5
    [approved] = make_engine(tmp_path).run(approve=True)
    assert approved.status == "ok" and approved.removed == 5 and held_keys() == set()


@pytest.mark.parametrize("gates, needle", [
    ("{max_removal_pct: 10}", "above the limit of 10%"),
    ("{max_removal_pct: null, max_removals: 2}", "exceed the limit of 2"),
    ("{max_removal_pct: null, min_audience_size: 50}", "below the minimum of 50"),
])
def test_removal_and_size_gates_hold(tmp_path: Path, gates: str, needle: str) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 21)])
    write_project(tmp_path, destination=FAKE, sync_extra=f"gates: {gates}\n")
    make_engine(tmp_path).run(approve=True)
    FakeDestination.calls.clear()
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 16)])
    [report] = make_engine(tmp_path).run()
    assert report.status == "held" and needle in report.reason
    assert FakeDestination.calls == []


def test_throttling_is_retried_with_the_wait_the_platform_asked_for(project: Path) -> None:
    FakeDestination.fail_calls = {1: RateLimited("slow down", retry_after=7.0), 2: TransientError("503")}
    sleeps: list[float] = []
    [report] = make_engine(project, sleeps).run()
    assert report.status == "ok" and report.added == 25
    assert sleeps[0] >= 7.0 and len(sleeps) == 2
    assert held_keys() == {str(i) for i in range(1, 26)}


class FakeClock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def clocked_engine(root: Path, clock: FakeClock) -> Engine:
    return Engine(load_project(root), policy=FAST, sleep=[].append, clock=clock)


def test_a_wait_longer_than_the_run_allows_defers_rows_to_the_next_run(project: Path) -> None:
    clock = FakeClock()
    FakeDestination.fail_calls = {2: RateLimited("hourly limit", retry_after=3600)}
    [report] = clocked_engine(project, clock).run()
    assert report.status == "partial" and report.added == 10 and report.deferred == 15
    assert "deferred" in report.reason
    clock.now += 3600
    [retry] = clocked_engine(project, clock).run()
    # the throttled batch is settled first (an earlier attempt may have landed), the rows after it retried
    assert retry.status == "ok" and retry.added == 15 and (retry.settled, retry.retried) == (10, 5)
    assert held_keys() == {str(i) for i in range(1, 26)}


def test_a_platforms_wait_outlives_the_run_that_heard_it(project: Path) -> None:
    """Meta said "regain access in 5 minutes": a run 20 s later sends nothing, then one after the wait sends."""
    clock = FakeClock()
    FakeDestination.fail_calls = {1: RateLimited("regain access in 5 minutes", retry_after=300)}
    [first] = clocked_engine(project, clock).run()
    assert first.status == "partial" and first.deferred == 25
    FakeDestination.calls.clear()
    clock.now += 20
    engine = clocked_engine(project, clock)
    [early] = engine.run()
    assert FakeDestination.calls == []
    assert (early.status, early.added, early.deferred) == ("partial", 0, 25)
    assert "asked us to wait until" in early.reason and "'dest'" in early.reason
    clock.now += 281
    [later] = clocked_engine(project, clock).run()
    assert (later.status, later.added) == ("ok", 25)
    assert held_keys() == {str(i) for i in range(1, 26)}


def test_config_errors_stop_the_sync_with_the_operator_message(project: Path) -> None:
    FakeDestination.fail_calls = {1: ConfigError("Meta access token expired: export a new one in META_TOKEN")}
    [report] = make_engine(project).run()
    assert report.status == "failed" and "META_TOKEN" in report.reason
    assert held_keys() == set()


def test_row_rejections_from_the_platform_are_recorded_not_retried(project: Path) -> None:
    FakeDestination.reject_keys = {"4", "5"}
    [report] = make_engine(project).run()
    assert report.added == 23 and report.rejected == 2 and report.reasons == {"fake_rejected": 2}
    FakeDestination.calls.clear()
    [again] = make_engine(project).run()  # nothing changed: the refused rows wait, nothing is sent
    assert (again.added, again.rejected, again.requests) == (0, 0, 0) and FakeDestination.calls == []
    write_customers(project / "warehouse.duckdb", [person(i) for i in range(1, 26) if i != 4] + [person(4, email="fixed4@example.com")])
    FakeDestination.reject_keys = set()
    [fixed] = make_engine(project).run()  # 4's identifiers changed: it is tried again, 5 still waits
    assert (fixed.added, fixed.requests) == (1, 1) and "4" in held_keys() and "5" not in held_keys()


def test_saved_plan_applies_exactly_and_refuses_when_stale(project: Path, tmp_path: Path) -> None:
    engine = make_engine(project)
    plan = engine.build_plan()
    folder = save_plan(plan, tmp_path / "plans")
    loaded = load_plan(folder)
    assert loaded.content_hash == plan.content_hash
    [report] = make_engine(project).apply_plan(loaded)
    assert report.added == 25
    with pytest.raises(StalePlanError, match="changed since this plan was made"):
        make_engine(project).apply_plan(load_plan(folder))


def test_plan_is_deterministic(project: Path) -> None:
    assert make_engine(project).build_plan().content_hash == make_engine(project).build_plan().content_hash


def test_add_only_never_removes(tmp_path: Path) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, destination=FAKE, sync_extra="mode: add_only\n")
    make_engine(tmp_path).run()
    write_customers(tmp_path / "warehouse.duckdb", [person(1)])
    [report] = make_engine(tmp_path).run()
    assert report.removed == 0 and len(held_keys()) == 5


def test_suppressed_members_are_removed_and_not_re_added(project: Path) -> None:
    import time

    engine = make_engine(project)
    engine.run()
    with engine.ledger.begin() as conn:
        from syncer.ledger.store import suppressions

        conn.execute(suppressions.insert().values(member_key="7", segment="*", reason="purchase", created_at=time.time(), expires_at=None))
    [report] = make_engine(project).run()
    assert report.removed == 1 and "7" not in held_keys()


def test_consent_aware_destinations_get_the_consent_and_a_change_resends(project: Path, monkeypatch) -> None:
    import dataclasses

    from destinations.fake import config as fake_config

    monkeypatch.setattr(fake_config, "CAPABILITIES", dataclasses.replace(fake_config.CAPABILITIES, consent_marker=True))
    write_customers(project / "warehouse.duckdb", [person(1), person(2, ads_consent=None)])
    make_engine(project).run()
    assert FakeDestination.audiences["1001"]["1"]["_consent"] == "granted"
    assert FakeDestination.audiences["1001"]["2"]["_consent"] == "unknown"
    write_customers(project / "warehouse.duckdb", [person(1), person(2, ads_consent=True)])
    [report] = make_engine(project).run()
    assert (report.added, report.removed) == (1, 1)
    assert FakeDestination.audiences["1001"]["2"]["_consent"] == "granted"


def test_a_full_resync_resends_every_member_and_still_removes_leavers(project: Path) -> None:
    make_engine(project).run()
    write_customers(project / "warehouse.duckdb", [person(i) for i in range(1, 21)])
    FakeDestination.audiences["1001"].clear()  # the platform lost the audience (drift)
    engine = make_engine(project)
    [report] = engine.apply_plan(engine.build_plan(resend_all=True))
    assert (report.added, report.removed) == (20, 5)
    assert held_keys() == {str(i) for i in range(1, 21)}


def test_segments_extracted_once_can_be_planned_from_their_file(project: Path, tmp_path: Path) -> None:
    engine = make_engine(project)
    data = engine.extract_segment("buyers", tmp_path / "buyers.parquet")
    assert data.rows == 25
    write_customers(project / "warehouse.duckdb", [])  # the warehouse moved on; the file is what we planned from
    plan = engine.build_plan(segment_files={"buyers": tmp_path / "buyers.parquet"})
    assert len(plan.syncs[0].adds) == 25


def test_any_sqlalchemy_warehouse_is_streamed_in_chunks(tmp_path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(tmp_path / "warehouse.sqlite")
    con.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, phone TEXT, country TEXT, first_name TEXT,"
                " last_name TEXT, ads_consent BOOLEAN, in_segment BOOLEAN)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [person(i) for i in range(1, 2501)])
    con.commit()
    con.close()
    write_project(tmp_path, destination=FAKE)
    config = (tmp_path / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", "sqlite:///warehouse.sqlite")
    (tmp_path / "syncer.yml").write_text(config)  # chunk_rows is 1000: three chunks
    [report] = make_engine(tmp_path).run()
    assert report.added == 2500 and len(held_keys()) == 2500


def test_the_cli_never_imports_dagster() -> None:
    import subprocess
    import sys

    code = "import sys, syncer.cli.main, syncer.delivery.engine, syncer.delivery.fast_path; print('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_diff_database_is_capped_and_spills_to_the_state_folder(project: Path) -> None:
    (project / "syncer.yml").write_text((project / "syncer.yml").read_text() + "memory_limit: 256MB\n")
    engine = make_engine(project)
    con = engine._duckdb()
    limit, spill = con.sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
    assert limit.replace(" ", "") in ("256.0MB", "244.1MiB") and spill == str(project / ".syncer" / "tmp")
    [report] = engine.run()
    assert report.added == 25


@pytest.mark.parametrize(("diff_mode", "limit", "members"), [
    ("local", "1MB", 3_000),
    # the warehouse's own statement runs out (DuckDB's "Possible solutions: SET threads..." before, as "the
    # warehouse refused a query")
    ("warehouse", "5MB", 30_000),
])
def test_a_diff_out_of_memory_fails_its_sync_with_what_to_do_not_a_traceback(tmp_path: Path, diff_mode: str, limit: str,
                                                                             members: int) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, members)])
    write_project(tmp_path, destination=FAKE)
    (tmp_path / "syncer.yml").write_text((tmp_path / "syncer.yml").read_text() + f"memory_limit: {limit}\ndiff_mode: {diff_mode}\n")
    [report] = make_engine(tmp_path).run()
    assert report.status == "failed" and report.added == 0 and held_keys() == set()
    assert report.error.startswith(f"the diff ran out of memory under memory_limit: {limit} (Out of Memory Error")
    assert "raise memory_limit in syncer.yml" in report.error and "\n" not in report.error


def test_a_replace_whose_segment_cannot_be_read_fails_with_the_reason(project: Path) -> None:
    """The full replace (the backfill's mode: replace) of a sync whose segment query fails reports why, as a
    run does, instead of an IndexError from the plan that has no sync in it."""
    (project / "segments" / "buyers.yml").write_text("sql: SELECT * FROM no_such_table\nmember_key: customer_id\n"
                                                     "identifiers: {email: email}\n")
    report = make_engine(project).replace("buyers_sync")
    assert report.status == "failed" and report.added == 0 and held_keys() == set()
    assert "no_such_table" in report.error


def test_a_conversion_during_a_slow_apply_is_not_undone_by_it(project: Path) -> None:
    """Suppressions are re-read before each batch: member 20, suppressed while batch 1 of 3 was in flight,
    is not added by batch 2 or 3 (before, 4 of 8 such converters were re-added and stayed)."""
    engine = make_engine(project)

    def convert_mid_apply(sync: str, op: str, rows: int) -> None:
        if op == "add" and len(FakeDestination.calls) == 1:
            engine.ledger.suppress("20", ["buyers"], reason="purchase c20", expires_at=None)

    [report] = engine.run(on_batch=convert_mid_apply)
    assert "20" not in held_keys() and report.added == 24 and report.suppressed == 1
    [again] = make_engine(project).run()
    assert (again.added, again.requests) == (0, 0) and "20" not in held_keys()


def test_a_broken_segment_fails_only_its_own_syncs(project: Path) -> None:
    """Before: one segment's failing query aborted every sync of the run. Now the others are planned and sent,
    and the broken one is failed with the warehouse's words, in the report and in history."""
    (project / "segments" / "lapsed.yml").write_text(
        "sql: SELECT * FROM customers WHERE no_such_column\nmember_key: customer_id\nidentifiers: {email: email}\n")
    (project / "syncs" / "lapsed_sync.yml").write_text(
        "segment: lapsed\ndestination: dest\naudience_id: '1002'\nidentifiers: [email]\n")
    engine = Engine(load_project(project))
    reports = {r.sync: r for r in engine.run()}
    assert (reports["buyers_sync"].status, reports["buyers_sync"].added) == ("ok", 25)
    broken = reports["lapsed_sync"]
    assert broken.status == "failed" and "segment 'lapsed': the query failed" in broken.reason
    assert "no_such_column" in broken.reason and "1002" not in FakeDestination.audiences
    [row] = [r for r in engine.ledger.history(limit=5) if r["sync"] == "lapsed_sync"]
    assert row["status"] == "failed" and "segment 'lapsed'" in row["reason"]
