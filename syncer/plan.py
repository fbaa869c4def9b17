"""A plan: the exact adds and removes for each sync, deterministic, with a content hash.

``syncer plan`` saves one to ``.syncer/plans/<id>/`` (``plan.json`` header + one Parquet file per sync);
``syncer apply`` loads it and refuses it when the ledger or the config moved on since (stale).
Rows are sorted by member key, so the same inputs always give the same bytes and the same hash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from syncer.errors import SyncError


@dataclass(frozen=True)
class PlannedRow:
    member_key: str
    raw_fp: str
    identifiers: dict[str, str]


@dataclass
class SyncPlan:
    """Everything ``apply`` needs for one sync; produced by ``syncer.diff.plan_sync``."""

    sync: str
    segment: str
    destination: str
    audience_id: str
    mode: str
    base_version: int  # ledger version of the sync when planned
    members: int  # members the audience should hold after apply
    held_before: int
    adds: list[PlannedRow] = field(default_factory=list)
    removes: list[PlannedRow] = field(default_factory=list)  # identifiers as held (what was sent)
    refreshes: list[PlannedRow] = field(default_factory=list)  # new raw data, same identifiers: ledger only
    rejections: list[tuple[str, str, str]] = field(default_factory=list)  # (member_key, raw_fp, reason)
    cleared_rejections: list[str] = field(default_factory=list)
    retried: int = 0
    stats: dict = field(default_factory=dict)  # extract time, duplicates, dropped identifiers...

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        header = [self.sync, self.segment, self.destination, self.audience_id, self.mode, self.members]
        digest.update(json.dumps(header).encode())
        for op, rows in (("add", self.adds), ("remove", self.removes), ("refresh", self.refreshes)):
            digest.update("".join(
                f"\n{op}\x1f{row.member_key}\x1f{row.raw_fp}\x1f" + "\x1e".join(f"{k}\x1d{v}" for k, v in sorted(row.identifiers.items()))
                for row in rows).encode())
        for key, fp, reason in self.rejections:
            digest.update(f"\nreject\x1f{key}\x1f{fp}\x1f{reason}".encode())
        return digest.hexdigest()

    @property
    def is_empty(self) -> bool:
        return not (self.adds or self.removes or self.refreshes or self.rejections or self.cleared_rejections)

    def sample(self, n: int = 5) -> dict[str, list[str]]:
        """A few member keys per op, for the CLI (member keys, never identifiers)."""
        return {"add": [r.member_key for r in self.adds[:n]], "remove": [r.member_key for r in self.removes[:n]]}


@dataclass
class Plan:
    syncs: list[SyncPlan]
    project_fingerprint: str
    created_at: float = field(default_factory=time.time)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256(self.project_fingerprint.encode())
        for sync_plan in sorted(self.syncs, key=lambda p: p.sync):
            digest.update(f"\n{sync_plan.sync}:{sync_plan.base_version}:{sync_plan.content_hash}".encode())
        return digest.hexdigest()

    @property
    def plan_id(self) -> str:
        return self.content_hash[:12]


def _rows_table(sync_plan: SyncPlan) -> pa.Table:
    ops, keys, fps, idents, reasons = [], [], [], [], []
    for op, rows in (("add", sync_plan.adds), ("remove", sync_plan.removes), ("refresh", sync_plan.refreshes)):
        for row in rows:
            ops.append(op)
            keys.append(row.member_key)
            fps.append(row.raw_fp)
            idents.append(json.dumps(row.identifiers, sort_keys=True, separators=(",", ":")))
            reasons.append(None)
    for key, fp, reason in sync_plan.rejections:
        ops.append("reject")
        keys.append(key)
        fps.append(fp)
        idents.append("{}")
        reasons.append(reason)
    for key in sync_plan.cleared_rejections:
        ops.append("unreject")
        keys.append(key)
        fps.append("")
        idents.append("{}")
        reasons.append(None)
    return pa.table({"op": ops, "member_key": keys, "raw_fp": fps, "identifiers": idents, "reason": pa.array(reasons, pa.string())})


def save_plan(plan: Plan, plans_dir: Path) -> Path:
    """Write the plan; return its folder. The identifiers are hashed values, never raw PII
    (apart from platforms that take raw emails, whose plans hold what the platform would get)."""
    folder = plans_dir / plan.plan_id
    folder.mkdir(parents=True, exist_ok=True)
    header = {
        "plan_id": plan.plan_id,
        "content_hash": plan.content_hash,
        "project_fingerprint": plan.project_fingerprint,
        "created_at": plan.created_at,
        "syncs": [],
    }
    for sync_plan in plan.syncs:
        meta = {k: v for k, v in asdict(sync_plan).items() if k not in ("adds", "removes", "refreshes", "rejections", "cleared_rejections")}
        meta["content_hash"] = sync_plan.content_hash
        header["syncs"].append(meta)
        pq.write_table(_rows_table(sync_plan), folder / f"{sync_plan.sync}.parquet")
    (folder / "plan.json").write_text(json.dumps(header, indent=2, sort_keys=True))
    return folder


def load_plan(path: Path) -> Plan:
    """Read a saved plan and check that its content still matches its hash."""
    folder = path if path.is_dir() else path.parent
    try:
        header = json.loads((folder / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise SyncError(f"{folder}: not a saved plan ({exc}); create one with `syncer plan`") from exc
    syncs: list[SyncPlan] = []
    for meta in header["syncs"]:
        expected = meta.pop("content_hash")
        sync_plan = SyncPlan(**meta)
        table = pq.read_table(folder / f"{sync_plan.sync}.parquet").to_pydict()
        for op, key, fp, ident, reason in zip(table["op"], table["member_key"], table["raw_fp"], table["identifiers"], table["reason"]):
            if op == "reject":
                sync_plan.rejections.append((key, fp, reason))
            elif op == "unreject":
                sync_plan.cleared_rejections.append(key)
            else:
                getattr(sync_plan, {"add": "adds", "remove": "removes", "refresh": "refreshes"}[op]).append(
                    PlannedRow(key, fp, json.loads(ident)))
        if sync_plan.content_hash != expected:
            raise SyncError(f"{folder}: the rows of sync '{sync_plan.sync}' do not match the plan's hash; the plan was altered")
        syncs.append(sync_plan)
    plan = Plan(syncs=syncs, project_fingerprint=header["project_fingerprint"], created_at=header["created_at"])
    if plan.content_hash != header["content_hash"]:
        raise SyncError(f"{folder}: plan hash mismatch; the plan was altered")
    return plan


def summarise(sync_plans: Sequence[SyncPlan]) -> list[dict]:
    return [
        {"sync": p.sync, "members": p.members, "held": p.held_before, "add": len(p.adds), "remove": len(p.removes),
         "rejected": len(p.rejections), "retried": p.retried, "hash": p.content_hash[:12]}
        for p in sync_plans
    ]
