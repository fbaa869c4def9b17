"""Reading segments out of a warehouse in the ``local`` mode, in bounded chunks of Arrow record batches.

Columnar where the driver offers it, so rows never pass through Python one by one:

- Snowflake (``snowflake://``, the connector itself): ``fetch_arrow_batches``; fakesnow, the test double,
  has no such method, so there the rows are fetched with ``fetchmany`` and converted per chunk.
- BigQuery (``bigquery://``, sqlalchemy-bigquery): the query job's ``to_arrow_iterable``, over the
  Storage Read API when google-cloud-bigquery-storage is installed, else over tabledata.list pages
  (https://cloud.google.com/python/docs/reference/bigquery/latest/google.cloud.bigquery.table.RowIterator#google_cloud_bigquery_table_RowIterator_to_arrow_iterable).
- Databricks (``databricks://``, databricks-sqlalchemy): the connector's ``fetchmany_arrow``.
- DuckDB files never come here: ``syncer.planning.segment`` attaches them read-only and queries them in place.
- Anything else (Postgres among them): SQLAlchemy rows from a server-side cursor (``stream_results``),
  converted chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import sqlalchemy as sa

from syncer.environment import scheme_of
from syncer.errors import ConfigError
from syncer.planning.warehouse_sessions import driver_arrow_batches, rows_as_batches, snowflake_connection


def extract(url: str, sql: str, *, chunk_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` and yield its rows as record batches of at most ``chunk_rows`` rows."""
    if scheme_of(url) == "snowflake":
        yield from _snowflake(url, sql, chunk_rows)
        return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name in ("bigquery", "databricks"):
                yield from _driver_arrow(conn, sql, chunk_rows)
                return
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(sa.text(sql))
            except sa.exc.SQLAlchemyError as exc:
                raise _failed(exc.__class__.__name__, exc.orig if hasattr(exc, "orig") else exc) from exc
            names = list(result.keys())
            for rows in result.partitions(chunk_rows):
                columns = list(zip(*rows)) if rows else [[] for _ in names]
                yield pa.record_batch([pa.array(list(col)) for col in columns], names=names)
    finally:
        engine.dispose()


def _failed(kind: str, why: object) -> ConfigError:
    return ConfigError(f"segment query failed in the warehouse: {kind}: {why}")


def _snowflake(url: str, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    conn, errors = snowflake_connection(url)
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            yield from driver_arrow_batches(cursor, chunk_rows) or rows_as_batches(cursor, chunk_rows)
        except errors as exc:
            raise _failed(type(exc).__name__, getattr(exc, "msg", None) or exc) from exc
        finally:
            cursor.close()
    finally:
        conn.close()


def _driver_arrow(conn: sa.Connection, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """BigQuery's and Databricks' results as Arrow, through their own DB-API connection."""
    raw = conn.connection.driver_connection
    errors = conn.dialect.loaded_dbapi.Error
    try:
        if conn.dialect.name == "bigquery":  # google.cloud.bigquery.dbapi.Connection keeps its clients
            rows = raw._client.query(sql).result(page_size=chunk_rows)
            for batch in rows.to_arrow_iterable(bqstorage_client=getattr(raw, "_bqstorage_client", None)):
                yield from pa.Table.from_batches([batch]).to_batches(chunk_rows)
            return
        cursor = raw.cursor()
        try:
            cursor.execute(sql)
            yield from driver_arrow_batches(cursor, chunk_rows) or rows_as_batches(cursor, chunk_rows)
        finally:
            cursor.close()
    except errors as exc:
        raise _failed(type(exc).__name__, exc) from exc
    except Exception as exc:  # noqa: BLE001  (google.api_core errors are not the DB-API's)
        if type(exc).__module__.startswith(("google.", "databricks.")):
            raise _failed(type(exc).__name__, exc) from exc
        raise
