"""The state store (SQLAlchemy; SQLite in WAL mode or Postgres): runs, what each audience holds, row
outcomes, retries, suppressions, platform ids and jobs, sensor cursors.
"""
