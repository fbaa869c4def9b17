"""Reconciles as the ledger keeps them: a run with command ``reconcile``, a ``sync_runs`` row per sync.

No table of its own: the row's columns hold what they hold for a sync (``members`` the held count,
``added`` the members re-added, ``removed`` the extras removed, ``requests``), ``reason`` a one-line
summary, and ``details`` (JSON) every figure: ``{"reconcile": {...ReconcileReport.figures()}}``. So
``syncer history`` shows reconciles beside syncs, and ``status`` and the next size check read them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlalchemy as sa

from syncer.ledger.store import Ledger, runs, sync_runs

__all__ = ["COMMAND", "commands_of", "last_reconcile", "last_size_reading", "last_sync_run"]

COMMAND = "reconcile"


def _recent(ledger: Ledger, sync: str, *, reconcile: bool, limit: int) -> list[dict]:
    joined = sync_runs.join(runs, sync_runs.c.run_id == runs.c.id)
    which = runs.c.command == COMMAND if reconcile else runs.c.command != COMMAND
    query = (sa.select(sync_runs, runs.c.command).select_from(joined).where(sync_runs.c.sync == sync, which)
             .order_by(sync_runs.c.id.desc()).limit(limit))
    with ledger.engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["details"] = _loads(row.get("details"))
    return rows


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def last_reconcile(ledger: Ledger, sync: str) -> dict | None:
    """The newest reconcile of ``sync``: its ``sync_runs`` row, ``details`` parsed."""
    rows = _recent(ledger, sync, reconcile=True, limit=1)
    return rows[0] if rows else None


def last_sync_run(ledger: Ledger, sync: str) -> dict | None:
    """The newest run of ``sync`` that was not a reconcile (a sync, a backfill, a held plan...)."""
    rows = _recent(ledger, sync, reconcile=False, limit=1)
    return rows[0] if rows else None


def last_size_reading(ledger: Ledger, sync: str, *, within: int = 50) -> dict | None:
    """The size check of the newest reconcile that read a size within the approximation: the baseline of the
    next one (a drifted reading never becomes the baseline, so drift keeps being flagged until set right)."""
    for row in _recent(ledger, sync, reconcile=True, limit=within):
        size = row["details"].get(COMMAND, {}).get("size") or {}
        if size.get("platform") and size.get("held") and size.get("verdict") == "ok":
            return size
    return None


def commands_of(ledger: Ledger, run_ids: Iterable[int]) -> dict[int, str]:
    """The command (run, apply, reconcile, dagster...) of each run id."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    with ledger.engine.connect() as conn:
        return {rid: cmd for rid, cmd in conn.execute(sa.select(runs.c.id, runs.c.command).where(runs.c.id.in_(ids)))}
