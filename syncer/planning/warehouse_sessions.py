"""How the warehouse diff talks to each engine: one small session per kind of connection.

``open_session(url)`` picks by the URL's scheme:

- ``duckdb://``, ``postgresql://``, ``bigquery://`` (sqlalchemy-bigquery, not installed here): SQLAlchemy.
  DuckDB uploads and returns Arrow in place, Postgres uploads with COPY.
- ``snowflake://user:${SNOWFLAKE_PASSWORD}@account/database/schema?warehouse=WH&role=ROLE``: the
  snowflake-connector's own DB-API (snowflake-sqlalchemy needs a newer connector than fakesnow, the
  test double, can load); any other query parameter is passed to ``snowflake.connector.connect``.
  Results come back as Arrow batches where the connector offers them (``fetch_arrow_batches``).
- ``databricks://token:${DATABRICKS_TOKEN}@host?http_path=...&catalog=...&schema=...`` (databricks-sqlalchemy,
  the optional extra ``databricks``): SQLAlchemy, in Spark SQL (``DatabricksDialect``); results come back
  as Arrow through the connector's ``fetchmany_arrow``.
- ``spark://``: the process's active SparkSession (a Databricks job or notebook, or pyspark), else
  ``SparkSession.builder.getOrCreate()``. No SQLAlchemy dialect for Spark is installed, so this is a
  small adapter: uploads become temp views, results come back through ``toLocalIterator``. The
  session belongs to its host and is never stopped here.

Every query failure is raised as ``ConfigError`` with the engine's message (never row values).

Each session keeps ``costs`` (``syncer.ledger.warehouse_costs.WarehouseCosts``): every statement it ran,
the rows that came back and went up, and what the engine reports beyond that (DuckDB's rows scanned,
Snowflake's query ids, BigQuery's bytes billed).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import sqlalchemy as sa

from syncer.environment import scheme_of
from syncer.errors import ConfigError
from syncer.ledger.warehouse_costs import WarehouseCosts
from syncer.planning.warehouse_dialects import DIALECTS, Dialect

if TYPE_CHECKING:
    import duckdb

_UPLOAD_ROWS = 50_000


class WarehouseSession(Protocol):
    """One connection to a warehouse; statements run as given, in the session's ``dialect``."""

    dialect: Dialect
    costs: WarehouseCosts  # what the statements run so far cost; replaced by ``WarehouseDiff.take_costs``

    def run(self, sql: str) -> None: ...
    def rows(self, sql: str) -> list[tuple]: ...
    def columns(self, sql: str) -> list[str]: ...
    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        """Put the rows (``values``: one sequence per column) in work table ``table``, already created empty."""
    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        """The result's columns as strings, at most ``chunk_rows`` rows at a time."""
    def commit(self) -> None: ...
    def duckdb_connection(self) -> duckdb.DuckDBPyConnection | None:
        """A new connection to this warehouse's DuckDB instance, when it is one in this process."""
    def land_in(self, con: duckdb.DuckDBPyConnection, table: str, names: list[str], sql: str) -> None:
        """Only where ``duckdb_connection`` lends one: ``sql``'s rows as temp table ``table`` of ``con``."""
    def close(self) -> None: ...


def open_session(url: str, schema: str, *, memory_limit: str | None = None, temp_directory: str | None = None) -> WarehouseSession:
    scheme = scheme_of(url)
    if scheme == "spark":
        return _SparkSession()
    if scheme == "snowflake":
        return _SnowflakeSession(url)
    return _SqlAlchemySession(url, schema, memory_limit, temp_directory)


@contextmanager
def _metered(costs: WarehouseCosts) -> Iterator[None]:
    """Count one statement and the time waited on it."""
    started = time.perf_counter()
    try:
        yield
    finally:
        costs.statements += 1
        costs.seconds += time.perf_counter() - started


