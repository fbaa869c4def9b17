"""The planning half of ``syncer.delivery.engine.Engine``: reading segments and diffing syncs into plans.

Kept apart so the engine's module reads as the apply flow (leases, settling, gates, sending). Mixed into
``Engine``, whose ``project``, ``ledger`` and ``clock`` these methods read:

- ``build_plan``: every selected sync of a batch run, each segment extracted once (local DuckDB, or
  pushed down to the warehouse in ``diff_mode: warehouse``);
- ``plan_members``: some members of one segment only, for the real-time path (``syncer.delivery.realtime``);
- ``segment_query``: a segment's query as the engine runs it (without members whose ``expires_at`` passed);
- the trigger syncs' "still in the segment?" check made just before each batch of texts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from destinations.registry import capabilities_of
from syncer.errors import ConfigError, first_line
from syncer.ledger.store import Ledger
from syncer.planning.local_diff import consent_filter, plan_sync
from syncer.planning.plan import Plan, SyncPlan
from syncer.planning.realtime_sql import dialect_of, only_members, unexpired
from syncer.planning.segment import SegmentData, load_segment, load_segment_file
from syncer.planning.warehouse_diff import WarehouseDiff
from syncer.project.project import Project

log = logging.getLogger("syncer.delivery.engine")  # one logger for the engine, whichever half speaks


class PlanningSteps:
    """Segment reads and plans; see the module docstring."""

    project: Project
    ledger: Ledger
    clock: Callable[[], float]

    if TYPE_CHECKING:
        def _select(self, syncs: Iterable[str] | None) -> list[str]: ...

        def _created_audience(self, sync_name: str) -> str | None: ...

    def extract_segment(self, name: str, path: Path) -> SegmentData:
        """Run one segment's query and keep its rows (canonical columns) as Parquet at ``path``."""
        if self.project.config.diff_mode == "warehouse":
            with self._warehouse() as warehouse:  # the rows stay in the warehouse; only count them
                return self._warehouse_segment(warehouse, name)
        con = self._duckdb()
        try:
            data = self._load(con, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            con.execute(f"COPY {data.table} TO '{tmp}' (FORMAT parquet)")
            tmp.replace(path)
            return data
        finally:
            con.close()

    @property
    def spill_dir(self) -> Path:
        """Where large plans keep their rows and DuckDB spills (the project's state folder)."""
        return self.project.state_dir / "tmp"

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        """The in-process diff database: memory capped, spilling to the project's state folder."""
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(config={"memory_limit": self.project.config.memory_limit, "temp_directory": str(self.spill_dir)})

    @contextmanager
    def _warehouse(self) -> Iterator[WarehouseDiff]:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        warehouse = WarehouseDiff(self.project.warehouse_url(), self.project.config.bookkeeping_schema,
                                  memory_limit=self.project.config.memory_limit, temp_directory=str(self.spill_dir))
        try:
            yield warehouse
        finally:
            warehouse.close()

    def _warehouse_segment(self, warehouse: WarehouseDiff, name: str) -> SegmentData:
        """A segment read in the warehouse: ``table`` is its query with the canonical columns."""
        started = time.perf_counter()
        segment = self.project.segments[name]
        source = warehouse.source(self.segment_query(name), segment, name)
        rows, null_keys = warehouse.segment_counts(source)
        return SegmentData(name, source, rows, time.perf_counter() - started, tuple(segment.identifiers),
                           bool(segment.phone_region_column), null_keys)

    def _load(self, con: duckdb.DuckDBPyConnection, name: str, segment_file: Path | None = None) -> SegmentData:
        segment = self.project.segments[name]
        if segment_file is not None:
            return load_segment_file(con, name, segment, segment_file)
        return load_segment(con, name, segment, self.segment_query(name),
                            warehouse_url=self.project.warehouse_url(), chunk_rows=self.project.config.chunk_rows,
                            traits=self._trait_columns(name))

    def build_plan(self, syncs: Iterable[str] | None = None, *, segment_files: dict[str, Path] | None = None,
                   resend_all: bool = False) -> Plan:
        """Extract each needed segment once and diff every selected sync against the ledger.

        ``segment_files`` reuses segments already extracted by ``extract_segment``; ``resend_all`` plans
        every member as an add (a full resync), removes still follow the diff.
        """
        names = self._select(syncs)
        segment_files = segment_files or {}
        project = self.project
        with ExitStack() as stack:
            warehouse = stack.enter_context(self._warehouse()) if project.config.diff_mode == "warehouse" else None
            # a DuckDB warehouse lends its own instance: one memory_limit for the process, not one per database
            con = (warehouse.in_process_connection() if warehouse else None) or self._duckdb()
            stack.callback(con.close)
            loaded: dict[str, SegmentData] = {}
            plans: list[SyncPlan] = []
            read_at = self.clock()  # before the read: a suppression recorded from here on is re-read by apply
            suppressions = self.ledger.active_suppressions()
            failed: dict[str, str] = {}
            broken: dict[str, ConfigError] = {}
            for name in names:
                try:
                    plans.append(self._plan_one(con, warehouse, name, loaded, broken, segment_files, suppressions,
                                                resend_all))
                except Exception as exc:
                    # a DuckDB warehouse's own statements fail as ConfigError ("the warehouse refused..."), the cause kept
                    oom = next((e for e in (exc, exc.__cause__) if _out_of_memory(e)), None)
                    if oom is not None:
                        failed[name] = (f"the diff ran out of memory under memory_limit: {project.config.memory_limit}"
                                        f" ({first_line(oom)}): raise memory_limit in syncer.yml, then run again;"
                                        " nothing was sent for this sync")
                    elif isinstance(exc, ConfigError):  # a broken segment (its query failed...) fails its own syncs only
                        failed[name] = exc.message
                    else:
                        raise
                    log.warning("sync %s not planned: %s", name, failed[name])
                    continue
                plans[-1].planned_at = read_at
            return Plan(syncs=plans, project_fingerprint=project.fingerprint(), failed=failed)

    def _plan_one(self, con: duckdb.DuckDBPyConnection, warehouse: WarehouseDiff | None, name: str,
                  loaded: dict[str, SegmentData], broken: dict[str, ConfigError], segment_files: dict[str, Path],
                  suppressions: list[tuple[str, str]], resend_all: bool) -> SyncPlan:
        """Plan one sync of ``build_plan``, extracting its segment on first use."""
        project = self.project
        sync = project.syncs[name]
        if sync.segment in broken:
            raise broken[sync.segment]
        if sync.segment not in loaded:
            try:
                loaded[sync.segment] = (self._warehouse_segment(warehouse, sync.segment) if warehouse else
                                        self._load(con, sync.segment, segment_files.get(sync.segment)))
            except ConfigError as exc:  # once per segment, not once per sync of it
                broken[sync.segment] = exc
                raise
            self._release_leavers(con, warehouse, loaded[sync.segment], suppressions)
        sync_plan = self._plan_sync(con, loaded[sync.segment], name, suppressions, resend_all=resend_all, warehouse=warehouse)
        sync_plan.stats["extract_seconds"] = round(loaded[sync.segment].extract_seconds, 3)
        if warehouse is not None:  # kept with the plan, stored when it is applied
            sync_plan.stats["warehouse"] = warehouse.take_costs().as_dict()
        return sync_plan

    def _plan_sync(self, con: duckdb.DuckDBPyConnection, data: SegmentData, name: str, suppressions: list[tuple[str, str]],
                   *, resend_all: bool = False, warehouse: WarehouseDiff | None = None,
                   only_keys: list[str] | None = None) -> SyncPlan:
        project = self.project
        sync = project.syncs[name]
        segment = project.segments[sync.segment]
        capabilities = capabilities_of(project.destinations[sync.destination])
        suppressed = {k for k, seg in suppressions if seg in ("*", sync.segment)}
        sync_plan = plan_sync(con, data, segment, name, sync, platform=capabilities.platform,
                              region=segment.phone_region or project.config.default_region,
                              ledger=self.ledger, suppressed=suppressed, channel=capabilities.channel,
                              consent_marker=capabilities.consent_marker,
                              cache_dir=project.state_dir / "snapshots", resend_all=resend_all,
                              spill_dir=self.spill_dir, warehouse=warehouse,
                              match_keys=capabilities.match_keys if capabilities.can_remove else frozenset(),
                              only_keys=only_keys)
        sync_plan.audience_id = sync.audience_id or self._created_audience(name) or ""
        return sync_plan

    def plan_members(self, segment_name: str, keys: list[str], sync_names: Iterable[str]) -> list[SyncPlan]:
        """Plans of some syncs of one segment for ``keys`` only: the segment's query restricted to those members
        (the real-time path, ``syncer.delivery.realtime``). Always diffed locally against the audience's
        snapshot, in either diff mode: the rows are few, and the fingerprints are the same."""
        con = self._duckdb()
        try:
            read_at = self.clock()
            suppressions = self.ledger.active_suppressions()
            sql = only_members(self.segment_query(segment_name), self.project.segments[segment_name].member_key, keys,
                               dialect_of(self.project.warehouse_url()))
            data = load_segment(con, segment_name, self.project.segments[segment_name], sql,
                                warehouse_url=self.project.warehouse_url(), chunk_rows=self.project.config.chunk_rows,
                                traits=self._trait_columns(segment_name))
            plans = []
            for name in sync_names:
                plans.append(self._plan_sync(con, data, name, suppressions, only_keys=keys))
                plans[-1].planned_at = read_at
            return plans
        finally:
            con.close()

    def _trait_columns(self, segment_name: str) -> frozenset[str]:
        """The columns of a segment its syncs send as traits: the only extra columns its rows carry."""
        return frozenset(column for sync in self.project.syncs.values() if sync.segment == segment_name
                         for column in sync.traits.values())

    def segment_query(self, name: str) -> str:
        """The segment's query as the engine runs it: without members whose ``expires_at`` has passed (by the
        engine's clock, so the batch plan and the follower agree on who has expired)."""
        sql = self.project.segment_sql(name)
        expires_at = self.project.segments[name].expires_at
        if expires_at:
            sql = unexpired(sql, expires_at, self.clock(), dialect_of(self.project.warehouse_url()))
        return sql

    def _release_leavers(self, con: duckdb.DuckDBPyConnection, warehouse: WarehouseDiff | None, data: SegmentData,
                         suppressions: list[tuple[str, str]]) -> None:
        """Suppressions that last until the person leaves the segment end when the segment drops them."""
        keys = [k for k, segment in suppressions if segment == data.name]
        if not keys:
            return
        if warehouse is not None:
            left = warehouse.left_segment(data.table, keys)
        else:
            import pyarrow as pa

            con.register("_suppressed", pa.table({"member_key": pa.array(keys, pa.string())}))
            left = [k for (k,) in con.sql(f"SELECT member_key FROM _suppressed ANTI JOIN {data.table} USING (member_key)").fetchall()]
            con.unregister("_suppressed")
        if left:
            self.ledger.release_suppressions(data.name, left)

    def _members_now(self, sync_name: str) -> Callable[[list[str]], set[str]]:
        """Which of some member keys the sync's segment holds now, consent included: its query filtered to
        those keys (a text cannot be taken back, so a trigger sync asks again just before each batch)."""
        sync = self.project.syncs[sync_name]
        segment = self.project.segments[sync.segment]
        channel = sync.channel or capabilities_of(self.project.destinations[sync.destination]).channel

        def members_now(keys: list[str]) -> set[str]:
            if not keys:
                return set()
            sql = only_members(self.segment_query(sync.segment), segment.member_key, keys,
                               dialect_of(self.project.warehouse_url()))
            con = self._duckdb()
            try:
                data = load_segment(con, f"{sync.segment}_now", segment, sql, warehouse_url=self.project.warehouse_url(),
                                    chunk_rows=self.project.config.chunk_rows)
                where = consent_filter(segment, sync, channel)
                return {k for (k,) in con.sql(f"SELECT member_key FROM {data.table} WHERE {where}").fetchall()}
            finally:
                con.close()

        return members_now


def _out_of_memory(exc: BaseException) -> bool:
    """DuckDB's OutOfMemoryException, raised by the in-process diff or (wrapped by SQLAlchemy) by a DuckDB warehouse."""
    return isinstance(exc, duckdb.OutOfMemoryException) or isinstance(getattr(exc, "orig", None), duckdb.OutOfMemoryException)
