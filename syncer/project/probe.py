"""Ask the warehouse about each segment's query without reading a row: what ``syncer validate`` can know
before a run.

Each segment's SQL is wrapped as ``SELECT * FROM (<sql>) AS probe LIMIT 0`` (``TOP 0`` on SQL Server,
``WHERE 1 = 0`` on Oracle, which takes no ``AS`` before a table alias) and run through SQLAlchemy with the
run's own ``sa.text``, so a syntax error, an unknown table and a column the segment's file names that the
query does not return (``member_key``, an identifier, a consent or region column, a sync's trait) are found with the
file and line to fix. A rule segment's tables and columns are looked up first (``SELECT * FROM <table>``
with no rows), so one the warehouse lacks is told at the rule's key, not as the compiled query's error.
A warehouse the probe cannot reach at all (no network, a file not written yet, a
dialect's package not installed) is said once, as a warning: the files may still be right.

DuckDB and SQLite files are opened read-only and never created. The database's own message is kept to
its first line, and the URL is only ever shown without its password.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, first_line
from syncer.project.problems import KeyPath, Problem, dotted
from syncer.project.project import Project
from syncer.project.yaml_source import YamlDoc, read_doc

__all__ = ["ProbeResult", "probe_segments"]

_WRAPS = {
    "mssql": "SELECT TOP 0 * FROM (\n{sql}\n) AS probe",
    "oracle": "SELECT * FROM (\n{sql}\n) probe WHERE 1 = 0",
}
_DEFAULT_WRAP = "SELECT * FROM (\n{sql}\n) AS probe LIMIT 0"


@dataclass
class ProbeResult:
    problems: list[Problem] = field(default_factory=list)
    """Queries the warehouse refused, columns the query does not return: a run would fail on them."""
    warnings: list[Problem] = field(default_factory=list)
    """The warehouse could not be reached (said once); nothing about the segments was checked."""


def probe_segments(project: Project) -> ProbeResult:
    """Run every segment's query with no rows against the project's warehouse; never raises for the
    warehouse's sake (its failures are the result)."""
    import sqlalchemy as sa

    result = ProbeResult()
    where = _project_file(project)
    try:
        url = project.warehouse_url()
        engine = _engine(url)
    except (ConfigError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        result.warnings.append(_unreachable(where, first_line(exc), shown=project.config.warehouse_url))
        return result
    try:
        with engine.connect() as conn:
            for name in sorted(project.segments):
                result.problems.extend(_probe_segment(conn, project, name))
    except (sa.exc.SQLAlchemyError, OSError) as exc:  # connecting failed: the warehouse, not a segment
        result.warnings.append(_unreachable(where, first_line(exc), shown=_hidden(url)))
    finally:
        engine.dispose()
    return result


def _engine(url: str) -> Any:
    """A SQLAlchemy engine that never writes: DuckDB read-only, SQLite through a read-only URI."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("duckdb", "sqlite") and parsed.database and not parsed.database.startswith(":"):
        if not Path(parsed.database).is_file():
            raise ConfigError(f"the database file {parsed.database} does not exist (yet)")
        if backend == "duckdb":
            return sa.create_engine(url, connect_args={"read_only": True})
        return sa.create_engine(f"sqlite:///file:{Path(parsed.database).as_posix()}?mode=ro&uri=true")
    if backend == "postgresql":  # an unreachable host would otherwise hang validate for minutes
        return sa.create_engine(url, connect_args={"connect_timeout": 10})
    return sa.create_engine(url)


def _probe_segment(conn: Any, project: Project, name: str) -> list[Problem]:
    import sqlalchemy as sa

    segment = project.segments[name]
    doc = _segment_doc(project, name)
    sql_key = ("sql",) if segment.sql else ("dbt",) if segment.dbt else ("sql_file",)
    if segment.rules is not None:  # a table or column the rules name and the warehouse lacks, said at its key
        sql_key = ("rules",)
        rule_problems = _rule_problems(conn, segment, project.config.warehouse_url, doc)
        if rule_problems:
            return rule_problems
    try:
        sql = project.segment_sql(name).strip().rstrip(";").rstrip()
    except OSError:  # a missing or unreadable sql_file: the loader already said so
        return []
    wrap = _WRAPS.get(conn.dialect.name, _DEFAULT_WRAP)
    try:
        returned = list(conn.execute(sa.text(wrap.format(sql=sql))).keys())
    except sa.exc.DBAPIError as exc:
        conn.rollback()  # PostgreSQL refuses every later statement of a failed transaction
        if exc.connection_invalidated:
            raise
        where = f" (in segments/{segment.sql_file})" if segment.sql_file else ""
        message = (f"the warehouse refused the query{where}: {first_line(exc)}; fix the SQL (try it in the"
                   " warehouse's own console), then validate again")
        if segment.dbt:  # the model is in the manifest but its relation is not in the warehouse (yet)
            message = (f"the warehouse cannot read dbt model '{segment.dbt}': {first_line(exc)}; run `dbt build"
                       f" --select {segment.dbt}` in the dbt project so its relation exists, then validate again")
        return [Problem(doc.file, doc.line(sql_key), dotted(sql_key), message)]
    except sa.exc.StatementError as exc:  # e.g. a ':name' the query holds is read as a bind parameter
        conn.rollback()
        return [Problem(doc.file, doc.line(sql_key), dotted(sql_key), f"the query cannot be run: {first_line(exc)}")]
    return [Problem(doc.file, doc.line(path), dotted(path), _missing_column_message(column, returned))
            for path, column in _named_columns(segment) if not _has_column(returned, column)] + _trait_problems(project, name, returned)


def _trait_problems(project: Project, segment_name: str, returned: list[str]) -> list[Problem]:
    """A trait of a sync of this segment naming a column its query does not return (a run would stop there)."""
    problems = []
    for sync_name, sync in sorted(project.syncs.items()):
        if sync.segment != segment_name or not sync.traits:
            continue
        doc = _file_doc(project, "syncs", sync_name)
        for prop, column in sync.traits.items():
            if not _has_column(returned, column):
                path = ("traits", prop)
                problems.append(Problem(doc.file, doc.line(path), dotted(path), _missing_column_message(column, returned)))
    return problems


def _rule_problems(conn: Any, segment: Any, warehouse_url: str, doc: YamlDoc) -> list[Problem]:
    """Each table and column a rule segment names that the warehouse lacks, at the rule's own key (the
    compiled query would only say so in the database's words)."""
    from syncer.project.rule_models import rule_references
    from syncer.project.rules import DIALECTS, dialect_for_url

    try:
        dialect = DIALECTS[dialect_for_url(warehouse_url)]
    except ConfigError as exc:
        return [Problem(doc.file, doc.line(("rules",)), "rules", str(exc))]
    tables: dict[str, tuple[list[str] | None, str]] = {}
    problems: dict[KeyPath, Problem] = {}
    for ref in rule_references(segment):
        if ref.table not in tables:
            tables[ref.table] = _table_columns(conn, dialect.table(ref.table))
        columns, error = tables[ref.table]
        if columns is None and ref.column is None:
            message = (f"the warehouse has no table '{ref.table}' this login can read ({error}); name a table"
                       " or view of the warehouse")
        elif columns is not None and ref.column is not None and not _has_column(columns, ref.column):
            message = _missing_table_column_message(ref.table, ref.column, columns)
        else:
            continue
        problems.setdefault(ref.path, Problem(doc.file, doc.line(ref.path), dotted(ref.path), message))
    return list(problems.values())


def _missing_table_column_message(table: str, column: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.6)
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(columns[:20]) + (", …" if len(columns) > 20 else "")
    return f"the table '{table}' has no column '{column}'{did_you_mean} (it has: {shown or 'no columns'})"


def _table_columns(conn: Any, table_sql: str) -> tuple[list[str] | None, str]:
    """The columns of a table (None and the database's words when it cannot be read), reading no row."""
    import sqlalchemy as sa

    wrap = _WRAPS.get(conn.dialect.name, _DEFAULT_WRAP)
    try:
        return list(conn.execute(sa.text(wrap.format(sql=f"SELECT * FROM {table_sql}"))).keys()), ""
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        if exc.connection_invalidated:
            raise
        return None, first_line(exc)


def _named_columns(segment: Any) -> list[tuple[KeyPath, str]]:
    """Every column the segment's file names, with the key that names it; a run reads them all."""
    named: list[tuple[KeyPath, str]] = [(("member_key",), segment.member_key)]
    named += [(("identifiers", kind), column) for kind, column in segment.identifiers.items()]
    if segment.phone_region_column:
        named.append((("phone_region_column",), segment.phone_region_column))
    for channel in ("ads", "email", "sms"):
        column = getattr(segment.consent, channel)
        if column:
            named.append((("consent", channel), column))
    return named


def _has_column(returned: list[str], column: str) -> bool:
    # as the run resolves them (syncer.planning.segment.resolve_columns): exact, else case-insensitive
    return column in returned or column.lower() in {r.lower() for r in returned}


def _missing_column_message(column: str, returned: list[str]) -> str:
    close = difflib.get_close_matches(column, returned, n=1, cutoff=0.6)
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(returned[:20]) + (", …" if len(returned) > 20 else "")
    return (f"the query returns no column '{column}'{did_you_mean} (it returns: {shown or 'no columns'});"
            " name one of its columns here, or add the column to the query")


def _segment_doc(project: Project, name: str) -> YamlDoc:
    """The segment's file with its lines (the project keeps only the models)."""
    return _file_doc(project, "segments", name)


def _file_doc(project: Project, folder: str, name: str) -> YamlDoc:
    for suffix in (".yml", ".yaml"):
        path = project.root / folder / f"{name}{suffix}"
        if path.is_file():
            doc = read_doc(path, f"{folder}/{path.name}", [], lambda: "")
            if doc is not None:
                return doc
    return YamlDoc(f"{folder}/{name}.yml", lines={})


def _project_file(project: Project) -> YamlDoc:
    for name in ("syncer.yml", "syncer.yaml"):
        path = project.root / name
        if path.is_file():
            doc = read_doc(path, name, [], lambda: "")
            if doc is not None:
                return doc
    return YamlDoc("syncer.yml", lines={})


def _unreachable(doc: YamlDoc, reason: str, *, shown: str) -> Problem:
    message = (f"could not reach the warehouse {shown}: {reason}; the segments' SQL and columns were not checked"
               " (validate again where the warehouse is reachable)")
    return Problem(doc.file, doc.line(("warehouse_url",)), "warehouse_url", message)


def _hidden(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(an unreadable URL)"
