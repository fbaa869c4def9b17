"""Settle the batches a killed process sent (perhaps) and never recorded (``syncer.ledger.intents``).

Whoever takes a sync's lease settles them before planning against, or changing, what the ledger holds:
a batch apply, ``replace``, ``reconcile`` and the fast path. Each batch is sent again as it was and
recorded, so afterwards the ledger holds what the platform holds for those members, whatever became of
the first send: audience adds and removes are set operations, and a batch that had landed changes nothing.

One exception: an add for a member suppressed since (a conversion) is not sent again, as that would put a
converter back in the audience. The member is recorded as held instead, since the first add may have
landed, and the plan that follows removes them (through the shared-identifier rules, like any leaver).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from destinations.base import AudienceRef, Destination
from syncer.delivery.apply import ApplyReport, RetryPolicy, send_and_commit
from syncer.errors import PermanentError
from syncer.ledger.store import HeldRow, Ledger


@dataclass
class Settled:
    batches: int = 0  # batches sent again and recorded
    rows: int = 0  # their rows
    converted: int = 0  # adds not sent again: the member converted since; recorded as held for the plan to remove

    def summary(self) -> str:
        text = f"settled {self.batches} batch(es) an interrupted run left unrecorded: {self.rows} row(s) sent again"
        return text + (f", {self.converted} converted member(s) held for removal instead" if self.converted else "")


def settle_intents(destination: Destination, ledger: Ledger, *, sync: str, segment: str, audience: AudienceRef,
                   sync_run_id: int, policy: RetryPolicy, report: ApplyReport,
                   sleep: Callable[[float], None] = time.sleep, now: float | None = None) -> Settled:
    """Send again and record every open batch of ``sync``, oldest first. Raises the platform's error when
    one cannot be sent: the batch stays open (but for a ``PermanentError``: no retry lands it), and
    nothing else may be sent for the sync before it is settled."""
    settled = Settled()
    for intent in ledger.open_intents(sync):
        rows = [HeldRow(key, fp, identifiers) for key, fp, identifiers in intent.rows]
        if intent.op == "add":
            converted = ledger.suppressed_since(0.0, segment, now=now)
            parked = [r for r in rows if r.member_key in converted]
            if parked:
                ledger.commit_batch(sync=sync, sync_run_id=sync_run_id, op="refresh", landed=parked, failed=[],
                                    attempts=0, rows=0)
                settled.converted += len(parked)
            rows = [r for r in rows if r.member_key not in converted]
        if not rows:
            ledger.drop_intent(intent.id)
            continue
        try:
            send_and_commit(destination, ledger, sync=sync, sync_run_id=sync_run_id, audience=audience, op=intent.op,
                            rows=rows, policy=policy, report=report, sleep=sleep, intent=intent.id)
        except PermanentError:
            ledger.drop_intent(intent.id)  # refused whole, for good: sending it again cannot land it
            raise
        settled.batches += 1
        settled.rows += len(rows)
    return settled
