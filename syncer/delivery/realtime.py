"""Real-time segments: an event, or an ``expires_at`` that passes, changes audience membership within a second.

One worker (``Follower``) serves `syncer follow` and the Dagster sensor. Each ``step``:

1. runs the fast path's conversions (``syncer.delivery.fast_path.Suppressor``), when the project has them;
2. reads new events (the `events:` table, and events posted to `syncer serve`) and the members whose
   ``expires_at`` just passed (``syncer.delivery.realtime_sources``), and records each touched member in the
   ledger (``stream_pending``) before moving the cursors, so a crash loses none;
3. refreshes every pending member, segment by segment: the segment's own SQL restricted to those members
   (``Engine.plan_members``: warehouses push the key filter down), diffed against what each audience holds,
   and sent through the batch run's own path (``Engine._send_plan``: identity rules, consent, suppressions,
   trigger texts claimed once, every batch recorded) under the sync's lease. A sync a batch run holds, a
   warehouse or platform that refuses for now: the members stay pending and are tried again next step.

Stream gates (``StreamGateConfig``) count what the real-time path sent for a sync over a sliding window; a
refresh that would pass a limit is not sent, and the sync's stream is held (``stream_holds``) with the
reason, shown by `syncer status` and Dagster, until an operator releases it (`syncer follow --release`).
The batch run stays the safety net: it plans the whole segment with its own gates, and agrees with
what the stream sent, since both use one fingerprint, one ledger and one clock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import sqlalchemy as sa

from syncer.delivery.engine import Engine
from syncer.delivery.realtime_sources import EVENTS_CURSOR, EXPIRY_CURSOR, POSTED_CURSOR, EventReader, ExpiryReader
from syncer.errors import ConfigError, SyncError, TransientError, first_line
from syncer.ledger.realtime import StreamBook, StreamChange, Touched
from syncer.ledger.suppressions import percentiles
from syncer.planning.plan import SyncPlan
from syncer.project.config import StreamGateConfig
from syncer.project.project import Project

log = logging.getLogger(__name__)
_MIN_DEFAULT_LIMIT = 100  # a default limit never below this: a small audience still takes a burst of events


@dataclass
class StreamResult:
    """What one refresh of one sync did: the members added and removed, and each one's event-to-ack seconds."""

    sync: str
    segment: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    status: str = "ok"  # ok | pending | held | failed
    reason: str | None = None


