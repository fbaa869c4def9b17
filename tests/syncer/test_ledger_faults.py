"""Faults of the files we keep (ledger, snapshot, saved plan) end in one error naming the file and what to do.

The read-only cases need a process without root's file access, so they run the real CLI in
``tests/test_cli.py``; these tests cover what a process can show on its own: a damaged ledger, a full disk
under the ledger (SQLite's own ``max_page_count``), under a snapshot and under a plan, and damaged plan files.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncer.delivery.engine import Engine
from syncer.errors import StateFileError
from syncer.ledger.store import HeldRow, Ledger
from syncer.planning import snapshot
from syncer.planning.plan import load_plan, save_plan
from syncer.project.project import load_project
from tests.conftest import FAKE, person, write_customers, write_project


def _no_space(real, *, when, target: int = 0):
    """``real`` (os.replace, Path.write_text...) failing with ENOSPC when ``when`` picks its argument number
    ``target``: a full disk."""
    def fail(*args, **kwargs):
        path = str(args[target])
        if when(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(*args, **kwargs)
    return fail


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    return write_project(tmp_path, destination=FAKE)


# --- the ledger ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "needle"), [
    (b"not a database at all, just some text" * 200, "is not a SQLite database"),
    (None, "is damaged"),  # a real ledger cut short, as a failed copy leaves it
])
def test_a_damaged_ledger_is_named_with_what_to_do(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "ledger.db"
    if content is None:
        Ledger(f"sqlite:///{path}").close()
        content = path.read_bytes()[:8192]
    path.write_bytes(content)
    with pytest.raises(StateFileError) as caught:
        Ledger(f"sqlite:///{path}")
    assert str(path) in caught.value.message and needle in caught.value.message
    assert "restore it from a backup" in caught.value.message or "restore the ledger from a backup" in caught.value.message


def test_a_full_disk_under_the_ledger_is_a_clear_error_and_keeps_every_committed_batch(tmp_path: Path) -> None:
    """SQLite reports a database it may not grow as SQLITE_FULL, exactly as a full disk: capped by max_page_count."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    run = ledger.start_sync_run(ledger.start_run("test"), "s", plan_hash=None, members=None)
    rows = [HeldRow(f"k{i}", f"{i:032x}", {"email": f"{i:064x}"}) for i in range(200)]
    ledger.commit_batch(sync="s", sync_run_id=run, op="add", landed=rows, failed=[], attempts=1, rows=200)
    ledger.engine.dispose()
    with ledger.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    sa.event.listen(ledger.engine, "connect", lambda dbapi, _: dbapi.execute(f"PRAGMA max_page_count = {pages + 1}"))
    ledger.engine.dispose()
    more = [HeldRow(f"m{i}", f"{i:032x}", {"email": f"{i:064x}"}) for i in range(5_000)]
    with pytest.raises(StateFileError) as caught:
        ledger.commit_batch(sync="s", sync_run_id=run, op="add", landed=more, failed=[], attempts=1, rows=5_000)
    assert caught.value.message.startswith(f"ledger {path} cannot grow: its disk is full. Free space on that disk")
    assert "SQLITE_FULL" in caught.value.detail
    assert ledger.held_count("s") == 200  # the failed batch left nothing half written


def test_an_unreachable_postgres_ledger_is_named_without_its_password() -> None:
    with pytest.raises(StateFileError) as caught:
        Ledger("postgresql+psycopg://syncer:hunter2-secret@127.0.0.1:1/ledger")  # nothing listens on port 1
    message = caught.value.message
    assert message.startswith("ledger database postgresql+psycopg://syncer:***@127.0.0.1:1/ledger: ")
    assert message.endswith("check that the server runs and that ledger_url names it, with a user allowed to connect")
    assert "hunter2" not in message + (caught.value.detail or "")


# --- snapshots ------------------------------------------------------------------------------------


