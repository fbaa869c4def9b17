"""Traits with membership: segment columns a sync maps to profile properties reach the email tools with the
membership, only when they change, and a NULL never overwrites a value unless the sync says so.

Runs the engine on a small DuckDB warehouse against the strict emulators (Klaviyo end to end; the other
three ESPs' shapes are in their connector tests), and ``validate`` on the config rules."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from syncer.delivery.engine import Engine
from syncer.project.loader import ProjectLoader
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import write_project

KLAVIYO_LIST = "Y6nRLr"
KLAVIYO = "type: klaviyo_list\napi_key_env: SANDBOX_KLAVIYO_KEY\nendpoint: {url}\nimport_poll_interval_s: 0.01\n"
TRAITS = "traits: {{Lifetime Value: ltv, tier: tier}}\n{extra}"


@pytest.fixture
def sandbox(monkeypatch):
    sb = Sandbox(port=0).start()
    sb.klaviyo.create_list(KLAVIYO_LIST, "buyers")
    monkeypatch.setenv("SANDBOX_KLAVIYO_KEY", sb.klaviyo.key)
    yield sb
    sb.stop()


def write_warehouse(root: Path, rows: list[tuple]) -> None:
    """rows: (customer_id, ltv, tier); every one is in the segment with consent."""
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("DROP TABLE IF EXISTS customers")
    con.execute("""CREATE TABLE customers (customer_id BIGINT, email VARCHAR, phone VARCHAR, country VARCHAR,
                   first_name VARCHAR, last_name VARCHAR, ads_consent BOOLEAN, in_segment BOOLEAN,
                   ltv DECIMAL(10, 2), tier VARCHAR)""")
    con.executemany("INSERT INTO customers VALUES (?, ?, NULL, 'US', 'Ann', 'Lee', TRUE, TRUE, ?, ?)",
                    [(i, f"person{i}@example.com", ltv, tier) for i, ltv, tier in rows])
    con.close()


def klaviyo_project(root: Path, sandbox: Sandbox, rows: list[tuple], extra: str = "") -> Path:
    write_project(root, destination=KLAVIYO.format(url=sandbox.url_for("klaviyo")),
                  sync_extra="send_unknown_consent: true\n" + TRAITS.format(extra=extra))
    sync = root / "syncs" / "buyers_sync.yml"
    sync.write_text(sync.read_text().replace('audience_id: "1001"', f'audience_id: "{KLAVIYO_LIST}"'))
    write_warehouse(root, rows)
    return root


def run(root: Path) -> list:
    with Engine(load_project(root)) as engine:
        reports = engine.run()
    assert [r.status for r in reports] == ["ok"], [r.error for r in reports]
    return reports


def properties(sandbox: Sandbox, email: str) -> dict:
    [profile] = [p for p in sandbox.klaviyo.profiles.values() if p.get("email") == email]
    return profile["properties"]


def imports(sandbox: Sandbox) -> int:
    return len([r for r in sandbox.klaviyo.requests if r[0] == "POST" and "profile-bulk-import-jobs" in r[1]])


def test_a_trait_changed_in_the_warehouse_reaches_klaviyo_once(tmp_path, sandbox):
    root = klaviyo_project(tmp_path, sandbox, [(1, 10.5, "gold"), (2, 3, "silver")])
    run(root)
    assert properties(sandbox, "person1@example.com") == {"Lifetime Value": 10.5, "tier": "gold"}
    assert properties(sandbox, "person2@example.com") == {"Lifetime Value": 3, "tier": "silver"}
    assert sandbox.klaviyo.list_members(KLAVIYO_LIST) == {"person1@example.com", "person2@example.com"}

    write_warehouse(root, [(1, 10.5, "platinum"), (2, 3, "silver")])
    before = sandbox.klaviyo.request_count
    [report] = run(root)
    assert report.added == 1 and report.removed == 0  # re-added with the new trait; never taken off first
    assert properties(sandbox, "person1@example.com") == {"Lifetime Value": 10.5, "tier": "platinum"}
    assert sandbox.klaviyo.request_count > before

    calls = sandbox.klaviyo.request_count
    [report] = run(root)  # nothing changed: nothing is sent
    assert (report.added, report.removed, sandbox.klaviyo.request_count) == (0, 0, calls)


def test_a_null_keeps_the_platforms_value_by_default(tmp_path, sandbox):
    root = klaviyo_project(tmp_path, sandbox, [(1, 10.5, "gold")])
    run(root)
    write_warehouse(root, [(1, 10.5, None)])
    run(root)
    assert properties(sandbox, "person1@example.com") == {"Lifetime Value": 10.5, "tier": "gold"}


def test_a_null_clears_the_value_when_the_sync_says_so(tmp_path, sandbox):
    root = klaviyo_project(tmp_path, sandbox, [(1, 10.5, "gold")], extra="null_traits: clear\n")
    run(root)
    write_warehouse(root, [(1, 10.5, None)])
    run(root)
    assert properties(sandbox, "person1@example.com") == {"Lifetime Value": 10.5}
    assert sandbox.klaviyo.list_members(KLAVIYO_LIST) == {"person1@example.com"}


def test_a_sync_without_traits_keeps_its_fingerprints(tmp_path, sandbox):
    """Adding a column to the segment's query changes nothing for a sync that does not map it."""
    root = klaviyo_project(tmp_path, sandbox, [(1, 10.5, "gold")])
    sync = root / "syncs" / "buyers_sync.yml"
    sync.write_text(sync.read_text().replace("traits: {Lifetime Value: ltv, tier: tier}\n", ""))
    run(root)
    assert properties(sandbox, "person1@example.com") == {}
    write_warehouse(root, [(1, 99, "platinum")])
    calls = sandbox.klaviyo.request_count
    [report] = run(root)
    assert (report.added, sandbox.klaviyo.request_count) == (0, calls)


