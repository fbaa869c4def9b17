"""The fast path: a conversion suppresses the person from the segments its rule names, at once.

For each new row of the project's conversions table (read past a cursor kept in the ledger):

1. record a suppression in the ledger (member, segments, reason, expiry by TTL or until they leave),
   so the next batch plan cannot add them back even if the warehouse has not seen the conversion;
2. for every sync of those segments whose audience holds the member, send one remove and commit it
   to the ledger exactly as a batch run would (a Twilio trigger is cancelled: the plan skips them). The
   remove is made under the sync's lease (``syncer.ledger.leases``), taken for that one call: while a batch
   run holds it, the remove waits (``pending``) and that run removes the member itself after its next batch
   (``Engine`` re-reads suppressions), so a remove never races a batch of the same sync (an add in flight
   landing after the fast path found the member not held, or a commit undoing the other's);
3. record the outcome per (conversion, sync) with the time from conversion to acknowledgement.

Every step is idempotent: a re-delivered conversion finds its events recorded and sends nothing
twice. A destination that fails is retried (``pending`` events) until it acknowledges; the batch path
removes the member too, since suppressed members are never in a plan's audience.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from destinations.base import AudienceRef
from syncer.delivery.apply import ApplyReport, RetryPolicy, remember_wait, send_and_commit
from syncer.delivery.engine import Engine
from syncer.delivery.realtime_sources import open_source, read_after
from syncer.errors import ConfigError, SyncError, TransientError
from syncer.ledger.suppressions import percentiles
from syncer.project.project import Project

CURSOR = "conversions"
_ONE_ATTEMPT = RetryPolicy(attempts=1)  # a remove that fails now is retried by the follow loop, not by blocking it


@dataclass(frozen=True)
class Conversion:
    conversion_id: str
    member_key: str
    type: str
    converted_at: float  # epoch seconds, UTC


@dataclass
class SuppressionResult:
    conversion: Conversion
    segments: list[str]
    outcomes: dict[str, str] = field(default_factory=dict)  # sync -> removed | not_held | cancelled | pending | failed
    seconds: dict[str, float] = field(default_factory=dict)  # sync -> conversion to acknowledgement


class Suppressor:
    """Reads conversions and suppresses people; the sensor and `syncer suppress --follow` share it."""

    def __init__(self, project: Project, *, engine: Engine | None = None) -> None:
        if project.config.conversions is None:
            raise ConfigError("the project has no `conversions:` section in syncer.yml; the fast path needs one")
        self.project = project
        self.source = project.config.conversions
        self.engine = engine or Engine(project)
        self.ledger = self.engine.ledger
        url = project.conversions_url()
        self._db = open_source(url)
        self._run_id: int | None = None
        self._sync_runs: dict[str, int] = {}
        self._retry_at: dict[tuple[str, str], tuple[float, float]] = {}  # (conversion, sync) -> (when, backoff)
        self._seconds: dict[str, list[float]] = {}  # sync -> time to suppression of each remove this session

    def close(self) -> None:
        if self._run_id is not None:
            for sync, sync_run in self._sync_runs.items():
                seconds = percentiles(self._seconds.get(sync, []))
                reason = (f"fast path: {seconds['count']} suppressed; time to suppression p50 {seconds['p50']:.2f}s,"
                          f" p95 {seconds['p95']:.2f}s, max {seconds['max']:.2f}s") if seconds else "fast path"
                self.ledger.finish_sync_run(sync_run, status="ok", reason=reason, removed=seconds.get("count", 0),
                                            details={"time_to_suppression": seconds})
            self.ledger.finish_run(self._run_id, "ok")
        self.engine.close()
        self._db.dispose()

    def __enter__(self) -> "Suppressor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------

    def poll(self, limit: int = 500) -> list[tuple[str, Conversion]]:
        """New conversions after the ledger's cursor, oldest first, as (cursor to save, conversion)."""
        rows = read_after(self._db, self.source, self.ledger.get_cursor(CURSOR), limit)
        return [(cursor, Conversion(row_id, key, kind, at)) for cursor, row_id, key, kind, at in rows if key is not None]

    # --- acting ----------------------------------------------------------------------------

    def step(self) -> list[SuppressionResult]:
        """Retry what is pending, then handle every new conversion; advance the cursor."""
        results = self._retry_pending()
        batch = self.poll()
        for cursor, conversion in batch:
            results.append(self.handle(conversion))
            self.ledger.set_cursor(CURSOR, cursor)
        return results

    def segments_for(self, conversion_type: str) -> list[str]:
        names: set[str] = set()
        for rule in self.source.rules:
            if conversion_type in rule.types:
                names |= set(self.project.segments) if "*" in rule.segments else set(rule.segments)
        return sorted(names)

    def handle(self, conversion: Conversion) -> SuppressionResult:
        segments = self.segments_for(conversion.type)
        result = SuppressionResult(conversion, segments)
        if not segments:
            return result
        ttl = min((r.ttl_hours for r in self.source.rules if conversion.type in r.types and r.ttl_hours), default=None)
        self.ledger.suppress(conversion.member_key, segments, reason=f"{conversion.type} {conversion.conversion_id}",
                             expires_at=conversion.converted_at + ttl * 3600 if ttl else None)
        for name, sync in sorted(self.project.syncs.items()):
            if sync.segment in segments and not self.ledger.suppression_done(conversion.conversion_id, name):
                self._remove(conversion, name, result)
        return result

    def _remove(self, conversion: Conversion, sync_name: str, result: SuppressionResult) -> None:
        if not self.engine.destination(self.project.syncs[sync_name].destination).capabilities.can_remove:
            self._remove_held(conversion, sync_name, result)  # a trigger: nothing is sent, no lease needed
            return
        with self.engine.leases.hold([sync_name], self.engine.lease_label or "syncer suppress") as holding:
            if sync_name in holding.busy or any(r.status != "ok" for r in self.engine.settle([sync_name]).values()):
                # a batch run applies the sync, or a batch a killed process left in flight cannot be settled
                # yet: the batch run removes them, else the retry does
                self._record(conversion, sync_name, "pending", result)
                return
            self._remove_held(conversion, sync_name, result)

    def _remove_held(self, conversion: Conversion, sync_name: str, result: SuppressionResult) -> None:
        sync = self.project.syncs[sync_name]
        held = self.ledger.held_rows(sync_name, [conversion.member_key]).get(conversion.member_key)
        destination = self.engine.destination(sync.destination)
        if held is None or not destination.capabilities.can_remove:
            outcome = "not_held" if held is None else "cancelled"  # a trigger: the plan now skips them
            self._record(conversion, sync_name, outcome, result)
            return
        if destination.capabilities.match_keys and self.ledger.linked_stayers(sync_name, conversion.member_key):
            # one person to the platform with a member who stays: removing them would remove that member too
            self._record(conversion, sync_name, "retained", result)
            return
        if self.engine.waiting(sync.destination):
            self._record(conversion, sync_name, "pending", result)  # the platform's wait first, then _retry_pending
            return
        try:
            failed = send_and_commit(destination, self.ledger, sync=sync_name, sync_run_id=self._sync_run(sync_name),
                                     audience=AudienceRef(sync_name, sync.audience_id), op="remove", rows=[held],
                                     policy=_ONE_ATTEMPT, report=ApplyReport(), fast_path=True)
        except TransientError as exc:
            remember_wait(self.ledger, sync.destination, exc, now=self.engine.clock())
            self._record(conversion, sync_name, "pending", result)  # retried by _retry_pending, with backoff
            return
        except SyncError as exc:
            self._record(conversion, sync_name, "failed", result)
            result.outcomes[sync_name] = f"failed: {exc.message}"
            return
        self._record(conversion, sync_name, "pending" if failed else "removed", result)

    def _record(self, conversion: Conversion, sync: str, outcome: str, result: SuppressionResult) -> None:
        self.ledger.record_suppression_event(conversion_id=conversion.conversion_id, member_key=conversion.member_key,
                                             sync=sync, converted_at=conversion.converted_at, outcome=outcome)
        result.outcomes[sync] = outcome
        if outcome == "removed":
            result.seconds[sync] = round(time.time() - conversion.converted_at, 3)
            self._seconds.setdefault(sync, []).append(result.seconds[sync])

    def _sync_run(self, sync: str) -> int:
        if self._run_id is None:
            self._run_id = self.ledger.start_run("suppress")
        if sync not in self._sync_runs:
            self._sync_runs[sync] = self.ledger.start_sync_run(self._run_id, sync, plan_hash=None, members=None)
        return self._sync_runs[sync]

    def _retry_pending(self) -> list[SuppressionResult]:
        now = time.monotonic()
        results = []
        for conversion_id, member_key, sync, converted_at in self.ledger.pending_suppressions():
            when, backoff = self._retry_at.get((conversion_id, sync), (0.0, 0.5))
            if when > now or sync not in self.project.syncs:
                continue
            conversion = Conversion(conversion_id, member_key, "retry", converted_at)
            result = SuppressionResult(conversion, [self.project.syncs[sync].segment])
            self._remove(conversion, sync, result)
            if result.outcomes.get(sync) == "pending":
                self._retry_at[(conversion_id, sync)] = (now + backoff, min(backoff * 2, 30.0))
            else:
                self._retry_at.pop((conversion_id, sync), None)
            results.append(result)
        return results

    def follow(self, *, until: Callable[[], bool], on_result: Callable[[SuppressionResult], None] | None = None) -> None:
        """Poll every ``poll_interval_ms`` until ``until()`` is true."""
        interval = self.source.poll_interval_ms / 1000
        while not until():
            for result in self.step():
                if on_result:
                    on_result(result)
            time.sleep(interval)
