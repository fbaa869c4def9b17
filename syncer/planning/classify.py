"""Sorting one sync's changed members into the plan: adds, removes, refreshes and rejections.

``syncer.planning.local_diff`` finds which members changed (set work, in DuckDB or the warehouse) and hands them over
here chunk by chunk, in member-key order, with whether each was held or rejected before. The identity
rules run on these rows only (``syncer.identity.columnar``). A new member with usable identifiers is a
plain add and stays in Arrow; a member who was held, or is rejected, goes through the row rules.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from destinations.base import TRAITS_KEY
from syncer.identity.columnar import identify_columns, to_identified
from syncer.json_rows import dumps_many
from syncer.ledger.store import Ledger
from syncer.planning.plan import PlannedRow, SyncPlan

_JSON_SAFE = r"^[ !#-\[\]-~]*$"  # printable ASCII without '"' or '\': its JSON text is the value in quotes


def classify_chunk(plan: SyncPlan, candidates: pa.Table, kinds: list[str], *, platform: str, region: str,
                         has_region: bool, ledger: Ledger, resend_all: bool, pending: dict[str, str],
                         dropped: dict[str, int]) -> None:
    """Run identity rules on one chunk of changed rows and sort them into adds, removes, refreshes, rejections.

    Plain adds (every row of an initial sync) have their identifiers JSON built by column; the rest go
    through ``_classify_rows``. Adds keep the chunk's member-key order either way."""
    rows = candidates.rename_columns([n.removeprefix("k_") for n in candidates.column_names])
    found = identify_columns(rows.select(kinds + (["region"] if has_region else [])), kinds,
                             platform=platform, region=region, region_column="region" if has_region else None)
    plan.cleared_rejections.extend(rows.column("member_key").filter(rows.column("was_rejected")).to_pylist())
    for text in found.column("dropped").drop_null().to_pylist():
        for pair in text.split(","):
            reason = pair.split(":", 1)[1]
            dropped[reason] = dropped.get(reason, 0) + 1
    values = {kind: found.column(kind) for kind in kinds}
    if "consent" in rows.column_names:
        values["_consent"] = rows.column("consent")
    if "traits" in rows.column_names:  # JSON text: never JSON-safe, so these rows take the row rules
        values[TRAITS_KEY] = rows.column("traits")
    quick = pc.and_(pc.invert(rows.column("was_held")), pc.is_null(found.column("reason")))
    for column in values.values():
        quick = pc.and_(quick, pc.fill_null(pc.match_substring_regex(column, _JSON_SAFE), True))
    position = pa.array(range(rows.num_rows), pa.int64())
    # ',"kind":"value"' per present value, concatenated, the first comma cut ("skip" nulls drops all-null rows)
    pieces = [pc.binary_join_element_wise(f',"{name}":"', values[name], '"', "") for name in sorted(values)]
    joined = pc.binary_join_element_wise(*pieces, "", null_handling="replace", null_replacement="")
    identifiers = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 1), "}", "")
    adds = pa.table({"position": position, "member_key": rows.column("member_key"), "raw_fp": rows.column("raw_fp"),
                     "identifiers": identifiers}).filter(quick)
    slow = pc.indices_nonzero(pc.invert(quick))
    slow_adds = _classify_rows(plan, rows.take(slow), to_identified(found.take(slow)), slow.to_pylist(), ledger,
                               resend_all, pending)
    if slow_adds:
        adds = pa.concat_tables([adds, pa.table({
            "position": pa.array([i for i, _ in slow_adds], pa.int64()), "member_key": [r.member_key for _, r in slow_adds],
            "raw_fp": [r.raw_fp for _, r in slow_adds], "identifiers": dumps_many([r.identifiers for _, r in slow_adds])})
        ]).sort_by("position")
    plan.adds.append_table(adds.drop_columns(["position"]))
    if pending:
        wanted_again = pa.array([k for k, op in pending.items() if op == "add"], pa.string())
        plan.retried += pc.sum(pc.is_in(adds.column("member_key"), value_set=wanted_again)).as_py() or 0


def _classify_rows(plan: SyncPlan, rows: pa.Table, results: list, positions: list[int], ledger: Ledger,
                   resend_all: bool, pending: dict[str, str]) -> list[tuple[int, PlannedRow]]:
    """The row-by-row rules for members who were held or are rejected; returns the adds, with their
    positions in the chunk (removes, refreshes and rejections go straight to the plan)."""
    consents = rows.column("consent").to_pylist() if "consent" in rows.column_names else None
    traits = rows.column("traits").to_pylist() if "traits" in rows.column_names else None
    keys = rows.column("member_key").to_pylist()
    fps = rows.column("raw_fp").to_pylist()
    was_held = [k for k, h in zip(keys, rows.column("was_held").to_pylist()) if h]
    held_map = ledger.held_rows(plan.sync, was_held) if was_held else {}
    adds: list[tuple[int, PlannedRow]] = []

    def remove(row: PlannedRow) -> None:
        plan.removes.append(row)
        plan.retried += pending.get(row.member_key) == "remove"

    for index, (key, fp, result) in enumerate(zip(keys, fps, results)):
        old = held_map.get(key)
        if result.reason is not None:
            plan.rejections.append((key, fp, result.reason))
            if old is not None and plan.mode == "mirror":
                remove(PlannedRow(key, old.raw_fp, old.identifiers))
            continue
        row = PlannedRow(key, fp, dict(result.identifiers) | ({"_consent": consents[index]} if consents else {})
                         | ({TRAITS_KEY: traits[index]} if traits else {}))
        if old is not None and plan.mode == "trigger":
            plan.refreshes.append(row)  # never re-text a member who is still in the segment
            continue
        if old is not None and _people(old.identifiers) == _people(row.identifiers):
            if resend_all or old.identifiers.get(TRAITS_KEY) != row.identifiers.get(TRAITS_KEY):
                adds.append((positions[index], row))  # same person: a plain re-add (new traits), no remove first
                continue
            plan.refreshes.append(row)
            continue
        if old is not None and plan.mode == "mirror":
            remove(PlannedRow(key, old.raw_fp, old.identifiers))
        adds.append((positions[index], row))
    return adds


def _people(identifiers: dict[str, str]) -> dict[str, str]:
    """What decides who the member is on the platform: the identifiers without the traits."""
    return {k: v for k, v in identifiers.items() if k != TRAITS_KEY}


def add_leavers(plan: SyncPlan, ledger: Ledger, keys: list[str], pending: dict[str, str]) -> None:
    """Members who left: removed with the identifiers they were sent with."""
    held_map = ledger.held_rows(plan.sync, keys)
    for key in keys:
        old = held_map.get(key)
        if old is not None:
            plan.removes.append(PlannedRow(key, old.raw_fp, old.identifiers))
            plan.retried += pending.get(key) == "remove"
