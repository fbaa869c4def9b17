"""Leases: one process at a time sends for a sync, on SQLite and Postgres alike.

Mixed into ``syncer.ledger.store.Ledger`` like ``LinkRecords``. A lease is the one row of ``sync_leases`` for
a sync: who holds it (what runs, its run id, host and process), since when, and until when. Every change is
one conditional statement whose row count says whether the caller won; a read never decides alone:

- ``acquire_lease``: ``INSERT ... ON CONFLICT DO NOTHING``. When a row is there, it is taken over only once
  it expired, or at once when its holder ran on this machine and its process is gone (``kill -9``), by
  ``take_over_lease``: an ``UPDATE`` comparing the token and the renewal count it read, so of several
  processes taking one lease over one wins, and a holder that renews in between keeps it.
- ``renew_lease``: moves ``expires_at`` on while the token is still the caller's. None means another
  process took the lease over (this one stalled past the TTL): it must stop sending for that sync.
- ``release_lease``: deletes the row, only the caller's.

Who is alive: a holder on this machine (same host name and pid namespace) is judged by its process: pid
and start time, so a reused pid is not taken for it. Gone, its lease is free at once (a recovery run right
after a crash proceeds). Still running with its lease expired (stopped with Ctrl-Z, hung), it keeps it:
the busy message names its pid. A holder elsewhere is judged by ``expires_at`` alone.

``LeaseKeeper`` holds an engine's leases: it renews them from a background thread every ``ttl / 4`` (a
platform's two-minute wait or a long plan does not let one lapse), and the engine renews after each batch
it commits, before sending the next: a lease lost meanwhile (``LeaseLostError``) stops the sync there, so
at most the batch in flight when another process took over overlaps it. A ``kill -9``-ed holder stops
renewing, so its lease expires after the TTL: ``DEFAULT_TTL_S`` (60 s), ``lease_ttl_seconds`` in syncer.yml,
``$SYNCER_LEASE_TTL_S`` (overriding it), or ``Engine(lease_ttl=...)``. Times are epoch seconds from the caller's clock (``Engine.clock``; a fake one in
tests), so every process sharing a ledger needs a clock within a few seconds of the others (NTP).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

import sqlalchemy as sa

from syncer.errors import Fault, SyncError
from syncer.ledger.processes import process_alive, this_process
from syncer.ledger.tables import sync_leases

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["DEFAULT_TTL_S", "Holder", "Holding", "Lease", "LeaseAnswer", "LeaseKeeper", "LeaseLostError",
           "LeaseRecords", "process_running", "ttl_from_env"]

DEFAULT_TTL_S = 60.0
TTL_ENV = "SYNCER_LEASE_TTL_S"
log = logging.getLogger(__name__)


class LeaseLostError(SyncError):
    """Another process took this sync's lease over (this one stalled past the TTL): stop sending for it; the
    process that holds the lease now carries on, and the next run plans from what both committed."""

    fault: ClassVar[Fault] = "transient"


@dataclass(frozen=True)
class Holder:
    """Who takes a lease: ``label`` says what runs ("syncer run", "Dagster run 1a2b3c4d")."""

    label: str
    host: str
    process: str  # pid namespace/pid/start time
    run_id: int | None = None

    @classmethod
    def this_process(cls, label: str, run_id: int | None = None) -> Holder:
        return cls(label, *this_process(), run_id)


@dataclass(frozen=True)
class Lease:
    """One row of ``sync_leases``, as read or written."""

    sync: str
    token: str
    beat: int
    label: str
    host: str
    process: str
    run_id: int | None
    acquired_at: float
    renewed_at: float
    expires_at: float

    @property
    def pid(self) -> str:
        parts = self.process.split("/")
        return parts[1] if len(parts) > 1 else "?"

    def holder(self) -> str:
        """"syncer run (run 12, pid 4242 on web-1)"."""
        run = f"run {self.run_id}, " if self.run_id is not None else ""
        return f"{self.label} ({run}pid {self.pid} on {self.host})"

    def busy_reason(self, now: float, alive: bool | None = None,
                    then: str = "skipped, nothing was sent for it: that run applies it, run again once it ends") -> str:
        """Why a sync was skipped: who holds it, since when, whether its lease is still renewed, then ``then``."""
        since = datetime.fromtimestamp(self.acquired_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.expires_at > now:
            state = f"lease renewed {max(now - self.renewed_at, 0):.0f} s ago"
        else:
            state = (f"lease expired {now - self.expires_at:.0f} s ago, but pid {self.pid} still runs on this machine:"
                     " if it is stuck, stop it" if alive else f"lease expired {now - self.expires_at:.0f} s ago")
        return f"{self.holder()} holds this sync since {since} ({state}); {then}"


@dataclass(frozen=True)
class LeaseAnswer:
    """What ``acquire_lease`` found: ``won`` with the caller's lease (``took_over`` the expired or abandoned
    one it replaced), or the lease another process holds."""

    won: bool
    lease: Lease
    took_over: Lease | None = None


def ttl_from_env(default: float = DEFAULT_TTL_S) -> float:
    """The lease TTL: ``$SYNCER_LEASE_TTL_S`` when set to a positive number, else ``default``."""
    try:
        value = float(os.environ.get(TTL_ENV, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class LeaseRecords:
    """Leases per sync; needs ``engine`` and ``begin`` from ``Ledger``."""

    engine: Engine

    if TYPE_CHECKING:
        def begin(self) -> AbstractContextManager[Connection]: ...

    def acquire_lease(self, sync: str, holder: Holder, *, ttl: float, now: float | None = None,
                      alive: Callable[[Lease], bool | None] | None = None) -> LeaseAnswer:
        """Take the lease of ``sync`` for ``holder`` until ``now + ttl``: won when nobody held it, or when the
        holder's lease expired or its process is gone (``alive``, default ``process_running``)."""
        now = time.time() if now is None else now
        alive = alive or process_running
        mine = _new(sync, holder, ttl, now)
        seen = None
        for _ in range(8):  # each pass loses only to another process's committed change
            with self.begin() as conn:
                insert = _insert(conn).values(**_values(mine)).on_conflict_do_nothing()
                # preserve_rowcount: SQLAlchemy keeps an INSERT's row count only when asked (psycopg gives -1)
                if conn.execute(insert.execution_options(preserve_rowcount=True)).rowcount == 1:
                    return LeaseAnswer(True, mine)
            seen = self.lease_of(sync)
            if seen is None:  # released between the two statements
                continue
            running = alive(seen)
            if running is True or (running is None and seen.expires_at > now):
                return LeaseAnswer(False, seen)
            taken = self.take_over_lease(seen, holder, ttl=ttl, now=now)
            if taken is not None:
                log.info("took over the lease of %s from %s", sync, seen.holder())
                return LeaseAnswer(True, taken, took_over=seen)
        if seen is None:
            raise RuntimeError(f"the lease of {sync} kept changing hands; try again")
        return LeaseAnswer(False, seen)

    def take_over_lease(self, seen: Lease, holder: Holder, *, ttl: float, now: float | None = None) -> Lease | None:
        """Replace ``seen`` (as read) with ``holder``'s lease; None when it changed since: renewed, released or
        taken by another process first."""
        now = time.time() if now is None else now
        mine = _new(seen.sync, holder, ttl, now)
        values = {k: v for k, v in _values(mine).items() if k != "sync"}
        with self.begin() as conn:
            taken = conn.execute(sync_leases.update().where(
                sync_leases.c.sync == seen.sync, sync_leases.c.token == seen.token,
                sync_leases.c.beat == seen.beat).values(**values)).rowcount
        return mine if taken == 1 else None

    def renew_lease(self, lease: Lease, *, ttl: float, now: float | None = None,
                    run_id: int | None = None) -> Lease | None:
        """``lease`` renewed until ``now + ttl`` (and given ``run_id``); None when it is no longer the caller's."""
        now = time.time() if now is None else now
        values: dict = dict(renewed_at=now, expires_at=now + ttl, beat=sync_leases.c.beat + 1)
        if run_id is not None:
            values["run_id"] = run_id
        with self.begin() as conn:
            renewed = conn.execute(sync_leases.update().where(
                sync_leases.c.sync == lease.sync, sync_leases.c.token == lease.token).values(**values)).rowcount
        if renewed != 1:
            return None
        return replace(lease, renewed_at=now, expires_at=now + ttl, beat=lease.beat + 1,
                       run_id=run_id if run_id is not None else lease.run_id)

    def release_lease(self, lease: Lease) -> bool:
        """Give ``lease`` up; False when it was no longer the caller's."""
        with self.begin() as conn:
            return conn.execute(sync_leases.delete().where(
                sync_leases.c.sync == lease.sync, sync_leases.c.token == lease.token)).rowcount == 1

    def lease_of(self, sync: str) -> Lease | None:
        """The lease of ``sync`` as stored now (expired or not), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sync_leases).where(sync_leases.c.sync == sync)).mappings().first()
        return _lease(row) if row is not None else None

    def leases(self) -> list[Lease]:
        """Every lease stored, by sync (``syncer status`` and tests)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(sync_leases).order_by(sync_leases.c.sync)).mappings().all()
        return [_lease(row) for row in rows]


