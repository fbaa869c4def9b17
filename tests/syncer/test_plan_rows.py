"""Planned rows spill to disk beyond a chunk and read back exactly, in order, for apply and for the plan's hash."""

from __future__ import annotations

import gc
from pathlib import Path

from syncer.planning.plan import Plan, PlannedRow, PlanRows, SyncPlan, load_plan, save_plan


def rows(n: int, start: int = 0) -> list[PlannedRow]:
    return [PlannedRow(f"k{i:05d}", f"fp{i}", {"email": f"h{i}", "_consent": "granted" if i % 2 else "unknown"})
            for i in range(start, start + n)]


def test_rows_beyond_a_chunk_go_to_disk_and_read_back_in_order(tmp_path: Path) -> None:
    spilled = PlanRows(rows(2_345), spill_dir=tmp_path, chunk_rows=500)
    files = list(tmp_path.rglob("*.arrow"))
    assert len(files) == 4 and len(spilled._tail) == 345  # only the last, partial chunk is in memory
    assert len(spilled) == 2_345 and list(spilled) == rows(2_345)
    # apply's batches: slices across chunk borders, in any order
    assert spilled[490:1_010] == rows(520, start=490)
    assert spilled[2_000:9_999] == rows(345, start=2_000)
    assert spilled[0:10] == rows(10) and spilled[-1] == rows(1, start=2_344)[0]
    assert spilled == rows(2_345) and spilled != rows(2_344)


def test_a_table_appended_whole_is_a_chunk_of_its_own(tmp_path: Path) -> None:
    from syncer.planning.plan_rows import _table

    mixed = PlanRows(rows(120), spill_dir=tmp_path, chunk_rows=100)
    mixed.append_table(_table(rows(777, start=120)))  # the 20-row tail is spilled first, keeping the order
    mixed.extend(rows(250, start=897))
    assert len(mixed) == 1_147 and list(mixed) == rows(1_147)
    assert mixed[95:905] == rows(810, start=95) and mixed[-1] == rows(1, start=1_146)[0]
    assert PlanRows(rows(1_147)).digest("add") == mixed.digest("add")
    small = PlanRows(rows(3))  # no spill folder: the table becomes rows in memory
    small.append_table(_table(rows(2, start=3)))
    assert list(small) == rows(5)


def test_spilled_and_in_memory_rows_hash_the_same(tmp_path: Path) -> None:
    def plan(adds: PlanRows) -> SyncPlan:
        return SyncPlan(sync="s", segment="g", destination="d", audience_id="1", mode="mirror", base_version=3,
                        members=2_000, held_before=0, adds=adds)

    in_memory, on_disk = plan(PlanRows(rows(2_000))), plan(PlanRows(rows(2_000), spill_dir=tmp_path, chunk_rows=300))
    assert in_memory.content_hash == on_disk.content_hash
    changed = rows(2_000)
    changed[1_500] = PlannedRow("k01500", "fp1500", {"email": "other"})
    assert plan(PlanRows(changed, spill_dir=tmp_path, chunk_rows=300)).content_hash != in_memory.content_hash


def test_a_saved_large_plan_loads_back_identical(tmp_path: Path) -> None:
    sync_plan = SyncPlan(sync="s", segment="g", destination="d", audience_id="1", mode="mirror", base_version=1,
                         members=1_200, held_before=10, adds=PlanRows(rows(1_200), spill_dir=tmp_path / "a", chunk_rows=250),
                         removes=PlanRows(rows(10, start=5_000)), rejections=[("bad", "fpx", "invalid_email")])
    plan = Plan(syncs=[sync_plan], project_fingerprint="p")
    folder = save_plan(plan, tmp_path / "plans")
    loaded = load_plan(folder, spill_dir=tmp_path / "b").syncs[0]
    assert loaded.content_hash == sync_plan.content_hash
    assert list(loaded.adds) == rows(1_200) and list(loaded.removes) == rows(10, start=5_000)
    assert loaded.rejections == [("bad", "fpx", "invalid_email")]


def test_spill_files_are_removed_with_the_rows(tmp_path: Path) -> None:
    spilled = PlanRows(rows(1_000), spill_dir=tmp_path, chunk_rows=100)
    assert list(tmp_path.rglob("*.arrow"))
    del spilled
    gc.collect()
    assert not list(tmp_path.rglob("*.arrow"))
