"""What the ledger keeps on a platform's behalf: its own ids for our members, and its async jobs.

Some platforms answer in their own terms: Klaviyo wants its profile ids (looked up once, cached in
``platform_ids`` by ``PlatformIdCache``), Google Customer Match finishes uploads later as jobs that
are polled until final (``platform_jobs``, mixed into ``syncer.ledger.store.Ledger`` by ``PlatformJobs``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from syncer.ledger.tables import platform_ids, platform_jobs

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


class PlatformIdCache:
    """A destination's own ids for our members, kept in the ledger (``Destination.id_cache``)."""

    def __init__(self, ledger: "PlatformJobs", destination: str) -> None:
        self._ledger, self._destination = ledger, destination

    def get_many(self, member_keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._ledger.engine.connect() as conn:
            for start in range(0, len(member_keys), 900):
                chunk = list(member_keys[start:start + 900])
                q = sa.select(platform_ids.c.member_key, platform_ids.c.platform_id).where(
                    platform_ids.c.destination == self._destination, platform_ids.c.member_key.in_(chunk))
                out.update({k: v for k, v in conn.execute(q)})
        return out

    def forget(self, member_keys: Sequence[str]) -> None:
        """Drop the cached ids of ``member_keys``: the next call resolves them from their identifiers again
        (a profile edited on the platform no longer holds what we sent)."""
        with self._ledger.begin() as conn:
            for start in range(0, len(member_keys), 900):
                conn.execute(platform_ids.delete().where(platform_ids.c.destination == self._destination,
                                                         platform_ids.c.member_key.in_(list(member_keys[start:start + 900]))))

    def put_many(self, ids: dict[str, str]) -> None:
        if not ids:
            return
        now = time.time()
        with self._ledger.begin() as conn:
            keys = list(ids)
            for start in range(0, len(keys), 900):
                conn.execute(platform_ids.delete().where(platform_ids.c.destination == self._destination,
                                                         platform_ids.c.member_key.in_(keys[start:start + 900])))
            conn.execute(platform_ids.insert(), [dict(destination=self._destination, member_key=k, platform_id=v, updated_at=now)
                                                 for k, v in ids.items()])


class PlatformJobs:
    """Jobs a platform runs after we send (Google Customer Match); needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def record_jobs(self, destination: str, sync: str, jobs: Sequence[str]) -> None:
        now = time.time()
        with self.begin() as conn:
            for job in jobs:
                if conn.execute(sa.select(platform_jobs.c.job).where(platform_jobs.c.job == job)).first() is None:
                    conn.execute(platform_jobs.insert().values(job=job, destination=destination, sync=sync, created_at=now,
                                                               status="SUBMITTED", final=False, updated_at=now))

    def open_jobs(self) -> dict[str, list[str]]:
        """destination -> jobs not final yet."""
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for job, destination in conn.execute(sa.select(platform_jobs.c.job, platform_jobs.c.destination).where(
                    platform_jobs.c.final.is_(False))):
                out.setdefault(destination, []).append(job)
        return out

    def update_job(self, job: str, *, status: str, failure_reason: str | None, match_rate_range: str | None, final: bool) -> None:
        with self.begin() as conn:
            conn.execute(platform_jobs.update().where(platform_jobs.c.job == job).values(
                status=status, failure_reason=failure_reason, match_rate_range=match_rate_range, final=final,
                updated_at=time.time(), poll_error=None))

    def note_unanswered(self, jobs: Sequence[str], reason: str) -> None:
        """The last poll of ``jobs`` got no answer, for ``reason`` (the platform's error, scrubbed by the caller)."""
        with self.begin() as conn:
            conn.execute(platform_jobs.update().where(platform_jobs.c.job.in_(list(jobs))).values(poll_error=reason[:256]))

    def jobs(self, limit: int = 50) -> list[dict]:
        with self.engine.connect() as conn:
            q = sa.select(platform_jobs).order_by(platform_jobs.c.created_at.desc()).limit(limit)
            return [dict(row._mapping) for row in conn.execute(q)]
