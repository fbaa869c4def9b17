"""A plan: the exact adds and removes for each sync, deterministic, with a content hash.

``syncer plan`` saves one to ``.syncer/plans/<id>/`` (``plan.json`` header + one Parquet file per sync);
``syncer apply`` loads it and refuses it when the ledger or the config moved on since (stale).
Rows come in member-key order, so the same inputs always give the same bytes and the same hash. Adds,
removes and refreshes are ``PlanRows``: a plan of ten million adds keeps one chunk in memory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from syncer.errors import StateFileError
from syncer.json_rows import loads
from syncer.planning.plan_rows import PlannedRow, PlanRows

__all__ = ["Plan", "PlanRows", "PlannedRow", "SyncPlan", "load_plan", "save_plan", "summarise"]


@dataclass
class SyncPlan:
    """Everything ``apply`` needs for one sync; produced by ``syncer.planning.local_diff.plan_sync``."""

    sync: str
    segment: str
    destination: str
    audience_id: str
    mode: str
    base_version: int  # the sync's ledger batch_version when planned (fast-path removes leave it alone)
    members: int  # members the audience should hold after apply
    held_before: int
    adds: PlanRows = field(default_factory=PlanRows)
    removes: PlanRows = field(default_factory=PlanRows)  # identifiers as held (what was sent)
    refreshes: PlanRows = field(default_factory=PlanRows)  # new raw data, same identifiers: ledger only
    rejections: list[tuple[str, str, str]] = field(default_factory=list)  # (member_key, raw_fp, reason)
    cleared_rejections: list[str] = field(default_factory=list)
    retained: dict[str, str] = field(default_factory=dict)  # leavers kept, linked to a member who stays: key -> why
    retried: int = 0
    planned_at: float = 0.0  # when the plan read suppressions: apply drops members suppressed since (0: every active one)
    stats: dict = field(default_factory=dict)  # extract time, duplicates, dropped identifiers...

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        header = [self.sync, self.segment, self.destination, self.audience_id, self.mode, self.members]
        digest.update(json.dumps(header).encode())
        for op, rows in (("add", self.adds), ("remove", self.removes), ("refresh", self.refreshes)):
            digest.update((rows if isinstance(rows, PlanRows) else PlanRows(rows)).digest(op))
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
    # syncs that could not be planned (their segment's query failed...): sync -> the operator's message;
    # the others go on without them
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256(self.project_fingerprint.encode())
        for sync_plan in sorted(self.syncs, key=lambda p: p.sync):
            digest.update(f"\n{sync_plan.sync}:{sync_plan.base_version}:{sync_plan.content_hash}".encode())
        return digest.hexdigest()

    @property
    def plan_id(self) -> str:
        return self.content_hash[:12]


_ROW_SCHEMA = pa.schema([("op", pa.string()), ("member_key", pa.string()), ("raw_fp", pa.string()),
                         ("identifiers", pa.string()), ("reason", pa.string())])
_ROW_FIELDS = ("adds", "removes", "refreshes", "rejections", "cleared_rejections")


def _row_batches(sync_plan: SyncPlan, size: int = 50_000):
    """The plan's rows as Arrow batches: adds, removes, refreshes, rejections, un-rejections."""
    for op, rows in (("add", sync_plan.adds), ("remove", sync_plan.removes), ("refresh", sync_plan.refreshes)):
        for table in (rows if isinstance(rows, PlanRows) else PlanRows(rows)).tables():
            for batch in table.to_batches():
                n = batch.num_rows
                yield pa.record_batch([pa.array([op] * n, pa.string()), *batch.columns, pa.nulls(n, pa.string())],
                                      schema=_ROW_SCHEMA)
    for op, rows in (("reject", sync_plan.rejections), ("unreject", sync_plan.cleared_rejections)):
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            if op == "reject":
                columns = [[k for k, _, _ in chunk], [f for _, f, _ in chunk], ["{}"] * len(chunk), [r for _, _, r in chunk]]
            else:
                columns = [list(chunk), [""] * len(chunk), ["{}"] * len(chunk), [None] * len(chunk)]
            yield pa.record_batch([[op] * len(chunk), *columns], schema=_ROW_SCHEMA)


def save_plan(plan: Plan, plans_dir: Path) -> Path:
    """Write the plan; return its folder. The identifiers are hashed values, never raw PII
    (apart from platforms that take raw emails, whose plans hold what the platform would get).

    The folder appears whole or not at all: it is written under a temporary name and renamed, so a full
    disk or a kill never leaves a plan that ``apply`` would find half written.

    Raises:
        StateFileError: the folder cannot be written (disk full, permissions); nothing is left behind.
    """
    content_hash = plan.content_hash  # hashing every row is not free: once
    folder = plans_dir / content_hash[:12]
    tmp = plans_dir / f".{content_hash[:12]}.{os.getpid()}.tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        _write_plan(plan, content_hash, tmp)
        if folder.exists():  # the same plan saved before: replace it whole
            shutil.rmtree(folder)
        tmp.rename(folder)
    except (OSError, pa.ArrowException) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StateFileError(f"cannot save the plan to {folder} ({_why(exc)}): free space on that disk or make"
                             f" {plans_dir} writable by this user (or choose another folder with --out), then plan"
                             " again", path=folder, detail=str(exc)) from exc
    return folder


