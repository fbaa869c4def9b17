"""The job book: how far each platform job a connector builds in several calls got, so a retry resumes it.

Google Customer Match builds one job per consent group in three calls (CreateOfflineUserDataJob,
AddOfflineUserDataJobOperations, RunOfflineUserDataJob). Retrying the whole batch after one of them failed
would create new jobs, add the same operations again and run them twice; instead the connector records each
job's resource name and stage here (``Destination.job_book``, the ``destinations.base.JobBook`` Protocol), in
the ``job_steps`` table, and a retried or resumed batch goes on from the recorded stage.

A record is resumed only while no batch of its sync has been committed since the step began (the sync's
``sync_state.version`` is unchanged): the engine commits a batch once the connector returned it, so the same
step seen after a commit is a new send (a re-add after a remove, a full resync) and starts afresh. Nor after
``RESUME_WINDOW_S``: Google runs a job only within 5 days of its creation. A new step prunes the records of its
sync that can no longer be resumed.

The rule is coarse on purpose: any commit of the sync ends its records, also one of other members. So a run
that commits other changes of the sync (refreshes, removes) before it reaches a batch an earlier run left half
sent (deferred, or cut by a crash) sends that batch's steps in new jobs, as every retry did before the book
existed. Telling which commits touched a step's members would need its member keys stored with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from syncer.ledger.tables import job_steps, sync_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["RESUME_WINDOW_S", "LedgerJobBook"]

RESUME_WINDOW_S = 4 * 24 * 3600.0
"""Under Google's 5 days: "You must run the job within 5 days of creating it" (developers.google.com/google-ads/
api/docs/remarketing/audience-segments/customer-match/get-started, Usage flow step 5)."""


class _Store(Protocol):
    engine: Engine

    def begin(self) -> AbstractContextManager[Connection]: ...


class LedgerJobBook:
    """One destination's job steps in the ledger (implements ``destinations.base.JobBook``).

    Args:
        ledger: the ``Ledger`` (its engine and transactions).
        destination: the destination's name; steps of different destinations never meet.
        clock: seconds since the epoch (tests pass a fake one).
    """

    def __init__(self, ledger: _Store, destination: str, *, clock: Callable[[], float] = time.time) -> None:
        self._ledger, self._destination, self._clock = ledger, destination, clock

    def get(self, sync: str, step: str) -> dict[str, Any] | None:
        """``{"job", "stage", "detail"}`` of a step to resume, else None (unknown, or stale)."""
        with self._ledger.engine.connect() as conn:
            row = conn.execute(sa.select(job_steps.c.job, job_steps.c.stage, job_steps.c.detail, job_steps.c.sync_version,
                                         job_steps.c.created_at).where(*self._where(sync, step))).first()
            if row is None or not self._resumable(row.sync_version, row.created_at, _version(conn, sync)):
                return None
        return {"job": row.job, "stage": row.stage, "detail": json.loads(row.detail)}

    def put(self, sync: str, step: str, *, job: str | None, stage: str, detail: Mapping[str, Any]) -> None:
        """Record the step's stage, in one transaction: durable when this returns."""
        now = self._clock()
        values = {"job": job, "stage": stage, "detail": json.dumps(detail, separators=(",", ":"), sort_keys=True),
                  "updated_at": now}
        with self._ledger.begin() as conn:
            version = _version(conn, sync)
            row = conn.execute(sa.select(job_steps.c.sync_version, job_steps.c.created_at).where(*self._where(sync, step))).first()
            if row is not None and self._resumable(row.sync_version, row.created_at, version):
                conn.execute(job_steps.update().where(*self._where(sync, step)).values(**values))
                return
            # a new step: the sync's records a commit or the clock made stale (this one's too) are of no more use
            conn.execute(job_steps.delete().where(
                job_steps.c.destination == self._destination, job_steps.c.sync == sync,
                sa.or_(job_steps.c.sync_version != version, job_steps.c.created_at < now - RESUME_WINDOW_S)))
            conn.execute(job_steps.insert().values(destination=self._destination, sync=sync, step=step, sync_version=version,
                                                   created_at=now, **values))

    def drop(self, sync: str, step: str) -> None:
        with self._ledger.begin() as conn:
            conn.execute(job_steps.delete().where(*self._where(sync, step)))

    def _where(self, sync: str, step: str) -> tuple[Any, ...]:
        return job_steps.c.destination == self._destination, job_steps.c.sync == sync, job_steps.c.step == step

    def _resumable(self, recorded_version: int, created_at: float, version: int) -> bool:
        return recorded_version == version and created_at >= self._clock() - RESUME_WINDOW_S


def _version(conn: Connection, sync: str) -> int:
    """The sync's batch counter: every committed batch bumps it (``Ledger.commit_batch``)."""
    return conn.execute(sa.select(sync_state.c.version).where(sync_state.c.sync == sync)).scalar() or 0
