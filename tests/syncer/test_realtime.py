"""Real-time segments: an event re-evaluates the members it touches within a step of `syncer follow`, an
``expires_at`` that passes removes the member, and the next batch run agrees (changes nothing).

Everything runs against the strict Meta emulator and a DuckDB warehouse whose segment is computed from
the whole profile (customers joined with their cart events), with a fake clock: no sleeps."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import duckdb
import pytest

from syncer.delivery.engine import Engine
from syncer.delivery.realtime import Follower
from syncer.ledger.realtime import StreamBook
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import meta_on
from tests.syncer.test_engine import FakeClock
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (a fixture: a throwaway PostgreSQL server)

TOKEN = "realtime-test-token"
T0 = dt.datetime(2030, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc).timestamp()
SYNC = "cart_meta"


def email_hash(i: int) -> str:
    return hashlib.sha256(f"m{i}@example.com".encode()).hexdigest()


def write_project(root: Path, port: int, *, stream_gates: str = "") -> Path:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "syncer.yml").write_text(
        "warehouse_url: duckdb:///warehouse.duckdb\ngates: {max_removal_pct: 100}\n"
        "events:\n  table: cart_events\n  cursor_column: event_id\n  member_key_column: customer_id\n"
        "  type_column: type\n  time_column: occurred_at\n")
    (root / "segments" / "cart.yml").write_text("""\
sql: |
  SELECT c.customer_id, c.email, max(e.occurred_at) + INTERVAL 24 HOUR AS cart_expires_at
  FROM customers c JOIN cart_events e ON e.customer_id = c.customer_id AND e.type = 'cart_add'
  WHERE c.vip
  GROUP BY c.customer_id, c.email
