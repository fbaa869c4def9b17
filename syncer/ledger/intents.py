"""Batches sent but not yet recorded: the write-ahead half of send-and-commit.

Mixed into ``syncer.ledger.store.Ledger`` like ``ClaimRecords``. Sending a batch and recording it cannot be
one transaction: a process killed between the platform's answer and the ledger's commit leaves a batch
that may or may not have landed. Audience adds and removes are set operations, so sending such a batch
again is harmless, but only while nothing about its members changed: a member who converted or left
before the next run is no longer in any plan, and the ledger, not knowing the add landed, would never
remove them (found by ``bench/soak.py``).

So each batch is written here before it is sent (``record_intent``) and deleted by the commit that records
its outcome (``Ledger.commit_batch(intent=...)``). Only the holder of a sync's lease sends for it, so a row
found by the next holder belongs to a process that died mid-batch: ``syncer.delivery.settle`` sends it
again as it was and records it, before anything is planned against the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson
import sqlalchemy as sa

from syncer.ledger.tables import batch_intents

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["BatchIntent", "IntentRecords"]


class _Row(Protocol):
    member_key: str
    raw_fp: str
    identifiers: Mapping[str, str]


@dataclass(frozen=True)
class BatchIntent:
    """A batch a process began to send and never recorded: its rows as (member_key, raw_fp, identifiers)."""

    id: int
    sync: str
    op: str
    rows: list[tuple[str, str, dict[str, str]]]
    fast_path: bool
    created_at: float


class IntentRecords:
    """Write-ahead records of batches in flight; needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def record_intent(self, sync: str, op: str, rows: Sequence[_Row], *, fast_path: bool = False,
                      identifiers: Sequence[str] | None = None) -> int:
        """Note that ``rows`` are about to be sent (``op``); returns the id ``commit_batch`` deletes.
        ``identifiers``: each row's identifiers as JSON text, when the caller has them (written as they are)."""
        if identifiers is None:
            payload = orjson.dumps([[r.member_key, r.raw_fp, dict(r.identifiers)] for r in rows]).decode()  # 10k rows: 3 ms
        else:
            payload = orjson.dumps([[r.member_key, r.raw_fp, orjson.Fragment(text)] for r, text in zip(rows, identifiers)]).decode()
        with self.begin() as conn:
            return int(conn.execute(batch_intents.insert().values(
                sync=sync, op=op, rows=payload, fast_path=fast_path, created_at=time.time())).inserted_primary_key[0])

    def open_intents(self, sync: str) -> list[BatchIntent]:
        """Batches of ``sync`` sent (perhaps) and never recorded, oldest first."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(batch_intents).where(batch_intents.c.sync == sync).order_by(batch_intents.c.id))
            return [BatchIntent(r.id, r.sync, r.op, [(k, fp, ids) for k, fp, ids in orjson.loads(r.rows)], bool(r.fast_path),
                                r.created_at) for r in found]

    def has_open_intents(self, sync: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batch_intents.c.id).where(batch_intents.c.sync == sync).limit(1)).first() is not None

    def drop_intent(self, intent_id: int, conn: Connection | None = None) -> None:
        if conn is None:
            with self.begin() as conn:
                conn.execute(batch_intents.delete().where(batch_intents.c.id == intent_id))
        else:
            conn.execute(batch_intents.delete().where(batch_intents.c.id == intent_id))