@dataclass
class Holding:
    """What ``LeaseKeeper.hold`` got: the leases held, and for each busy sync the lease another holds."""

    held: dict[str, Lease] = field(default_factory=dict)
    busy: dict[str, Lease] = field(default_factory=dict)


class LeaseKeeper:
    """The leases one engine holds: taken, renewed in the background and on demand, released.

    Args:
        ledger: a ``Ledger`` (anything with ``LeaseRecords``).
        ttl: seconds a lease lasts without renewal; renewed every ``ttl / 4``.
        clock: what "now" is (``Engine.clock``).
        alive: how a holder's process is judged (``process_running``); tests stand in for another machine.
    """

    def __init__(self, ledger: LeaseRecords, *, ttl: float, clock: Callable[[], float],
                 alive: Callable[[Lease], bool | None] | None = None) -> None:
        self.ledger, self.ttl, self.clock = ledger, ttl, clock
        self.alive = alive or process_running
        self.label = "syncer"
        self._held: dict[str, Lease] = {}
        self._lost: set[str] = set()  # syncs the background renewal found taken over
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, sync: str, label: str | None = None) -> LeaseAnswer:
        """Take ``sync``'s lease unless this keeper holds it already; never waits."""
        with self._lock:
            if sync in self._held:
                return LeaseAnswer(True, self._held[sync])
        answer = self.ledger.acquire_lease(sync, Holder.this_process(label or self.label), ttl=self.ttl,
                                           now=self.clock(), alive=self.alive)
        if answer.won:
            with self._lock:
                self._held[sync] = answer.lease
                self._lost.discard(sync)
            self._start()
        return answer

    @contextmanager
    def hold(self, syncs: Iterable[str], label: str, *, wait: float = 0.0,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[Holding]:
        """Take the leases of ``syncs``, trying busy ones again every ``ttl / 4`` for up to ``wait`` seconds; on
        exit release those taken here (a lease the keeper held before stays)."""
        holding = Holding()
        before = set(self._held)
        poll = max(self.ttl / 4, 0.5)
        try:
            pending = list(dict.fromkeys(syncs))
            for attempt in range(1 + math.ceil(max(wait, 0.0) / poll)):
                if attempt:
                    sleep(poll)
                for sync in pending:
                    answer = self.take(sync, label)
                    (holding.busy if not answer.won else holding.held)[sync] = answer.lease
                    if answer.won:
                        holding.busy.pop(sync, None)
                pending = [s for s in pending if s in holding.busy]
                if not pending:
                    break
            yield holding
        finally:
            for sync in holding.held:
                if sync not in before:
                    self.release(sync)

    def busy_reason(self, lease: Lease, **then: str) -> str:
        """Why a sync another process holds is skipped, naming the holder (``Lease.busy_reason``)."""
        return lease.busy_reason(self.clock(), alive=self.alive(lease), **then)

    def note_run(self, run_id: int) -> None:
        """Write the holder's run id into every lease held (the busy message of another run names it)."""
        for sync in list(self._held):
            self.renew(sync, run_id=run_id)

    def renew(self, sync: str, *, run_id: int | None = None) -> None:
        """Renew ``sync``'s lease now; raises ``LeaseLostError`` when another process took it over."""
        with self._lock:
            lost = sync in self._lost
            self._lost.discard(sync)
            lease = self._held.get(sync)
        if not lost and lease is not None:
            renewed = self.ledger.renew_lease(lease, ttl=self.ttl, now=self.clock(), run_id=run_id)
            if renewed is not None:
                with self._lock:
                    if sync in self._held:
                        self._held[sync] = renewed
                return
        with self._lock:
            self._held.pop(sync, None)
        raise LeaseLostError(self._why_lost(sync))

    def release(self, sync: str) -> None:
        with self._lock:
            lease = self._held.pop(sync, None)
            self._lost.discard(sync)
        if lease is not None:
            self.ledger.release_lease(lease)

    def close(self) -> None:
        """Stop renewing and release every lease held."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        for sync in list(self._held):
            self.release(sync)
        self._stop.clear()

    def _why_lost(self, sync: str) -> str:
        now = self.ledger.lease_of(sync)
        taker = now.holder() if now is not None else "another process (which has released it since)"
        return (f"lost the lease of sync '{sync}' to {taker}: this run went longer than the lease TTL ({self.ttl:g} s)"
                " without renewing it (stopped or stalled), so it sends nothing more for this sync")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="syncer-lease-renewal", daemon=True)
                self._thread.start()

    def _beat(self) -> None:
        """Renew every held lease every ``ttl / 4`` until none is held (``take`` starts it again) or ``close``;
        a lost one is noted for ``renew`` to raise."""
        while not self._stop.wait(self.ttl / 4):
            with self._lock:
                held = dict(self._held)
                if not held:  # idle: end, so an engine nobody closes does not live on through this thread
                    self._thread = None
                    return
            for sync, lease in held.items():
                try:
                    renewed = self.ledger.renew_lease(lease, ttl=self.ttl, now=self.clock())
                except Exception:  # noqa: BLE001 - a ledger hiccup: the next beat or batch tries again
                    log.warning("could not renew the lease of %s", sync, exc_info=True)
                    continue
                with self._lock:
                    if self._held.get(sync) is not lease:
                        continue  # renewed or released by the engine meanwhile
                    if renewed is None:
                        self._held.pop(sync)
                        self._lost.add(sync)
                    else:
                        self._held[sync] = renewed


# --- who holds a lease -------------------------------------------------------------------------------


def process_running(lease: Lease) -> bool | None:
    """Whether ``lease``'s holder process still runs: True or False on this machine (same host name and pid
    namespace; pid and start time), None elsewhere, where only its expiry tells."""
    return process_alive(lease.host, lease.process)


# --- rows ----------------------------------------------------------------------------------------------


def _new(sync: str, holder: Holder, ttl: float, now: float) -> Lease:
    return Lease(sync=sync, token=uuid.uuid4().hex, beat=0, label=holder.label[:128], host=holder.host[:256],
                 process=holder.process[:128], run_id=holder.run_id, acquired_at=now, renewed_at=now,
                 expires_at=now + ttl)


def _values(lease: Lease) -> dict:
    return {name: getattr(lease, name) for name in Lease.__dataclass_fields__}


def _lease(row) -> Lease:
    return Lease(**{name: row[name] for name in Lease.__dataclass_fields__})


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # the conditional insert is what makes a lease safe: no other store may pretend to it
        raise RuntimeError(f"sync leases need SQLite or Postgres, not {conn.dialect.name}")
    return insert(sync_leases)