def test_a_full_disk_while_writing_a_snapshot_names_it_and_leaves_no_temporary_file(project: Path, monkeypatch) -> None:
    monkeypatch.setattr(snapshot.os, "replace", _no_space(os.replace, when=lambda p: p.endswith(".held.parquet"), target=1))
    with Engine(load_project(project)) as engine, pytest.raises(StateFileError) as caught:
        engine.build_plan()
    folder = project / ".syncer" / "snapshots"
    assert caught.value.message.startswith(f"cannot write the snapshot {folder / 'buyers_sync.held.parquet'}"
                                           " (No space left on device): free space on that disk")
    assert caught.value.path == folder / "buyers_sync.held.parquet"
    assert [p.name for p in folder.iterdir()] == []


def test_a_full_disk_during_the_snapshot_refresh_records_the_run_as_failed(project: Path, monkeypatch) -> None:
    with Engine(load_project(project)) as engine:
        assert [r.status for r in engine.run()] == ["ok"]
    write_customers(project / "warehouse.duckdb", [person(i) for i in range(1, 51)])  # 45 joiners: a large change
    monkeypatch.setattr(snapshot.os, "replace", _no_space(os.replace, when=lambda p: p.endswith(".held.parquet"), target=1))
    with Engine(load_project(project)) as engine:
        try:
            reports = engine.run()
        except StateFileError:
            reports = []
        history = engine.ledger.history()
        with engine.ledger.engine.connect() as conn:
            statuses = [s for (s,) in conn.exec_driver_sql("SELECT status FROM runs ORDER BY id")]
    assert [r.status for r in reports] == ["failed"]
    assert history[0]["status"] == "failed" and "cannot write the snapshot" in history[0]["reason"]
    assert statuses == ["ok", "failed"]


# --- saved plans ----------------------------------------------------------------------------------


def _saved_plan(project: Path) -> Path:
    with Engine(load_project(project)) as engine:
        return save_plan(engine.build_plan(), project / "plans")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "file", "needle"), [
    (lambda folder: _truncate(folder / "buyers_sync.parquet"), "buyers_sync.parquet", "cannot be read"),
    (lambda folder: (folder / "buyers_sync.parquet").unlink(), "buyers_sync.parquet", "is missing"),
    (lambda folder: (folder / "buyers_sync.parquet").write_bytes(b"PAR1"), "buyers_sync.parquet", "cannot be read"),
    (lambda folder: _truncate(folder / "plan.json"), "plan.json", "cannot be read"),
    (lambda folder: (folder / "plan.json").write_text('{"syncs": [{"sync": "buyers_sync"}]}'), "plan.json", "cannot be read"),
], ids=["rows-truncated", "rows-missing", "rows-empty", "header-truncated", "header-incomplete"])
def test_a_damaged_plan_file_is_named_with_plan_again(project: Path, damage, file: str, needle: str) -> None:
    folder = _saved_plan(project)
    damage(folder)
    with pytest.raises(StateFileError) as caught:
        load_plan(folder)
    message = caught.value.message
    assert message.startswith(f"plan file {folder / file} {needle}"), message
    assert message.endswith("plan again with `syncer plan`")


def test_a_plan_whose_rows_were_altered_says_to_plan_again(project: Path) -> None:
    folder = _saved_plan(project)
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "buyers_sync.parquet")
    pq.write_table(table.slice(1), folder / "buyers_sync.parquet")  # a readable file, one row short
    with pytest.raises(StateFileError, match=r"do not match the plan's hash; the plan was altered or damaged: plan again"):
        load_plan(folder)


def test_a_full_disk_while_saving_a_plan_leaves_no_half_plan(project: Path, monkeypatch) -> None:
    with Engine(load_project(project)) as engine:
        the_plan = engine.build_plan()
    plans = project / "plans"
    monkeypatch.setattr(Path, "write_text", _no_space(Path.write_text, when=lambda p: p.endswith("plan.json")))
    with pytest.raises(StateFileError) as caught:
        save_plan(the_plan, plans)
    assert caught.value.message.startswith(f"cannot save the plan to {plans / the_plan.plan_id} (No space left on device):")
    assert "then plan again" in caught.value.message
    assert list(plans.iterdir()) == []  # no folder that `apply` could take for a plan
    monkeypatch.undo()
    assert load_plan(save_plan(the_plan, plans)).content_hash == the_plan.content_hash