def driver_arrow_batches(cursor: Any, chunk_rows: int) -> Iterator[pa.RecordBatch] | None:
    """The executed ``cursor``'s result as Arrow, where its driver offers it; ``None`` where it does not.

    Snowflake's connector: ``fetch_arrow_batches`` (https://docs.snowflake.com/en/developer-guide/python-connector/
    python-connector-api#fetch_arrow_batches), a whole result chunk of the server at a time, cut here to
    ``chunk_rows``; fakesnow has no such method, so it falls back. Databricks' connector: ``fetchmany_arrow``
    (https://docs.databricks.com/en/dev-tools/python-sql-connector.html#cursor-class)."""
    if hasattr(cursor, "fetch_arrow_batches"):
        def snowflake() -> Iterator[pa.RecordBatch]:
            for table in cursor.fetch_arrow_batches():
                yield from table.to_batches(chunk_rows)
        return snowflake()
    if hasattr(cursor, "fetchmany_arrow"):
        def databricks() -> Iterator[pa.RecordBatch]:
            while (table := cursor.fetchmany_arrow(chunk_rows)).num_rows:
                yield from table.to_batches(chunk_rows)
        return databricks()
    return None


def rows_as_batches(cursor: Any, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """A DB-API cursor's rows, ``chunk_rows`` at a time, as record batches with the driver's types."""
    names = [d[0] for d in cursor.description]
    while rows := cursor.fetchmany(chunk_rows):
        yield pa.record_batch([pa.array([r[i] for r in rows]) for i in range(len(names))], names=names)


def _as_strings(batch: pa.RecordBatch) -> list[pa.Array]:
    return [column.cast(pa.string()) for column in batch.columns]


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
        self.dialect = DIALECTS[name](schema) if name in ("bigquery", "databricks") else DIALECTS[name]()
        self.costs = WarehouseCosts(engine=name)
        self._raw = self.conn.connection.driver_connection
        self._work = f"syncer_work_{secrets.token_hex(4)}"  # land_in's database, one per session
        if name == "duckdb":  # an embedded warehouse: held to the project's memory cap
            if memory_limit:
                self.run(f"SET memory_limit = '{memory_limit}'")
            if temp_directory:
                self.run(f"SET temp_directory = '{temp_directory}'")
            # rows scanned, read back after each statement (get_profiling_information); nothing printed
            self._raw.execute("SET enable_profiling = 'no_output'")
        if name == "bigquery":
            sa.event.listen(self.engine, "after_cursor_execute", self._bigquery_job)

    def _bigquery_job(self, conn, cursor, statement, parameters, context, executemany) -> None:
        """The query job of the DB-API cursor (``Cursor._query_job``, google/cloud/bigquery/dbapi/cursor.py):
        bytes billed and processed, and its id."""
        job = getattr(cursor, "_query_job", None)
        if job is not None:
            self.costs.add(bytes_billed=getattr(job, "total_bytes_billed", None),
                           bytes_processed=getattr(job, "total_bytes_processed", None), query_id=getattr(job, "job_id", None))

    def _scanned(self) -> None:
        """DuckDB's rows scanned by the statement just run, from its profiler."""
        if self.dialect.name != "duckdb":
            return
        try:
            profile = json.loads(self._raw.get_profiling_information(format="json"))
        except Exception:  # noqa: BLE001  (a statement without a plan: SET, CREATE SCHEMA)
            return
        scanned = (profile.get("query") or {}).get("total_rows_scanned")
        if scanned is not None:
            self.costs.add(rows_scanned=scanned)

    def run(self, sql: str) -> None:
        with _metered(self.costs):
            try:
                self.conn.exec_driver_sql(sql)
            except sa.exc.SQLAlchemyError as exc:
                self.conn.rollback()
                raise _failed(exc) from exc
        self._scanned()

    def rows(self, sql: str) -> list[tuple]:
        with _metered(self.costs):
            try:
                found = [tuple(r) for r in self.conn.exec_driver_sql(sql)]
            except sa.exc.SQLAlchemyError as exc:
                self.conn.rollback()
                raise _failed(exc) from exc
        self.costs.rows_returned += len(found)
        self._scanned()
        return found

    def columns(self, sql: str) -> list[str]:
        with _metered(self.costs):
            try:
                return list(self.conn.exec_driver_sql(sql).keys())
            except sa.exc.SQLAlchemyError as exc:
                self.conn.rollback()
                raise _failed(exc) from exc

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        raw = self._raw
        with _metered(self.costs):
            self.costs.rows_uploaded += len(values[0]) if values else 0
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
        self.costs.statements += 1
        started = time.perf_counter()
        try:
            for batch in self._batches(sql, chunk_rows):
                self.costs.rows_returned += batch.num_rows
                yield _as_strings(batch)
        finally:
            self.costs.seconds += time.perf_counter() - started
        self._scanned()

    def _batches(self, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        if self.dialect.name == "duckdb":  # the engine hands out Arrow itself: no rows through Python
            yield from self._raw.sql(sql).to_arrow_reader(chunk_rows)
            return
        if self.dialect.name == "databricks":  # the connector's Arrow results, where it offers them
            cursor = self._raw.cursor()
            try:
                cursor.execute(sql)
                yield from driver_arrow_batches(cursor, chunk_rows) or rows_as_batches(cursor, chunk_rows)
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise _failed(exc) from exc
            finally:
                cursor.close()
            return
        try:
            # per statement: Connection.execution_options would make every later statement a server-side cursor
            result = self.conn.execute(sa.text(sql).execution_options(stream_results=True, yield_per=chunk_rows))
        except sa.exc.SQLAlchemyError as exc:
            raise _failed(exc) from exc
        names = list(result.keys())
        for rows in result.partitions(chunk_rows):
            yield pa.record_batch(_strings(rows, len(names)), names=names)

    def commit(self) -> None:
        self.conn.commit()

    def duckdb_connection(self) -> duckdb.DuckDBPyConnection | None:
        return self._raw.duplicate() if self.dialect.name == "duckdb" else None

    def land_in(self, con: duckdb.DuckDBPyConnection, table: str, names: list[str], sql: str) -> None:
        """Make ``table`` (text columns ``names``) readable in ``con``, a connection ``duckdb_connection`` lent,
        with ``sql``'s rows: copied inside the instance, nothing through Python. The copy lives in an in-memory
        database attached for this session (its connection's temp tables are its own; one transaction may
        write one database), and ``con`` gets a temp view of it."""
        columns = ", ".join(f"CAST({n} AS VARCHAR) AS {n}" for n in names)
        self.commit()  # nothing of the warehouse's is written in the copy's transaction
        self._raw.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {self._work}")
        self.run(f"CREATE OR REPLACE TABLE {self._work}.{table} AS SELECT {columns} FROM ({sql}) AS q({', '.join(names)})")
        self.costs.rows_returned += self.rows(f"SELECT count(*) FROM {self._work}.{table}")[0][0]
        self.costs.statements -= 1  # the count is ours, not the diff's
        self.commit()
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {self._work}.{table}")

    def close(self) -> None:
        if self.dialect.name == "duckdb":  # land_in's copies: the instance may outlive the session in this process
            self.conn.rollback()  # what was not committed is dropped anyway, as by any close
            self._raw.execute(f"DETACH DATABASE IF EXISTS {self._work}")
        self.conn.close()
        self.engine.dispose()


class _SnowflakeSession:
    def __init__(self, url: str) -> None:
        self.conn, self._errors = snowflake_connection(url)
        self.dialect = DIALECTS["snowflake"]()
        self.costs = WarehouseCosts(engine="snowflake")
        database, _, schema = (sa.engine.make_url(url).database or "").partition("/")
        self._schema = ".".join(self.dialect.ident(p.upper()) for p in (database, schema)) if database and schema else None

    def _cursor(self, sql: str):
        cursor = self.conn.cursor()
        with _metered(self.costs):
            try:
                cursor.execute(sql)
            except self._errors as exc:
                raise _failed(exc) from exc
        self.costs.add(query_id=getattr(cursor, "sfqid", None))
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
            found = [tuple(r) for r in cursor.fetchall()]
            self.costs.rows_returned += len(found)
            return found
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
                with _metered(self.costs):
                    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                                       rows[start:start + _UPLOAD_ROWS])
                self.costs.add(query_id=getattr(cursor, "sfqid", None))
        except self._errors as exc:
            raise _failed(exc) from exc
        finally:
            cursor.close()
        self.costs.rows_uploaded += len(rows)

    def batches(self, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """The result with the warehouse's types: Arrow batches where the connector offers them, else rows."""
        cursor = self._cursor(sql)
        started = time.perf_counter()
        try:
            for batch in driver_arrow_batches(cursor, chunk_rows) or rows_as_batches(cursor, chunk_rows):
                self.costs.rows_returned += batch.num_rows
                yield batch
        except self._errors as exc:
            raise _failed(exc) from exc
        finally:
            self.costs.seconds += time.perf_counter() - started
            cursor.close()

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        for batch in self.batches(sql, chunk_rows):
            yield _as_strings(batch)

    def commit(self) -> None:
        self.conn.commit()

    def duckdb_connection(self) -> None:
        return None

    def close(self) -> None:
        self.conn.close()


def snowflake_connection(url: str):
    """(a snowflake-connector connection, its error class) for a ``snowflake://`` URL; ConfigError if it cannot
    connect. Query parameters other than ``warehouse``/``role`` go to ``snowflake.connector.connect`` as given."""
    import snowflake.connector  # an optional dependency: only a Snowflake project needs it

    errors = snowflake.connector.errors.Error
    parsed = sa.engine.make_url(url)
    database, _, schema = (parsed.database or "").partition("/")
    options: dict[str, object] = {k: (int(v) if k == "port" else v) for k, v in parsed.query.items()}
    options.update({k: v for k, v in (("user", parsed.username), ("password", parsed.password), ("account", parsed.host),
                                      ("database", database), ("schema", schema)) if v})
    try:
        return snowflake.connector.connect(autocommit=False, **options), errors
    except errors as exc:
        raise ConfigError(f"cannot connect to the Snowflake warehouse: {exc.msg if hasattr(exc, 'msg') else exc}") from exc


class _SparkSession:
    def __init__(self) -> None:
        from pyspark.errors import PySparkException  # an optional dependency: only a Spark project needs it
        from pyspark.sql import SparkSession

        self._errors = PySparkException
        self.spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        self.dialect = DIALECTS["spark"]()
        self.costs = WarehouseCosts(engine="spark")
        self._views: set[str] = set()

    def _sql(self, sql: str):
        try:
            return self.spark.sql(sql)  # commands run here, eagerly
        except self._errors as exc:
            raise _failed(exc) from exc

    def run(self, sql: str) -> None:
        with _metered(self.costs):
            self._sql(sql)

    def rows(self, sql: str) -> list[tuple]:
        with _metered(self.costs):
            try:
                found = [tuple(r) for r in self._sql(sql).collect()]
            except self._errors as exc:
                raise _failed(exc) from exc
        self.costs.rows_returned += len(found)
        return found

    def columns(self, sql: str) -> list[str]:
        with _metered(self.costs):
            return list(self._sql(sql).columns)  # analysed, not run

    def fill(self, table: str, columns: list[str], values: list[Sequence[str]]) -> None:
        with _metered(self.costs):
            arrow = pa.table({c: pa.array(list(v), pa.string()) for c, v in zip(columns, values)})
            self.spark.createDataFrame(arrow).createOrReplaceTempView(table)
        self._views.add(table)
        self.costs.rows_uploaded += arrow.num_rows

    def stream(self, sql: str, chunk_rows: int) -> Iterator[list[pa.Array]]:
        started = time.perf_counter()
        frame = self._sql(sql)
        self.costs.statements += 1
        width = len(frame.columns)
        rows = frame.toLocalIterator()  # one partition at a time, not the whole result
        try:
            while chunk := list(islice(rows, chunk_rows)):
                self.costs.rows_returned += len(chunk)
                yield _strings(chunk, width)
        except self._errors as exc:
            raise _failed(exc) from exc
        finally:
            self.costs.seconds += time.perf_counter() - started

    def commit(self) -> None:
        """Spark has no transactions: ``WarehouseDiff.catch_up`` orders its writes so a cut leaves a replayable state."""

    def duckdb_connection(self) -> None:
        return None

    def close(self) -> None:
        for view in self._views:
            self.spark.catalog.dropTempView(view)
