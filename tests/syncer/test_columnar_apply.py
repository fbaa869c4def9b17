"""The apply path's bulk shortcuts record exactly what the row-by-row path did: a plan's batches carry their
identifiers' canonical JSON from Arrow, the write-ahead record and ``held`` store that text, a batch with a
refused row records only the rows that landed, and the garbage collector held per batch is given back."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from destinations.base import AudienceRef
from destinations.fake.config import FakeConfig
from destinations.fake.connector import FakeDestination
from syncer.delivery.apply import ApplyReport, RetryPolicy, apply_sync, send_and_commit
from syncer.errors import PermanentError
from syncer.json_rows import dumps
from syncer.ledger.store import Ledger
from syncer.planning.plan import PlannedRow, PlanRows, SyncPlan

SYNC = "s"


def rows(n: int) -> list[PlannedRow]:
    # a key and a value JSON must escape, a non-ASCII value, keys out of order: the stored text is canonical
    return [PlannedRow(f"k{i:04d}", f"{i:032x}", {"phone": f"p{i}", "email": f'e"{i}\\', "city": "São Paulo"})
            for i in range(n)]


@pytest.fixture
def ledger(tmp_path: Path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield ledger
    ledger.close()


@pytest.fixture
def fake():
    FakeDestination.reset()
    yield FakeDestination(FakeConfig(type="fake"))
    FakeDestination.reset()


def held_texts(ledger: Ledger) -> dict[str, str]:
    with ledger.engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT member_key, identifiers FROM held").all())


def send(ledger: Ledger, destination, batch) -> list:
    run = ledger.start_sync_run(ledger.start_run("test"), SYNC, plan_hash=None, members=None)
    return send_and_commit(destination, ledger, sync=SYNC, sync_run_id=run, audience=AudienceRef(SYNC, "a"), op="add",
                           rows=batch, policy=RetryPolicy(attempts=1), report=ApplyReport(), sleep=lambda _: None)


def test_a_slice_of_spilled_rows_carries_their_canonical_json_and_none_once_it_reaches_memory(tmp_path: Path) -> None:
    planned = PlanRows(rows(250), spill_dir=tmp_path, chunk_rows=100)  # two chunks on disk, 50 rows in memory
    across = planned[90:160]
    assert across == rows(250)[90:160] and across.texts == [dumps(r.identifiers) for r in rows(250)[90:160]]
    assert planned[150:230] == rows(250)[150:230] and planned[150:230].texts is None


def test_a_spilled_batch_lands_in_held_with_the_same_text_as_a_batch_from_memory(tmp_path: Path, ledger, fake) -> None:
    batch = PlanRows(rows(300), spill_dir=tmp_path, chunk_rows=100)[0:200]
    assert batch.texts is not None
    send(ledger, fake, batch)
    assert held_texts(ledger) == {r.member_key: dumps(r.identifiers) for r in rows(200)}


def test_a_refused_row_is_left_out_of_held_and_the_others_keep_their_own_text(tmp_path: Path, ledger, fake) -> None:
    FakeDestination.reject_keys = {"k0003", "k0150"}
    failed = send(ledger, fake, PlanRows(rows(300), spill_dir=tmp_path, chunk_rows=100)[0:200])
    assert sorted(k for k, _, _ in failed) == ["k0003", "k0150"]
    assert held_texts(ledger) == {r.member_key: dumps(r.identifiers) for r in rows(200) if r.member_key not in FakeDestination.reject_keys}


def test_a_batch_cut_short_leaves_its_rows_written_ahead_as_they_were_planned(tmp_path: Path, ledger, fake) -> None:
    FakeDestination.fail_calls = {1: PermanentError("refused")}
    with pytest.raises(PermanentError):
        send(ledger, fake, PlanRows(rows(300), spill_dir=tmp_path, chunk_rows=100)[50:150])
    [intent] = ledger.open_intents(SYNC)
    assert intent.rows == [(r.member_key, r.raw_fp, r.identifiers) for r in rows(150)[50:]]
    assert held_texts(ledger) == {}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_as_the_caller_left_it_after_an_apply(tmp_path: Path, ledger, fake, enabled: bool) -> None:
    plan = SyncPlan(sync=SYNC, segment="seg", destination="d", audience_id="a", mode="mirror", base_version=0,
                    members=300, held_before=0, adds=PlanRows(rows(300), spill_dir=tmp_path, chunk_rows=100))
    run = ledger.start_sync_run(ledger.start_run("test"), SYNC, plan_hash=None, members=None)
    (gc.enable if enabled else gc.disable)()
    try:
        report = apply_sync(plan, fake, ledger, sync_run_id=run, sleep=lambda _: None)
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
    assert report.added == 300 and len(held_texts(ledger)) == 300
