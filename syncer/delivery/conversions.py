"""Writing conversions into the project's conversions table: the demo's and the tests' event source.

A real deployment's conversions come from its own systems (an orders table, a CDC stream landed in a
database); this only exists so the fast path can be shown and measured end to end.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from syncer.errors import ConfigError
from syncer.project.project import Project


def _id_column(project: Project) -> str:
    s = project.config.conversions
    return s.tiebreak_column or s.cursor_column  # with a timestamp cursor, the tiebreak is the id


def ensure_table(engine: sa.Engine, project: Project) -> None:
    s = project.config.conversions
    with engine.begin() as conn:
        conn.execute(sa.text(
            f"CREATE TABLE IF NOT EXISTS {s.table} ({_id_column(project)} INTEGER PRIMARY KEY, {s.member_key_column} TEXT NOT NULL,"
            f" {s.type_column} TEXT NOT NULL, {s.time_column} DOUBLE PRECISION NOT NULL)"))


def record_conversion(project: Project, member_key: str, conversion_type: str = "purchase", *,
                      engine: sa.Engine | None = None, at: float | None = None) -> int:
    """Insert one conversion (time: now, epoch seconds); returns its id."""
    s = project.config.conversions
    if s is None:
        raise ConfigError("the project has no `conversions:` section in syncer.yml")
    own = engine is None
    engine = engine or sa.create_engine(project.conversions_url())
    try:
        ensure_table(engine, project)
        with engine.begin() as conn:
            id_column = _id_column(project)
            next_id = conn.execute(sa.text(f"SELECT coalesce(max({id_column}), 0) + 1 FROM {s.table}")).scalar()
            conn.execute(sa.text(
                f"INSERT INTO {s.table} ({id_column}, {s.member_key_column}, {s.type_column}, {s.time_column})"
                " VALUES (:id, :key, :type, :at)"), {"id": next_id, "key": member_key, "type": conversion_type,
                                                   "at": at if at is not None else time.time()})
        return int(next_id)
    finally:
        if own:
            engine.dispose()
