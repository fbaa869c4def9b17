"""How the warehouse diff talks to each engine: one small session per kind of connection.

``open_session(url)`` picks by the URL's scheme:

- ``duckdb://``, ``postgresql://``, ``bigquery://`` (sqlalchemy-bigquery, not installed here): SQLAlchemy.
  DuckDB uploads and returns Arrow in place, Postgres uploads with COPY.
- ``snowflake://user:${SNOWFLAKE_PASSWORD}@account/database/schema?warehouse=WH&role=ROLE``: the
  snowflake-connector's own DB-API (snowflake-sqlalchemy needs a newer connector than fakesnow, the
  test double, can load); any other query parameter is passed to ``snowflake.connector.connect``.
  Results come back as Arrow batches where the connector offers them (``fetch_arrow_batches``).
- ``spark://``: the process's active SparkSession (a Databricks job or notebook, or pyspark), else
  ``SparkSession.builder.getOrCreate()``. No SQLAlchemy dialect for Spark is installed, so this is a
  small adapter: uploads become temp views, results come back through ``toLocalIterator``. The
  session belongs to its host and is never stopped here.

Every query failure is raised as ``ConfigError`` with the engine's message (never row values).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Protocol

import pyarrow as pa
import sqlalchemy as sa

from syncer.errors import ConfigError
from syncer.planning.warehouse_dialects import DIALECTS, BigQueryDialect, Dialect

_UPLOAD_ROWS = 50_000


class WarehouseSession(Protocol):
    """One connection to a warehouse; statements run as given, in the session's ``dialect``."""

    dialect: Dialect

    def run(self, sql: str) -> None: ...
    def rows(self, sql: str) -> list[tuple]: ...
    def columns(self, sql: str) -> list[str]: ...
    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        """Put the rows (``values``: one sequence per column) in work table ``table``, already created empty."""
    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        """The result's columns as strings, at most ``chunk_rows`` rows at a time."""
    def commit(self) -> None: ...
    def close(self) -> None: ...


def open_session(url: str, schema: str, *, memory_limit: str | None = None, temp_directory: str | None = None) -> WarehouseSession:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "spark":
        return _SparkSession()
    if scheme == "snowflake":
        return _SnowflakeSession(url)
    return _SqlAlchemySession(url, schema, memory_limit, temp_directory)


def _failed(exc: BaseException) -> ConfigError:
    return ConfigError(f"the warehouse refused a query: {getattr(exc, 'orig', None) or exc}")


def _strings(rows: list[tuple], width: int) -> list[pa.Array]:
    return [pa.array([None if r[i] is None else str(r[i]) for r in rows], pa.string()) for i in range(width)]


class _SqlAlchemySession:
    def __init__(self, url: str, schema: str, memory_limit: str | None, temp_directory: str | None) -> None:
        self.engine = sa.create_engine(url)
        self.conn = self.engine.connect()
        name = self.conn.dialect.name
        if name not in DIALECTS or name in ("snowflake", "spark"):
            self.close()
            raise ConfigError(f"diff_mode: warehouse supports {', '.join(DIALECTS)} warehouses, not {name}; use diff_mode: local")
        self.dialect = BigQueryDialect(schema) if name == "bigquery" else DIALECTS[name]()
        if name == "duckdb":  # an embedded warehouse: held to the project's memory cap
            if memory_limit:
                self.run(f"SET memory_limit = '{memory_limit}'")
            if temp_directory:
                self.run(f"SET temp_directory = '{temp_directory}'")

    def run(self, sql: str) -> None:
        try:
            self.conn.exec_driver_sql(sql)
        except sa.exc.SQLAlchemyError as exc:
            self.conn.rollback()
            raise _failed(exc) from exc

    def rows(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self.conn.exec_driver_sql(sql)]
        except sa.exc.SQLAlchemyError as exc:
            self.conn.rollback()
            raise _failed(exc) from exc

    def columns(self, sql: str) -> list[str]:
        try:
            return list(self.conn.exec_driver_sql(sql).keys())
        except sa.exc.SQLAlchemyError as exc:
            self.conn.rollback()
            raise _failed(exc) from exc

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        raw = self.conn.connection.driver_connection
        if self.dialect.name == "duckdb":  # DuckDB takes the rows as Arrow
            raw.register("_syncer_upload", pa.table(dict(zip(columns, (pa.array(v, pa.string()) for v in values)))))
            raw.execute(f"INSERT INTO {table} SELECT * FROM _syncer_upload")
            raw.unregister("_syncer_upload")
            return
        if type(raw).__module__.split(".")[0] == "psycopg":  # psycopg 3: COPY, far faster than executemany
            with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in zip(*values):
                    copy.write_row(row)
            return
        marks = ", ".join(f":{c}" for c in columns)
        rows = [dict(zip(columns, row)) for row in zip(*values)]
        for start in range(0, len(rows), _UPLOAD_ROWS):
            self.conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"), rows[start:start + _UPLOAD_ROWS])

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        if self.dialect.name == "duckdb":  # the engine hands out Arrow itself: no rows through Python
            for batch in self.conn.connection.driver_connection.sql(sql).to_arrow_reader(chunk_rows):
                yield [column.cast(pa.string()) for column in batch.columns]
            return
        try:
            # per statement: Connection.execution_options would make every later statement a server-side cursor
            result = self.conn.execute(sa.text(sql).execution_options(stream_results=True, yield_per=chunk_rows))
        except sa.exc.SQLAlchemyError as exc:
            raise _failed(exc) from exc
        width = len(result.keys())
        for rows in result.partitions(chunk_rows):
            yield _strings(rows, width)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


