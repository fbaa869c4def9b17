"""The fast path: a conversion removes the person everywhere at once, and the batch path agrees."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from syncer.delivery.conversions import record_conversion
from syncer.delivery.engine import Engine
from syncer.delivery.fast_path import CURSOR, Suppressor
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers

TOKEN = "suppress-test-token"


def email_hash(i: int) -> str:
    return hashlib.sha256(f"m{i}@example.com".encode()).hexdigest()


def write(root: Path, port: int, ttl: str = "null") -> Path:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "syncer.yml").write_text(f"""\
warehouse_url: duckdb:///warehouse.duckdb
gates: {{max_removal_pct: 100}}
conversions:
  url: sqlite:///events.db
  table: conversions
  rules:
    - {{types: [purchase], segments: [abandoners, lapsed], ttl_hours: {ttl}}}
""")
    for name, where in (("abandoners", "in_segment"), ("lapsed", "in_segment"), ("everyone", "TRUE")):
        (root / "segments" / f"{name}.yml").write_text(
            f"sql: SELECT * FROM customers WHERE {where}\nmember_key: customer_id\nidentifiers: {{email: email}}\n")
    (root / "destinations" / "meta.yml").write_text(
        meta_on(f"http://127.0.0.1:{port}"))
    for audience, segment in (("1", "abandoners"), ("2", "lapsed"), ("3", "everyone")):
        (root / "syncs" / f"{segment}_meta.yml").write_text(
            f"segment: {segment}\ndestination: meta\naudience_id: '{audience}'\nidentifiers: [email]\n")
    return root


def rows(ids, in_segment=True):
    return [(i, f"m{i}@example.com", None, "US", None, None, True, in_segment) for i in ids]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        for audience in ("1", "2", "3"):
            sandbox.meta.create_audience(audience)
        port = int(sandbox.url.rsplit(":", 1)[1])
        write_customers(tmp_path / "warehouse.duckdb", rows(range(1, 11)))
        root = write(tmp_path, port)
        Engine(load_project(root)).run()
        yield root, sandbox


def held(sandbox: Sandbox, audience: str) -> set[str]:
    return {m["EMAIL"] for m in sandbox.meta.members(audience)}


def test_a_conversion_removes_the_person_from_every_audience_its_rule_names(setup) -> None:
    root, sandbox = setup
    project = load_project(root)
    record_conversion(project, "4")
    suppressor = Suppressor(project)
    [result] = suppressor.step()
    suppressor.close()
    assert result.outcomes == {"abandoners_meta": "removed", "lapsed_meta": "removed"}
    assert email_hash(4) not in held(sandbox, "1") and email_hash(4) not in held(sandbox, "2")
    assert email_hash(4) in held(sandbox, "3")  # "everyone" is not suppressed by purchases
    assert all(0 <= s < 5 for s in result.seconds.values())


def test_the_next_batch_run_does_not_re_add_and_the_ledgers_agree(setup) -> None:
    root, sandbox = setup
    project = load_project(root)
    record_conversion(project, "4")
    Suppressor(project).step()
    before = sandbox.meta.request_count
    reports = Engine(load_project(root)).run()
    assert all(r.added == 0 and r.removed == 0 for r in reports)
    assert sandbox.meta.request_count == before
    assert email_hash(4) not in held(sandbox, "1")


def test_redelivery_of_the_same_conversion_sends_no_second_remove(setup) -> None:
    root, sandbox = setup
    project = load_project(root)
    record_conversion(project, "4")
    suppressor = Suppressor(project)
    suppressor.step()
    sent = sandbox.meta.request_count
    suppressor.ledger.set_cursor(CURSOR, "0")  # the sensor's tick crashed before its cursor was saved
    [again] = suppressor.step()
    assert sandbox.meta.request_count == sent and again.outcomes == {}


def test_a_failing_destination_is_retried_until_the_remove_lands(setup) -> None:
    root, sandbox = setup
    project = load_project(root)
    sandbox.meta.inject_http(status=503, times=2)
    record_conversion(project, "5")
    suppressor = Suppressor(project)
    first = suppressor.step()
    assert "pending" in first[0].outcomes.values()
    deadline = time.monotonic() + 10
    while suppressor.ledger.pending_suppressions() and time.monotonic() < deadline:
        suppressor.step()
        time.sleep(0.1)
    assert suppressor.ledger.pending_suppressions() == []
    assert email_hash(5) not in held(sandbox, "1") and email_hash(5) not in held(sandbox, "2")


def test_a_suppression_that_expires_lets_the_batch_path_add_them_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        for audience in ("1", "2", "3"):
            sandbox.meta.create_audience(audience)
        write_customers(tmp_path / "warehouse.duckdb", rows(range(1, 6)))
        root = write(tmp_path, int(sandbox.url.rsplit(":", 1)[1]), ttl="0.0003")  # about one second
        Engine(load_project(root)).run()
        record_conversion(load_project(root), "2")
        Suppressor(load_project(root)).step()
        assert email_hash(2) not in held(sandbox, "1")
        time.sleep(1.3)
        reports = {r.sync: r for r in Engine(load_project(root)).run()}
        assert reports["abandoners_meta"].added == 1 and email_hash(2) in held(sandbox, "1")


def test_until_they_leave_the_segment_then_a_return_is_added(setup) -> None:
    root, sandbox = setup
    record_conversion(load_project(root), "3")
    Suppressor(load_project(root)).step()
    write_customers(root / "warehouse.duckdb", rows([1, 2, 4, 5, 6, 7, 8, 9, 10]) + rows([3], in_segment=False))
    Engine(load_project(root)).run()  # 3 left the segments: the suppression ends with it
    write_customers(root / "warehouse.duckdb", rows(range(1, 11)))
    reports = {r.sync: r for r in Engine(load_project(root)).run()}
    assert reports["abandoners_meta"].added == 1 and email_hash(3) in held(sandbox, "1")


def test_status_shows_time_to_suppression_percentiles(setup) -> None:
    import json
    import subprocess
    import sys

    root, _ = setup
    for key in ("1", "2", "3"):
        record_conversion(load_project(root), key)
    Suppressor(load_project(root)).step()
    out = subprocess.run([sys.executable, "-m", "syncer.cli.main", "-p", str(root), "--json", "status"], capture_output=True,
                         text=True, check=True).stdout
    latency = json.loads(out)["time_to_suppression_24h"]
    assert latency["count"] == 6 and 0 <= latency["p50"] <= latency["p95"] <= latency["max"] < 10


def test_history_shows_the_fast_path_with_its_time_to_suppression(setup) -> None:
    root, _ = setup
    record_conversion(load_project(root), "7")
    suppressor = Suppressor(load_project(root))
    suppressor.step()
    suppressor.close()
    [latest] = [r for r in suppressor.ledger.history(limit=5) if r["sync"] == "abandoners_meta"][:1]
    assert latest["removed"] == 1 and "time to suppression p50" in latest["reason"]


def test_a_timestamp_cursor_with_a_tiebreak_id_loses_no_conversion_sharing_a_timestamp(setup) -> None:
    root, sandbox = setup
    config = (root / "syncer.yml").read_text().replace("  table: conversions\n",
                                                      "  table: conversions\n  cursor_column: converted_at\n  tiebreak_column: conversion_id\n")
    (root / "syncer.yml").write_text(config)
    project = load_project(root)
    same = time.time()
    for key in ("6", "7"):
        record_conversion(project, key, at=same)  # two conversions in the same instant
    suppressor = Suppressor(project)
    assert [r.conversion.member_key for r in suppressor.step()] == ["6", "7"]
    record_conversion(project, "8", at=same)  # late-arriving row with the same timestamp, a higher id
    assert [r.conversion.member_key for r in suppressor.step()] == ["8"]
    assert not {email_hash(6), email_hash(7), email_hash(8)} & held(sandbox, "1")


def test_a_platforms_wait_holds_the_fast_path_too(setup) -> None:
    """Meta said "come back in 5 minutes" to one remove: the next conversions wait in the ledger without a
    call until then (calling at once only earns a longer wait), and go through once the wait is over."""
    from syncer.delivery.fast_path import Conversion
    from tests.syncer.test_engine import FakeClock

    root, sandbox = setup
    project = load_project(root)
    clock = FakeClock()
    suppressor = Suppressor(project, engine=Engine(project, clock=clock))
    sandbox.meta.throttle_next(300)
    first = suppressor.handle(Conversion("c4", "4", "purchase", clock.now))
    assert set(first.outcomes.values()) == {"pending"}
    clock.now += 20
    calls = sandbox.meta.request_count
    second = suppressor.handle(Conversion("c5", "5", "purchase", clock.now))
    assert set(second.outcomes.values()) == {"pending"} and sandbox.meta.request_count == calls
    clock.now += 300
    third = suppressor.handle(Conversion("c6", "6", "purchase", clock.now))
    suppressor.close()
    assert set(third.outcomes.values()) == {"removed"} and email_hash(6) not in held(sandbox, "1")


def test_a_suppression_beside_a_batch_run_does_not_make_its_plan_stale(setup) -> None:
    """A steady stream of conversions must not starve batch runs: the fast path's removes leave the plan
    valid (apply drops suppressed members itself), while a batch commit still makes it stale."""
    root, sandbox = setup
    engine = Engine(load_project(root))
    plan = engine.build_plan()
    record_conversion(load_project(root), "4")
    with Suppressor(load_project(root)) as suppressor:
        assert set(suppressor.step()[0].outcomes.values()) == {"removed"}
    reports = engine.apply_plan(plan)  # before: "changed since this plan was made"
    assert {r.status for r in reports} == {"ok"}
    assert email_hash(4) not in held(sandbox, "1")
