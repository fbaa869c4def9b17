"""The state store (SQLAlchemy; SQLite in WAL mode or Postgres): runs (with the scrubbed detail of the
error that failed a sync, see ``failures``), what each audience holds, row outcomes, retries, suppressions,
platform ids and job stages, members linked by a shared identifier, the platforms' waits, sensor cursors.
"""
