"""Two members who share an identifier are one person to Meta: a leaver never takes a stayer with it.

Run against the strict Meta emulator through the official SDK, whose audience holds people (rows that
share an email, phone, madid or external id are merged into one person, and a remove takes every
person any identifier of the row matches), as Meta documents for Custom Audiences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from destinations.meta import SPEC
from syncer.delivery.engine import Engine
from syncer.delivery.fast_path import Conversion, Suppressor
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import person, write_customers, write_project

AUDIENCE = "120210000000777"
SHARED_PHONE = "+1 415 734 2291"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(port=0) as sb:
        yield sb


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox, monkeypatch) -> Path:
    sandbox.reset()
    for name, value in SPEC.sandbox_secrets.items():
        monkeypatch.setenv(name, value)
    sandbox.meta.create_audience(AUDIENCE, name="shared")
    destination = yaml.safe_dump(SPEC.sandbox_destination(sandbox.url))
    root = write_project(tmp_path, destination=destination, identifiers="[email, phone]")
    sync = root / "syncs" / "buyers_sync.yml"
    sync.write_text(sync.read_text().replace('"1001"', f'"{AUDIENCE}"'))
    return root


def on_meta(sandbox: Sandbox, i: int, email: str | None = None) -> bool:
    """Whether Meta's audience holds a person matched by member ``i``'s email (or ``email``)."""
    wanted = sha(email or f"person{i}@example.com")
    return any(m.get("EMAIL") == wanted for m in sandbox.meta.members(AUDIENCE))


def run(root: Path):
    [report] = Engine(load_project(root)).run()
    return report


def test_a_leaver_sharing_a_phone_with_a_stayer_is_kept_and_says_why(project: Path, sandbox: Sandbox) -> None:
    members = [person(1, phone=SHARED_PHONE), person(2, phone=SHARED_PHONE)] + [person(i) for i in range(3, 6)]
    write_customers(project / "warehouse.duckdb", members)
    assert run(project).added == 5
    assert len(sandbox.meta.members(AUDIENCE)) == 4  # 1 and 2 are one person to Meta

    write_customers(project / "warehouse.duckdb", members[1:])  # 1 leaves, 2 stays
    report = run(project)
    assert report.removed == 0 and report.status == "ok"
    assert report.retained == {"retained: shares phone with a member who stays": 1}
    assert on_meta(sandbox, 2), "the stayer was removed with the leaver"
    assert "1" in set(Ledger(load_project(project).ledger_url()).held_fingerprints("buyers_sync")[0])

    write_customers(project / "warehouse.duckdb", members[2:])  # now 2 leaves too: both go
    report = run(project)
    assert report.removed == 2 and not report.retained
    assert not on_meta(sandbox, 1) and not on_meta(sandbox, 2) and on_meta(sandbox, 3)


def test_a_leaver_linked_to_a_joiner_is_kept(project: Path, sandbox: Sandbox) -> None:
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(3)])
    run(project)
    write_customers(project / "warehouse.duckdb", [person(2, phone=SHARED_PHONE), person(3)])  # 1 leaves as 2 joins
    report = run(project)
    assert (report.added, report.removed) == (1, 0)
    assert on_meta(sandbox, 2)


def test_a_changed_email_with_the_same_phone_is_still_replaced(project: Path, sandbox: Sandbox) -> None:
    write_customers(project / "warehouse.duckdb", [person(1), person(2)])
    run(project)
    write_customers(project / "warehouse.duckdb", [person(1, email="new1@example.com"), person(2)])
    report = run(project)
    assert (report.added, report.removed) == (1, 1) and not report.retained
    assert on_meta(sandbox, 1, "new1@example.com") and not on_meta(sandbox, 1)


def test_the_fast_path_keeps_a_converter_who_shares_a_phone_with_a_stayer(project: Path, sandbox: Sandbox) -> None:
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(2, phone=SHARED_PHONE), person(3)])
    (project / "syncer.yml").write_text((project / "syncer.yml").read_text() + (
        "conversions:\n  table: conversions\n  rules: [{types: [purchase], segments: ['*']}]\n"))
    run(project)
    with Suppressor(load_project(project)) as suppressor:
        kept = suppressor.handle(Conversion("c1", "1", "purchase", 1.0))
        gone = suppressor.handle(Conversion("c3", "3", "purchase", 1.0))
    assert kept.outcomes == {"buyers_sync": "retained"} and gone.outcomes == {"buyers_sync": "removed"}
    assert on_meta(sandbox, 2) and not on_meta(sandbox, 3)


def test_a_linked_member_whose_phone_changes_is_kept_as_it_was(project: Path, sandbox: Sandbox) -> None:
    """Meta merged 1 and 2 into one person under the shared phone; sending 2's new phone would not split
    them, and forgetting the old one would let a later remove of 1 take 2 too."""
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(2, phone=SHARED_PHONE), person(3)])
    run(project)
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(2, phone="+1 415 734 9981"), person(3)])
    report = run(project)
    assert (report.added, report.removed) == (0, 0) and report.retained == {"retained: shares phone with a member who stays": 1}
    ledger = Ledger(load_project(project).ledger_url())
    assert ledger.linked_members("buyers_sync") == {"1", "2"}
    write_customers(project / "warehouse.duckdb", [person(2, phone="+1 415 734 9981"), person(3)])  # 1 leaves
    report = run(project)  # the merged person goes with 1, then 2 is added again under its new phone
    assert (report.removed, report.added, report.retained) == (2, 1, {})
    assert on_meta(sandbox, 2) and not on_meta(sandbox, 1)


def test_a_link_ends_when_both_leave(project: Path, sandbox: Sandbox) -> None:
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(2, phone=SHARED_PHONE), person(3)])
    (project / "syncer.yml").write_text((project / "syncer.yml").read_text() + (
        "conversions:\n  table: conversions\n  rules: [{types: [purchase], segments: ['*']}]\n"))
    run(project)
    write_customers(project / "warehouse.duckdb", [person(3)])
    assert run(project).removed == 2
    ledger = Ledger(load_project(project).ledger_url())
    assert ledger.linked_members("buyers_sync") == set()
    write_customers(project / "warehouse.duckdb", [person(1, phone=SHARED_PHONE), person(3)])  # 1 comes back alone
    run(project)
    with Suppressor(load_project(project)) as suppressor:
        assert suppressor.handle(Conversion("c1", "1", "purchase", 1.0)).outcomes == {"buyers_sync": "removed"}
    assert not on_meta(sandbox, 1) and on_meta(sandbox, 3)