member_key: customer_id
identifiers: {email: email}
events: [cart_add, profile_update]
expires_at: cart_expires_at
""")
    (root / "destinations" / "meta.yml").write_text(
        meta_on(f"http://127.0.0.1:{port}"))
    (root / "syncs" / f"{SYNC}.yml").write_text(f"segment: cart\ndestination: meta\naudience_id: '1'\nidentifiers: [email]\n{stream_gates}")
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT i AS customer_id, 'm' || i || '@example.com' AS email, TRUE AS vip FROM range(1, 21) t(i)")
    con.execute("CREATE TABLE cart_events (event_id INTEGER, customer_id INTEGER, type VARCHAR, occurred_at TIMESTAMP)")
    con.close()
    return root


def add_event(root: Path, customer: int, at: float, kind: str = "cart_add") -> None:
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    next_id = con.sql("SELECT coalesce(max(event_id), 0) + 1 FROM cart_events").fetchall()[0][0]
    con.execute("INSERT INTO cart_events VALUES (?, ?, ?, ?)",
                [next_id, customer, kind, dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(tzinfo=None)])
    con.close()


def set_vip(root: Path, customer: int, vip: bool) -> None:
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("UPDATE customers SET vip = ? WHERE customer_id = ?", [vip, customer])
    con.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        sandbox.meta.create_audience("1")
        root = write_project(tmp_path, int(sandbox.url.rsplit(":", 1)[1]))
        yield root, sandbox


def audience(sandbox: Sandbox) -> set[str]:
    return {m["EMAIL"] for m in sandbox.meta.members("1")}


def follower(root: Path, clock: FakeClock) -> Follower:
    """A worker started: its first step places the cursors at the end of the events and at now (what came
    before is the batch run's)."""
    worker = Follower(load_project(root), engine=Engine(load_project(root), clock=clock, sleep=[].append))
    worker.step()
    return worker


def test_a_member_enters_through_an_event_leaves_through_expires_at_and_the_next_batch_run_changes_nothing(project) -> None:
    root, sandbox = project
    clock = FakeClock(T0)
    assert Engine(load_project(root), clock=clock).run()[0].added == 0  # nobody has a cart yet
    with follower(root, clock) as worker:
        add_event(root, 7, T0 - 30)
        _, changes = worker.step()
        assert [(c.sync, c.added, c.removed) for c in changes] == [(SYNC, ["7"], [])]
        assert audience(sandbox) == {email_hash(7)}
        assert changes[0].seconds == {"7": 30.0}  # from the event's own time to the platform's answer

        clock.now = T0 + 24 * 3600  # 7's cart expires at T0 - 30 s + 24 h: passed
        _, changes = worker.step()
        assert [(c.added, c.removed) for c in changes] == [([], ["7"])]
        assert audience(sandbox) == set()
    requests = sandbox.meta.request_count
    [report] = Engine(load_project(root), clock=clock).run()
    assert (report.status, report.added, report.removed) == ("ok", 0, 0)  # the safety net agrees
    assert sandbox.meta.request_count == requests


def test_an_event_re_evaluates_the_whole_profile_and_removes_a_member_who_no_longer_qualifies(project) -> None:
    root, sandbox = project
    clock = FakeClock(T0)
    add_event(root, 3, T0 - 60)
    add_event(root, 4, T0 - 60)
    Engine(load_project(root), clock=clock).run()
    assert audience(sandbox) == {email_hash(3), email_hash(4)}
    with follower(root, clock) as worker:
        assert audience(sandbox) == {email_hash(3), email_hash(4)}
        set_vip(root, 3, False)  # the profile changed in the warehouse; an event says "look at 3 again"
        add_event(root, 3, T0, kind="profile_update")
        _, changes = worker.step()
    assert [(c.added, c.removed) for c in changes] == [([], ["3"])]
    assert audience(sandbox) == {email_hash(4)}  # 4 untouched: nobody else is a leaver of a restricted plan


def test_events_a_segment_does_not_listen_to_change_nothing_and_are_read_once(project) -> None:
    root, sandbox = project
    clock = FakeClock(T0)
    with follower(root, clock) as worker:
        add_event(root, 5, T0, kind="page_view")
        assert worker.step()[1] == []
        assert StreamBook(worker.ledger).pending() == []
        assert worker.ledger.get_cursor("events") is not None
    assert audience(sandbox) == set()


def test_a_sync_a_batch_run_holds_keeps_the_member_pending_until_it_is_free(project) -> None:
    root, sandbox = project
    clock = FakeClock(T0)
    with follower(root, clock) as worker:
        other = Engine(load_project(root), clock=clock)
        with other.leases.hold([SYNC], "a batch run"):
            add_event(root, 9, T0)
            _, changes = worker.step()
            assert [c.status for c in changes] == ["pending"]
            assert [t.member_key for t in StreamBook(worker.ledger).pending()] == ["9"]
        other.close()
        _, changes = worker.step()
        assert [c.added for c in changes] == [["9"]]
        assert StreamBook(worker.ledger).pending() == []
    assert audience(sandbox) == {email_hash(9)}


def test_a_stream_gate_holds_a_flood_and_says_why(project, tmp_path) -> None:
    root, sandbox = project
    (root / "syncs" / f"{SYNC}.yml").write_text(
        "segment: cart\ndestination: meta\naudience_id: '1'\nidentifiers: [email]\n"
        "stream_gates: {max_adds: 3, window_minutes: 10}\n")
    clock = FakeClock(T0)
    with follower(root, clock) as worker:
        for customer in (1, 2):
            add_event(root, customer, T0)
        assert [c.added for c in worker.step()[1]] == [["1", "2"]]
        for customer in (3, 4):
            add_event(root, customer, T0)
        [change] = worker.step()[1]
        assert change.status == "held" and "4 adds in 10 min would pass max_adds 3" in change.reason
        add_event(root, 5, T0)
        assert worker.step()[1] == []  # held: nothing more is sent in real time for this sync
        assert set(StreamBook(worker.ledger).holds()) == {SYNC}
    assert audience(sandbox) == {email_hash(1), email_hash(2)}
    assert Ledger(load_project(root).ledger_url()).held_count(SYNC) == 2


def test_the_cli_follows_once_and_status_shows_latency_and_a_held_stream(project) -> None:
    from click.testing import CliRunner

    from syncer.cli.main import cli

    root, sandbox = project
    started = CliRunner().invoke(cli, ["-p", str(root), "follow", "--once"])  # the first start: cursors at the end
    assert started.exit_code == 0 and started.output == ""
    add_event(root, 7, time.time() - 0.5)
    result = CliRunner().invoke(cli, ["-p", str(root), "follow", "--once"])
    assert result.exit_code == 0, result.output
    assert "cart_meta: added member 7 in " in result.output
    assert audience(sandbox) == {email_hash(7)}
    history = CliRunner().invoke(cli, ["-p", str(root), "--json", "history"])
    [session] = [row for row in json.loads(history.output)["runs"] if row["command"] == "follow"]
    assert session["reason"].startswith("real time: p50 ") and session["added"] == 1
    StreamBook(Ledger(load_project(root).ledger_url())).hold(SYNC, "stream gate: 200 adds in 60 min would pass max_adds 100", time.time())
    status = CliRunner().invoke(cli, ["-p", str(root), "status"])
    assert "real time cart_meta: 1 changes in 24 h; event to acknowledgement p50" in status.output
    assert "real time cart_meta: HELD since" in status.output and "would pass max_adds 100" in status.output
    released = CliRunner().invoke(cli, ["-p", str(root), "follow", "--release", SYNC])
    assert "cart_meta: stream released" in released.output
    assert StreamBook(Ledger(load_project(root).ledger_url())).holds() == {}


def test_the_dagster_sensor_adds_within_its_tick_and_reports_a_runless_event(project, monkeypatch) -> None:
    import dagster as dg

    from dagster_project.definitions import build_definitions

    root, sandbox = project
    monkeypatch.setenv("SYNCER_SENSOR_WINDOW_S", "0.3")
    defs = build_definitions(root)
    sensor = defs.resolve_sensor_def("realtime_follow")
    with dg.instance_for_test() as instance:
        sensor(dg.build_sensor_context(instance=instance, cursor=None))  # the first tick places the cursors
        add_event(root, 8, time.time())
        result = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert audience(sandbox) == {email_hash(8)}
    [event] = result.asset_events
    assert event.asset_key == dg.AssetKey(["realtime_changes"])
    assert (event.metadata["sync"].value, event.metadata["added"].value) == (SYNC, 1)


@pytest.mark.parametrize("sql, problem", [
    ("SELECT * FROM customers ORDER BY customer_id LIMIT 10", "limits the number of rows"),
    ("SELECT *, rank() OVER (ORDER BY customer_id) AS r FROM customers", "window function without PARTITION BY"),
])
def test_validate_refuses_events_on_a_segment_whose_members_depend_on_each_other(project, sql, problem) -> None:
    from syncer.project.project import InvalidProjectError

    root, _ = project
    (root / "segments" / "cart.yml").write_text(f"sql: {sql}\nmember_key: customer_id\nidentifiers: {{email: email}}\nevents: [cart_add]\n")
    with pytest.raises(InvalidProjectError) as caught:
        load_project(root)
    [found] = caught.value.problems
    assert (found.file, found.line, found.field) == ("segments/cart.yml", 4, "events") and problem in found.message


def test_validate_asks_for_an_events_source_when_a_segment_listens_to_events(project) -> None:
    from syncer.project.project import InvalidProjectError

    root, _ = project
    (root / "syncer.yml").write_text("warehouse_url: duckdb:///warehouse.duckdb\n")
    with pytest.raises(InvalidProjectError) as caught:
        load_project(root)
    assert any(p.field == "events" and "no `events:` source" in p.message for p in caught.value.problems)


def test_an_event_posted_to_syncer_serve_changes_the_audience_like_a_row_of_the_events_table(project) -> None:
    from syncer.ledger.inbound import PostedEvent, record_events

    root, sandbox = project
    clock = FakeClock(T0)
    add_event(root, 12, T0 - 5)  # the profile: a cart in the warehouse, before the worker started
    with follower(root, clock) as worker:
        assert audience(sandbox) == set()
        record_events(worker.ledger, [PostedEvent("12", "cart_add", T0 - 1, "post-1")], now=T0)
        [change] = worker.step()[1]
        assert change.added == ["12"] and change.seconds == {"12": 1.0}
        assert worker.step()[1] == []  # read once
    assert audience(sandbox) == {email_hash(12)}


def test_a_postgres_warehouse_enters_and_expires_members_in_real_time(tmp_path: Path, monkeypatch, postgres_url: str) -> None:  # noqa: F811
    """The same flow on PostgreSQL: the key filter compares an integer column with text literals, and the
    expiry a timestamptz column with a UTC literal made from the engine's clock."""
    import sqlalchemy as sa

    schema = f"rt_{tmp_path.name[-12:].lower().replace('-', '_')}"
    db = sa.create_engine(postgres_url)
    with db.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(sa.text(f"CREATE TABLE {schema}.customers AS SELECT i AS customer_id, 'm' || i || '@example.com' AS email"
                             " FROM generate_series(1, 20) i"))
        conn.execute(sa.text(f"CREATE TABLE {schema}.cart_events (event_id INTEGER, customer_id INTEGER, type TEXT, occurred_at TIMESTAMPTZ)"))
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        sandbox.meta.create_audience("1")
        root = write_project(tmp_path, int(sandbox.url.rsplit(":", 1)[1]))
        (root / "syncer.yml").write_text(
            f"warehouse_url: {postgres_url}\ngates: {{max_removal_pct: 100}}\n"
            f"events: {{table: {schema}.cart_events, member_key_column: customer_id}}\n")
        (root / "segments" / "cart.yml").write_text(f"""\
sql: |
  SELECT c.customer_id, c.email, max(e.occurred_at) + INTERVAL '24 hours' AS cart_expires_at
  FROM {schema}.customers c JOIN {schema}.cart_events e ON e.customer_id = c.customer_id AND e.type = 'cart_add'
  GROUP BY c.customer_id, c.email
member_key: customer_id
identifiers: {{email: email}}
events: [cart_add]
expires_at: cart_expires_at
""")
        clock = FakeClock(T0)
        with follower(root, clock) as worker:
            with db.begin() as conn:
                conn.execute(sa.text(f"INSERT INTO {schema}.cart_events VALUES (1, 7, 'cart_add', to_timestamp(:at))"), {"at": T0 - 30})
            assert [c.added for c in worker.step()[1]] == [["7"]]
            clock.now = T0 + 24 * 3600
            assert [c.removed for c in worker.step()[1]] == [["7"]]
        assert audience(sandbox) == set()
        [report] = Engine(load_project(root), clock=clock).run()
        assert (report.added, report.removed) == (0, 0)
    db.dispose()


def test_a_worker_started_on_an_empty_events_table_reads_its_first_event(project) -> None:
    """With a timestamp cursor too: the start of an empty table is no row at all, not a made-up value."""
    root, sandbox = project
    (root / "syncer.yml").write_text(
        "warehouse_url: duckdb:///warehouse.duckdb\ngates: {max_removal_pct: 100}\n"
        "events: {table: cart_events, cursor_column: occurred_at, tiebreak_column: event_id, member_key_column: customer_id}\n")
    clock = FakeClock(T0)
    with follower(root, clock) as worker:  # cart_events is empty: the cursor starts before any row
        add_event(root, 2, T0)
        assert [c.added for c in worker.step()[1]] == [["2"]]
    assert audience(sandbox) == {email_hash(2)}


def test_follow_names_an_events_table_it_cannot_read_in_one_line(project) -> None:
    from click.testing import CliRunner

    from syncer.cli.main import cli

    root, _ = project
    (root / "syncer.yml").write_text("warehouse_url: duckdb:///warehouse.duckdb\nevents: {table: no_such_events}\n")
    result = CliRunner().invoke(cli, ["-p", str(root), "follow", "--once"])
    assert result.exit_code == 1
    assert "cannot read the real-time sources (no_such_events)" in result.output and "Traceback" not in result.output