class _SnowflakeSession:
    def __init__(self, url: str) -> None:
        import snowflake.connector  # an optional dependency: only a Snowflake project needs it

        self._errors = snowflake.connector.errors.Error
        parsed = sa.engine.make_url(url)
        database, _, schema = (parsed.database or "").partition("/")
        options: dict[str, object] = {k: (int(v) if k == "port" else v) for k, v in parsed.query.items()}
        options.update({k: v for k, v in (("user", parsed.username), ("password", parsed.password), ("account", parsed.host),
                                          ("database", database), ("schema", schema)) if v})
        try:
            self.conn = snowflake.connector.connect(autocommit=False, **options)
        except self._errors as exc:
            raise ConfigError(f"cannot connect to the Snowflake warehouse: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
        self.dialect = DIALECTS["snowflake"]()
        self._schema = ".".join(self.dialect.ident(p.upper()) for p in (database, schema)) if database and schema else None

    def _cursor(self, sql: str):
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql)
        except self._errors as exc:
            raise _failed(exc) from exc
        return cursor

    def run(self, sql: str) -> None:
        self._cursor(sql).close()
        if sql.lstrip().upper().startswith("CREATE SCHEMA") and self._schema:
            # CREATE SCHEMA also makes it the session's current schema (https://docs.snowflake.com/en/sql-reference/sql/create-schema):
            # the segments' queries name their tables relative to the URL's schema
            self._cursor(f"USE SCHEMA {self._schema}").close()

    def rows(self, sql: str) -> list[tuple]:
        cursor = self._cursor(sql)
        try:
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def columns(self, sql: str) -> list[str]:
        cursor = self._cursor(sql)
        try:
            return [d[0] for d in cursor.description]
        finally:
            cursor.close()

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        rows = list(zip(*values))
        cursor = self.conn.cursor()
        try:
            for start in range(0, len(rows), _UPLOAD_ROWS):
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                                   rows[start:start + _UPLOAD_ROWS])
        except self._errors as exc:
            raise _failed(exc) from exc
        finally:
            cursor.close()

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        cursor = self._cursor(sql)
        try:
            if hasattr(cursor, "fetch_arrow_batches"):  # the real connector: Arrow, no rows through Python
                for table in cursor.fetch_arrow_batches():
                    for batch in table.to_batches(chunk_rows):
                        yield [column.cast(pa.string()) for column in batch.columns]
                return
            width = len(cursor.description)
            while rows := cursor.fetchmany(chunk_rows):
                yield _strings(rows, width)
        finally:
            cursor.close()

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class _SparkSession:
    def __init__(self) -> None:
        from pyspark.errors import PySparkException  # an optional dependency: only a Spark project needs it
        from pyspark.sql import SparkSession

        self._errors = PySparkException
        self.spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        self.dialect = DIALECTS["spark"]()
        self._views: set[str] = set()

    def _sql(self, sql: str):
        try:
            return self.spark.sql(sql)  # commands run here, eagerly
        except self._errors as exc:
            raise _failed(exc) from exc

    def run(self, sql: str) -> None:
        self._sql(sql)

    def rows(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self._sql(sql).collect()]
        except self._errors as exc:
            raise _failed(exc) from exc

    def columns(self, sql: str) -> list[str]:
        return list(self._sql(sql).columns)  # analysed, not run

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        arrow = pa.table({c: pa.array(list(v), pa.string()) for c, v in zip(columns, values)})
        self.spark.createDataFrame(arrow).createOrReplaceTempView(table)
        self._views.add(table)

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        frame = self._sql(sql)
        width = len(frame.columns)
        rows = frame.toLocalIterator()  # one partition at a time, not the whole result
        try:
            while chunk := list(islice(rows, chunk_rows)):
                yield _strings(chunk, width)
        except self._errors as exc:
            raise _failed(exc) from exc

    def commit(self) -> None:
        """Spark has no transactions: ``WarehouseDiff.catch_up`` orders its writes so a cut leaves a replayable state."""

    def close(self) -> None:
        for view in self._views:
            self.spark.catalog.dropTempView(view)