def problems_of(root: Path) -> list[str]:
    loader = ProjectLoader(root)
    loader.load()
    return [f"{p.file}:{p.line}: {p.message}" for p in loader.problems]


def test_validate_refuses_traits_on_a_destination_without_profiles(tmp_path):
    write_project(tmp_path, destination="type: meta_audience\naccess_token_env: META_TOKEN\nad_account_id: act_1\n",
                  sync_extra="traits: {tier: tier}\n")
    [problem] = problems_of(tmp_path)
    assert problem.startswith("syncs/buyers_sync.yml:5: ")
    assert "meta_audience" in problem and "traits" in problem


def test_validate_refuses_traits_in_warehouse_diff_mode(tmp_path, sandbox):
    root = klaviyo_project(tmp_path, sandbox, [(1, 1, "gold")])
    config = root / "syncer.yml"
    config.write_text(config.read_text() + "diff_mode: warehouse\n")
    [problem] = problems_of(root)
    assert problem.startswith("syncs/buyers_sync.yml:") and "diff_mode: warehouse" in problem


def test_validate_finds_a_trait_column_the_query_does_not_return(tmp_path, sandbox):
    from syncer.project.probe import probe_segments

    root = klaviyo_project(tmp_path, sandbox, [(1, 1, "gold")])
    sync = root / "syncs" / "buyers_sync.yml"
    sync.write_text(sync.read_text().replace("tier: tier", "tier: tierr"))
    [problem] = probe_segments(load_project(root)).problems
    assert problem.file == "syncs/buyers_sync.yml" and problem.line == 6
    assert "'tierr'" in problem.message and "did you mean 'tier'" in problem.message


def test_traits_written_in_the_sync_file():
    from syncer.project.config import SyncConfig

    base = {"segment": "s", "destination": "d", "audience_id": "1", "identifiers": ["email"]}
    assert SyncConfig(**base).traits == {} and SyncConfig(**base).null_traits == "keep"
    with pytest.raises(ValueError, match="not starting with '_'"):
        SyncConfig(**base, traits={"_update_existing_only": "x"})


def test_a_streamed_segment_carries_the_mapped_trait_columns_only(tmp_path: Path) -> None:
    """A warehouse other than a DuckDB file is copied in; only columns a sync sends as traits come along (each
    other column would cost a JSON text per row for nothing)."""
    import sqlite3

    from syncer.planning.segment import load_segment
    from syncer.project.config import SegmentConfig

    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, city TEXT, tier TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'a@example.com', 'Lyon', 'gold')")
    segment = SegmentConfig(sql="SELECT * FROM customers", member_key="customer_id", identifiers={"email": "email"})
    con = duckdb.connect()
    data = load_segment(con, "buyers", segment, "SELECT * FROM customers", warehouse_url=f"sqlite:///{db}",
                        chunk_rows=1_000, traits=frozenset({"Tier"}))
    columns = [d[0] for d in con.sql(f"SELECT * FROM {data.table}").description]
    assert columns == ["member_key", "k_email", "t_tier"]
    assert con.sql(f"SELECT t_tier FROM {data.table}").fetchall() == [('"gold"',)]