def _write_plan(plan: Plan, content_hash: str, folder: Path) -> None:
    header = {
        "plan_id": content_hash[:12],
        "content_hash": content_hash,
        "project_fingerprint": plan.project_fingerprint,
        "created_at": plan.created_at,
        "syncs": [],
    }
    for sync_plan in plan.syncs:
        meta = {f.name: getattr(sync_plan, f.name) for f in fields(sync_plan) if f.name not in _ROW_FIELDS}
        meta["content_hash"] = sync_plan.content_hash
        header["syncs"].append(meta)
        with pq.ParquetWriter(folder / f"{sync_plan.sync}.parquet", _ROW_SCHEMA) as writer:
            for batch in _row_batches(sync_plan):
                writer.write_batch(batch)
    (folder / "plan.json").write_text(json.dumps(header, indent=2, sort_keys=True))


def _why(exc: BaseException) -> str:
    """The system's reason in a few words: "No space left on device", not the whole message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).strip().rsplit(": ", 1)[-1] or type(exc).__name__


def load_plan(path: Path, *, spill_dir: Path | None = None) -> Plan:
    """Read a saved plan and check that its content still matches its hash; rows beyond a chunk are
    kept in ``spill_dir`` (default: the system's temporary folder).

    Raises:
        StateFileError: a plan file is missing, unreadable, damaged or altered (plan again), or the spill
            folder cannot be written (disk full, permissions).
    """
    folder = path if path.is_dir() else path.parent
    try:
        header = json.loads((folder / "plan.json").read_text())
        metas = [dict(meta) for meta in header["syncs"]]
        project_fingerprint, created_at, content_hash = header["project_fingerprint"], header["created_at"], header["content_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _unreadable(folder / "plan.json", exc) from exc
    spill = spill_dir or Path(tempfile.gettempdir())
    syncs = [_load_sync(folder, meta, spill) for meta in metas]
    plan = Plan(syncs=syncs, project_fingerprint=project_fingerprint, created_at=created_at)
    if plan.content_hash != content_hash:
        raise StateFileError(f"{folder}: plan hash mismatch; the plan was altered or damaged: plan again with `syncer plan`",
                             path=folder)
    return plan


def _load_sync(folder: Path, meta: dict, spill: Path) -> SyncPlan:
    """One sync's plan from its header entry and its Parquet file."""
    header_file, rows_file = folder / "plan.json", folder / f"{meta.get('sync')}.parquet"
    try:
        expected = meta.pop("content_hash")
        sync_plan = SyncPlan(**meta, adds=PlanRows(spill_dir=spill), removes=PlanRows(spill_dir=spill),
                             refreshes=PlanRows(spill_dir=spill))
    except (KeyError, TypeError) as exc:
        raise _unreadable(header_file, exc) from exc
    targets = {"add": sync_plan.adds, "remove": sync_plan.removes, "refresh": sync_plan.refreshes}
    try:
        batches = pq.ParquetFile(rows_file).iter_batches(batch_size=50_000)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise _unreadable(rows_file, exc) from exc
    try:
        for batch in batches:
            table = batch.to_pydict()
            for op, key, fp, ident, reason in zip(table["op"], table["member_key"], table["raw_fp"], table["identifiers"], table["reason"]):
                if op == "reject":
                    sync_plan.rejections.append((key, fp, reason))
                elif op == "unreject":
                    sync_plan.cleared_rejections.append(key)
                else:
                    targets[op].append(PlannedRow(key, fp, loads(ident)))
    except OSError as exc:
        if exc.errno in _SPILL_FAULTS:  # writing rows to the spill folder failed, not reading the plan
            raise StateFileError(f"cannot keep the plan's rows in {spill} ({_why(exc)}): free space on that disk or"
                                 " make it writable by this user, then apply again", path=spill, detail=str(exc)) from exc
        raise _unreadable(rows_file, exc) from exc
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise _unreadable(rows_file, exc) from exc
    if sync_plan.content_hash != expected:
        raise StateFileError(f"{rows_file}: the rows of sync '{sync_plan.sync}' do not match the plan's hash; the plan"
                             " was altered or damaged: plan again with `syncer plan`", path=rows_file)
    return sync_plan


# errors of the disk or the permissions while the rows go to the spill folder (reading the plan's file was
# already checked when it was opened; a damaged row group reads as ArrowInvalid or an OSError without errno)
_SPILL_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def _unreadable(file: Path, exc: BaseException) -> StateFileError:
    """The error for a plan file that is missing, unreadable or damaged: name it, and say to plan again."""
    if isinstance(exc, PermissionError):
        what = f"cannot be read by this user ({_why(exc)}): make it readable, or plan again with `syncer plan`"
    else:
        state = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({_why(exc)})"
        what = f"{state}: the plan is incomplete or damaged; plan again with `syncer plan`"
    return StateFileError(f"plan file {file} {what}", path=file, detail=f"{type(exc).__name__}: {exc}")


def summarise(sync_plans: Sequence[SyncPlan]) -> list[dict]:
    return [
        {"sync": p.sync, "members": p.members, "held": p.held_before, "add": len(p.adds), "remove": len(p.removes),
         "rejected": len(p.rejections), "retried": p.retried, "hash": p.content_hash[:12]}
        for p in sync_plans
    ]
