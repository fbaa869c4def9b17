"""Several processes share one SQLite ledger (Dagster runs, the sensor, the CLI): none may fail on a lock."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from syncer.ledger.store import HeldRow, Ledger


def _writer(url: str, sync: str, batches: int, errors) -> None:
    try:
        ledger = Ledger(url)
        run = ledger.start_sync_run(ledger.start_run("test"), sync, plan_hash=None, members=None)
        for b in range(batches):
            rows = [HeldRow(f"{sync}-{b}-{i}", "fp", {"email": "x"}) for i in range(50)]
            ledger.commit_batch(sync=sync, sync_run_id=run, op="add", landed=rows, failed=[], attempts=1, rows=len(rows))
            ledger.held_fingerprints(sync)  # readers interleave with the other process's writes
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_processes_commit_batches_without_lock_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    Ledger(url).close()
    errors = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_writer, args=(url, f"sync{n}", 40, errors)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    ledger = Ledger(url)
    assert [ledger.held_count(f"sync{n}") for n in range(3)] == [2000, 2000, 2000]
    assert [ledger.state_version(f"sync{n}") for n in range(3)] == [40, 40, 40]