class Follower:
    """Conversions, events and expiries, followed by one worker (`syncer follow`, the Dagster sensor)."""

    def __init__(self, project: Project, *, engine: Engine | None = None, label: str = "syncer follow") -> None:
        self.project = project
        self.engine = engine or Engine(project)
        self.engine.lease_label = self.engine.lease_label or label
        self.ledger = self.engine.ledger
        self.book = StreamBook(self.ledger)
        self.events = EventReader(project, self.ledger)
        self.expiries = ExpiryReader(project, self.ledger)
        self.suppressor = None
        if project.config.conversions is not None:
            from syncer.delivery.fast_path import Suppressor

            self.suppressor = Suppressor(project, engine=self.engine)
        self._run_id: int | None = None
        self._sync_runs: dict[str, int] = {}
        self._totals: dict[str, dict[str, int]] = {}
        self._seconds: dict[str, list[float]] = {}
        self._retry_at = 0.0
        self._sizes: dict[str, tuple[float, int]] = {}  # sync -> (when counted, audience size) for default limits
        self._refused: dict[str, int] = {}  # why a source could not be read -> how many times

    # --- the loop ---------------------------------------------------------------------------

    def step(self) -> tuple[list, list[StreamResult]]:
        """One pass: (the fast path's suppression results, the real-time changes made)."""
        suppressed = self.suppressor.step() if self.suppressor is not None else []
        self._read_sources()
        changes = self._refresh_pending()
        if self._read_expiries():  # after the events: asking the warehouse who expired costs a segment query
            changes += self._refresh_pending()
        return suppressed, changes

    def follow(self, *, until: Callable[[], bool], on_change: Callable[[StreamResult], None] | None = None,
               on_suppression: Callable[[object], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        interval = min([s.poll_interval_ms for s in (self.project.config.events, self.project.config.conversions) if s] or [100]) / 1000
        while not until():
            suppressed, changes = self.step()
            for result in suppressed:
                if on_suppression and result.outcomes:
                    on_suppression(result)
            for change in changes:
                if on_change:
                    on_change(change)
            sleep(interval)

    def close(self) -> None:
        if self._run_id is not None:
            for sync, sync_run in self._sync_runs.items():
                totals, latency = self._totals.get(sync, {}), percentiles(self._seconds.get(sync, []))
                # short enough for a history cell: event to acknowledgement percentiles
                reason = (f"real time: p50 {latency['p50']:.2f}s, p95 {latency['p95']:.2f}s, p99 {latency['p99']:.2f}s"
                          f" ({totals.get('added', 0)} added, {totals.get('removed', 0)} removed)" if latency else "real time: nothing sent")
                self.ledger.finish_sync_run(sync_run, status="ok", reason=reason, added=totals.get("added", 0),
                                            removed=totals.get("removed", 0), requests=totals.get("requests", 0),
                                            details={"event_to_ack": latency})
            self.ledger.finish_run(self._run_id, "ok")
            self._run_id = None
        if self.suppressor is not None:
            self.suppressor.close()  # closes the shared engine too
        else:
            self.engine.close()
        self.events.close()
        self.expiries.close()

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------------------

    def _read_sources(self) -> None:
        """Record the members new events touch (the events table, posted events), then move the cursors past them."""
        self._read([(EVENTS_CURSOR, self.events.table), (POSTED_CURSOR, self.events.posted)])

    def _read_expiries(self) -> int:
        now = self.engine.clock()
        return self._read([(EXPIRY_CURSOR, lambda: self.expiries.due(now))])

    def _read(self, reads: list) -> int:
        """Record what each source found, then move its cursor; returns how many members were touched."""
        now, found = self.engine.clock(), 0
        for cursor_name, read in reads:
            try:
                touched, cursor = read()
            except (sa.exc.OperationalError, duckdb.Error) as exc:  # a DuckDB file being written: read next step
                why = first_line(exc)
                # a lock passes; the same refusal again (a table gone) is said once as a warning, then quietly
                self._refused[why] = seen = self._refused.get(why, 0) + 1
                log.log({1: logging.INFO, 2: logging.WARNING}.get(seen, logging.DEBUG), "real time: %s not read: %s",
                        cursor_name, why)
                continue
            self.book.pend(touched, now)
            found += len(touched)
            if cursor is not None:
                self.ledger.set_cursor(cursor_name, cursor)
        return found

    # --- refreshing -------------------------------------------------------------------------

    def _refresh_pending(self) -> list[StreamResult]:
        if self.engine.clock() < self._retry_at:
            return []
        by_segment: dict[str, list[Touched]] = {}
        for touched in self.book.pending():
            by_segment.setdefault(touched.segment, []).append(touched)
        results: list[StreamResult] = []
        for segment, touched in sorted(by_segment.items()):
            if segment not in self.project.segments:
                self.book.done(segment, [t.member_key for t in touched])  # the segment's file was removed
                continue
            results += self._refresh(segment, touched)
        return results

    def _refresh(self, segment: str, touched: list[Touched]) -> list[StreamResult]:
        """Refresh some members of one segment in every sync of it; done when no sync left them waiting."""
        keys = sorted({t.member_key for t in touched})
        event_at = {t.member_key: t.event_at for t in touched}
        causes = {t.member_key: t.cause for t in touched}
        holds = self.book.holds()
        names = sorted(n for n, s in self.project.syncs.items() if s.segment == segment and n not in holds)
        if not names:
            self.book.done(segment, keys)
            return []
        results = []
        with self.engine.leases.hold(names, self.engine.lease_label) as holding:
            unsettled = {n for n, report in self.engine.settle(list(holding.held)).items() if report.status != "ok"}
            free = [n for n in names if n in holding.held and n not in unsettled]
            if not free:
                return [StreamResult(n, segment, status="pending", reason="busy") for n in names]
            try:
                plans = self.engine.plan_members(segment, keys, free)
            except (ConfigError, duckdb.Error, sa.exc.SQLAlchemyError) as exc:
                # the warehouse cannot answer now (a DuckDB file being written, a query that fails): try again
                # shortly, the members stay pending; a lasting failure shows in the log and in status
                self._retry_at = self.engine.clock() + 0.2
                log.warning("real time: segment %s not refreshed: %s", segment, first_line(exc))
                return [StreamResult(n, segment, status="pending", reason=first_line(exc)) for n in names]
            for plan in plans:
                results.append(self._send(plan, event_at, causes))
        if all(r.status in ("ok", "held") for r in results) and len(results) == len(names):
            self.book.done(segment, keys)
        return results

    def _send(self, plan: SyncPlan, event_at: dict[str, float], causes: dict[str, str]) -> StreamResult:
        result = StreamResult(plan.sync, plan.segment)
        if not (plan.adds or plan.removes):
            return result
        tripped = self._tripped(plan)
        if tripped:
            self.book.hold(plan.sync, tripped, self.engine.clock())
            log.warning("real time: stream of %s held: %s", plan.sync, tripped)
            result.status, result.reason = "held", tripped
            return result
        if self.engine.waiting(plan.destination):
            result.status, result.reason = "pending", "the platform asked us to wait"
            return result
        try:
            report = self.engine._send_plan(plan, self._sync_run(plan.sync), on_batch=None)
        except TransientError as exc:
            result.status, result.reason = "pending", exc.message
            return result
        except SyncError as exc:
            result.status, result.reason = "failed", exc.message
            log.warning("real time: sync %s failed: %s", plan.sync, exc.message)
            return result
        self._acknowledged(plan, report, result, event_at, causes)
        if report.status != "ok":
            result.status, result.reason = "pending", report.error
        return result

    def _acknowledged(self, plan: SyncPlan, report, result: StreamResult, event_at: dict[str, float], causes: dict[str, str]) -> None:
        """Record what the platform acknowledged: adds now held, removes no longer held (the ledger says so)."""
        acked_at = self.engine.clock()  # the wall clock in a deployment; a test's fake clock agrees with its events
        adds, removes = [r.member_key for r in plan.adds], [r.member_key for r in plan.removes]
        held = set(self.ledger.held_rows(plan.sync, adds + removes))
        result.added = [k for k in adds if k in held]
        result.removed = [k for k in removes if k not in held]
        changes = [StreamChange(plan.sync, k, op, causes.get(k, "event"), event_at[k], acked_at)
                   for op, keys in (("add", result.added), ("remove", result.removed)) for k in keys if k in event_at]
        self.book.record(changes)
        for change in changes:
            result.seconds[change.member_key] = round(max(0.0, change.acked_at - change.event_at), 3)
            self._seconds.setdefault(plan.sync, []).append(result.seconds[change.member_key])
        totals = self._totals.setdefault(plan.sync, {})
        for name, value in (("added", len(result.added)), ("removed", len(result.removed)), ("requests", report.requests)):
            totals[name] = totals.get(name, 0) + value

    # --- stream gates -----------------------------------------------------------------------

    def limits(self, sync_name: str) -> tuple[int | None, int | None, float]:
        """(most adds, most removes, window seconds) for the sync's stream: its `stream_gates`, defaulting to
        its gates' max_removals, else max_removal_pct of the audience (at least 100)."""
        sync = self.project.syncs[sync_name]
        config = sync.stream_gates or StreamGateConfig()
        gates = self.project.gates_for(sync_name)
        default = gates.max_removals
        if default is None and gates.max_removal_pct is not None:
            default = max(_MIN_DEFAULT_LIMIT, math.ceil(gates.max_removal_pct / 100 * self._audience_size(sync_name)))
        adds = config.max_adds if config.max_adds is not None else default
        removes = config.max_removes if config.max_removes is not None else default
        return adds, removes, config.window_minutes * 60

    def _tripped(self, plan: SyncPlan) -> str | None:
        max_adds, max_removes, window = self.limits(plan.sync)
        sent = self.book.sent_since(plan.sync, self.engine.clock() - window)
        minutes = f"{window / 60:g} min"
        if max_adds is not None and sent["add"] + len(plan.adds) > max_adds:
            return (f"stream gate: {sent['add'] + len(plan.adds):,} adds in {minutes} would pass max_adds {max_adds:,}"
                    f" (an event feed gone wrong?); nothing more is sent in real time for this sync until"
                    f" `syncer follow --release {plan.sync}`; its batch runs go on")
        if max_removes is not None and sent["remove"] + len(plan.removes) > max_removes:
            return (f"stream gate: {sent['remove'] + len(plan.removes):,} removes in {minutes} would pass max_removes"
                    f" {max_removes:,}; nothing more is sent in real time for this sync until"
                    f" `syncer follow --release {plan.sync}`; its batch runs go on")
        return None

    def _audience_size(self, sync: str) -> int:
        when, size = self._sizes.get(sync, (-math.inf, 0))
        if time.monotonic() - when > 60:  # a count of a large audience is not free: once a minute
            size = self.ledger.held_count(sync)
            self._sizes[sync] = (time.monotonic(), size)
        return size

    def _sync_run(self, sync: str) -> int:
        if self._run_id is None:
            self._run_id = self.ledger.start_run("follow")
        if sync not in self._sync_runs:
            self._sync_runs[sync] = self.ledger.start_sync_run(self._run_id, sync, plan_hash=None, members=None)
        return self._sync_runs[sync]
