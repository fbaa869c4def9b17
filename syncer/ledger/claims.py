"""Claims on texts: the one record that decides which process may send a member's text, and what became of it.

Mixed into ``syncer.ledger.store.Ledger`` like ``LinkRecords``. A text that cannot be taken back (an SMS)
is claimed just before its API call and settled right after; the claim is a row of ``message_claims``
keyed by (sync, member_key), so there is at most one per member and sync:

- ``claim_message`` is a conditional insert (``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on SQLite and
  Postgres): the row it returns (or not) says whether this process won. (Not ``rowcount``: SQLAlchemy over
  psycopg reports -1 for a Core insert.) A process that loses is told what the row holds and whether
  the member is held, read by fresh statements after the insert, so a claim settled ``sent`` is always seen
  with the held row its sender committed before settling it.
- ``take_claim`` takes over an existing row (released, left by a dead process, or a text of an earlier
  entry) by compare-and-set on the row as read (``attempt``, holder and state): of several processes
  taking the same row, one wins.
- ``settle_claim`` records the outcome (``sent`` with the platform's message id, ``not_sent``, ``unknown``),
  again only while the row is still the caller's.

States: ``claimed`` (a send is in flight, or its holder died during it), ``sent``, ``not_sent`` (certainly
not sent: free to claim again), ``unknown`` (the send may have gone out: only the platform's own log can
tell). What to make of a row a process lost to is ``syncer.delivery.at_most_once``'s business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from syncer.ledger.tables import held, message_claims

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["ClaimAnswer", "ClaimRecords", "MessageClaim"]

CLAIMED, SENT, NOT_SENT, UNKNOWN = "claimed", "sent", "not_sent", "unknown"


@dataclass(frozen=True)
class MessageClaim:
    """One row of ``message_claims``, as read."""

    sync: str
    member_key: str
    raw_fp: str
    identifiers: Mapping[str, str]
    state: str
    attempt: int
    claimed_by: str
    claimed_at: float
    since: float
    message_id: str | None = None


@dataclass(frozen=True)
class ClaimAnswer:
    """What ``claim_message`` found: ``won`` with the caller's new claim, or the row another process holds
    and whether the member is held (read after the row, so a ``sent`` row comes with its held row)."""

    won: bool
    claim: MessageClaim
    held: bool = False


class ClaimRecords:
    """Claims on texts; needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def claim_message(self, sync: str, member_key: str, *, raw_fp: str, identifiers: Mapping[str, str],
                      claimed_by: str, now: float | None = None) -> ClaimAnswer:
        """Claim the text of ``member_key`` for ``claimed_by``: won when no row existed."""
        now = time.time() if now is None else now
        values = dict(sync=sync, member_key=member_key, raw_fp=raw_fp, identifiers=json.dumps(dict(identifiers), sort_keys=True),
                      state=CLAIMED, attempt=1, claimed_by=claimed_by[:256], claimed_at=now, since=now, message_id=None, at=now)
        with self.begin() as conn:  # RETURNING names the row inserted: none when another process holds it
            inserted = _insert(conn).values(**values).on_conflict_do_nothing().returning(message_claims.c.member_key)
            won = conn.execute(inserted).first() is not None
        if won:
            return ClaimAnswer(True, _claim(values))
        with self.engine.connect() as conn:  # fresh statements: they see every commit made before them
            row = conn.execute(sa.select(message_claims).where(*_key(sync, member_key))).mappings().first()
            is_held = conn.execute(sa.select(held.c.member_key).where(
                held.c.sync == sync, held.c.member_key == member_key)).first() is not None
        if row is None:  # released rows are never deleted, so only a cleared ledger gets here: try again
            return self.claim_message(sync, member_key, raw_fp=raw_fp, identifiers=identifiers, claimed_by=claimed_by, now=now)
        return ClaimAnswer(False, _claim(row), is_held)

    def take_claim(self, claim: MessageClaim, *, claimed_by: str, raw_fp: str, identifiers: Mapping[str, str],
                   keep_since: bool, now: float | None = None) -> MessageClaim | None:
        """Take ``claim`` over as it was read; None when another process changed it first. ``keep_since``
        keeps the moment its text may have gone out (a send left ambiguous), else it starts now."""
        now = time.time() if now is None else now
        values = dict(raw_fp=raw_fp, identifiers=json.dumps(dict(identifiers), sort_keys=True), state=CLAIMED,
                      attempt=claim.attempt + 1, claimed_by=claimed_by[:256], claimed_at=now,
                      since=claim.since if keep_since else now, message_id=None, at=now)
        with self.begin() as conn:
            taken = conn.execute(message_claims.update().where(*_as_read(claim)).values(**values)).rowcount
        if taken != 1:
            return None
        return _claim(dict(values, sync=claim.sync, member_key=claim.member_key))

    def settle_claim(self, claim: MessageClaim, state: str, *, message_id: str | None = None,
                     now: float | None = None) -> bool:
        """Record what became of ``claim``'s text; False when the row is no longer this claim."""
        if state not in (CLAIMED, SENT, NOT_SENT, UNKNOWN):
            raise ValueError(f"unknown claim state {state!r}")
        now = time.time() if now is None else now
        with self.begin() as conn:
            return conn.execute(message_claims.update().where(
                *_key(claim.sync, claim.member_key), message_claims.c.attempt == claim.attempt,
                message_claims.c.claimed_by == claim.claimed_by).values(state=state, message_id=message_id, at=now)).rowcount == 1

    def unsettled_held_claims(self, sync: str) -> list[MessageClaim]:
        """Claims still ``claimed`` or ``unknown`` whose member is held: their sender committed the text and
        stopped before settling the claim (or is about to settle it)."""
        joined = sa.and_(held.c.sync == message_claims.c.sync, held.c.member_key == message_claims.c.member_key)
        query = sa.select(message_claims).join(held, joined).where(
            message_claims.c.sync == sync, message_claims.c.state.in_((CLAIMED, UNKNOWN)))
        with self.engine.connect() as conn:
            return [_claim(row) for row in conn.execute(query).mappings()]

    def message_claims(self, sync: str) -> dict[str, MessageClaim]:
        """Every claim of ``sync`` by member key (``syncer status`` and tests)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(message_claims).where(message_claims.c.sync == sync)).mappings().all()
        return {row["member_key"]: _claim(row) for row in rows}


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # the conditional insert is what makes a claim safe: no other store may pretend to it
        raise RuntimeError(f"message claims need SQLite or Postgres, not {conn.dialect.name}")
    return insert(message_claims)


def _key(sync: str, member_key: str) -> tuple[sa.ColumnElement[bool], ...]:
    return message_claims.c.sync == sync, message_claims.c.member_key == member_key


def _as_read(claim: MessageClaim) -> tuple[sa.ColumnElement[bool], ...]:
    """The row still exactly as ``claim`` was read: any take-over or settling since makes it differ."""
    return (*_key(claim.sync, claim.member_key), message_claims.c.attempt == claim.attempt,
            message_claims.c.claimed_by == claim.claimed_by, message_claims.c.state == claim.state)


def _claim(row: Mapping) -> MessageClaim:
    identifiers = row["identifiers"]
    return MessageClaim(
        sync=row["sync"], member_key=row["member_key"], raw_fp=row["raw_fp"],
        identifiers=json.loads(identifiers) if isinstance(identifiers, str) else dict(identifiers),
        state=row["state"], attempt=int(row["attempt"]), claimed_by=row["claimed_by"],
        claimed_at=float(row["claimed_at"]), since=float(row["since"]), message_id=row.get("message_id"))
