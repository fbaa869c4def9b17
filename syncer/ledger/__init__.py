"""The state store (SQLAlchemy; SQLite in WAL mode or Postgres): runs (with the scrubbed detail of the
error that failed a sync, see ``failures``), what each audience holds, row outcomes, retries, suppressions,
platform ids and job stages, members linked by a shared identifier, the platforms' waits, sensor cursors,
batches in flight (``intents``), per-text claims (``claims``), leases, match figures per run
(``match_rates``), warehouse-mode costs (``warehouse_costs``), the real-time path's pending members, changes
and held streams (``realtime``), and events and opt-outs received by `syncer serve` (``inbound``).
"""
