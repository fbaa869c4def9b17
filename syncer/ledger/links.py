"""Members a platform sees as one person, and the waits a platform asked for: two records every path reads.

Mixed into ``syncer.ledger.store.Ledger`` like ``SuppressionRecords``:

- ``shared_links``: members of a sync linked by a shared identifier value. Meta and Google remove every
  person any identifier of a remove row matches, and Klaviyo keeps one profile per email or phone, so
  removing one of two members who share a phone removes both. The planner
  (``syncer.planning.shared``) finds the links over the whole audience and stores them here; the fast
  path, which removes one member at a time, reads them.
- ``destination_waits``: "come back in 5 minutes" outlives the run that heard it. Every path (batch
  apply, the fast path, audience counts, job polling) asks ``wait_for`` before calling the platform.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from syncer.ledger.tables import destination_waits, held, shared_links

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


class LinkRecords:
    """Shared-identifier links and platform waits; needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def linked_members(self, sync: str) -> set[str]:
        """Every member of ``sync`` stored as linked to another."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(shared_links.c.member_key).where(shared_links.c.sync == sync)).scalars())

    def update_links(self, sync: str, stale: Iterable[str], links: Mapping[str, tuple[str, str]]) -> None:
        """Drop the stored links of ``stale`` members, then store ``links``: member_key -> (link, kinds
        shared), ``link`` naming the group (its smallest member key). The planner passes every stored member
        whose group its changes may touch, and the groups as they are now."""
        drop = sorted(set(stale) | set(links))
        with self.begin() as conn:
            for start in range(0, len(drop), 900):
                conn.execute(shared_links.delete().where(shared_links.c.sync == sync,
                                                         shared_links.c.member_key.in_(drop[start:start + 900])))
            if links:
                conn.execute(shared_links.insert(), [dict(sync=sync, member_key=k, link=link, kinds=kinds)
                                                     for k, (link, kinds) in links.items()])

    def linked_stayers(self, sync: str, member_key: str, leaving: Sequence[str] = ()) -> tuple[str, list[str]] | None:
        """(kinds shared, other members still held) of ``member_key``'s linked group, leaving out those in
        ``leaving``; None when it is linked to nobody held."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(shared_links.c.link, shared_links.c.kinds).where(
                shared_links.c.sync == sync, shared_links.c.member_key == member_key)).first()
            if row is None:
                return None
            others = conn.execute(sa.select(shared_links.c.member_key).join(
                held, sa.and_(held.c.sync == shared_links.c.sync, held.c.member_key == shared_links.c.member_key)).where(
                shared_links.c.sync == sync, shared_links.c.link == row[0], shared_links.c.member_key != member_key)).scalars().all()
        staying = sorted(set(others) - set(leaving))
        return (row[1], staying) if staying else None

    def set_wait(self, destination: str, seconds: float, reason: str, *, now: float | None = None) -> float:
        """Remember that ``destination`` asked us to wait ``seconds``; a longer wait already stored stands.
        Returns the moment calls may resume."""
        now = time.time() if now is None else now
        until = now + max(seconds, 0.0)
        with self.begin() as conn:
            stored = conn.execute(sa.select(destination_waits.c.not_before).where(
                destination_waits.c.destination == destination)).scalar()
            if stored is not None and stored >= until:
                return stored
            conn.execute(destination_waits.delete().where(destination_waits.c.destination == destination))
            conn.execute(destination_waits.insert().values(destination=destination, not_before=until,
                                                           reason=reason[:256], set_at=now))
        return until

    def wait_for(self, destination: str, *, now: float | None = None) -> tuple[float, str] | None:
        """(not before, reason) while ``destination``'s wait lasts, else None."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(destination_waits.c.not_before, destination_waits.c.reason).where(
                destination_waits.c.destination == destination)).first()
        return (row[0], row[1]) if row is not None and row[0] > now else None

    def waits(self, *, now: float | None = None) -> dict[str, tuple[float, str]]:
        """Every destination still waiting: name -> (not before, reason)."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(destination_waits.c.destination, destination_waits.c.not_before,
                                          destination_waits.c.reason).where(destination_waits.c.not_before > now)).all()
        return {d: (t, r) for d, t, r in rows}
