"""Reading segments out of the warehouse, in bounded chunks of Arrow record batches.

DuckDB files are read through DuckDB's own client (columnar, zero-copy to Arrow, read-only so the
warehouse is never locked for writers longer than a query). Every other SQLAlchemy URL is read with a
server-side cursor (``stream_results``) and converted chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import sqlalchemy as sa

from syncer.errors import ConfigError


def _duckdb_path(url: str) -> str | None:
    if url.startswith("duckdb:///"):
        return url.removeprefix("duckdb:///") or ":memory:"
    return None


def extract(url: str, sql: str, *, chunk_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` and yield its rows as record batches of at most ``chunk_rows`` rows."""
    path = _duckdb_path(url)
    if path is not None:
        yield from _extract_duckdb(path, sql, chunk_rows)
    else:
        yield from _extract_sqlalchemy(url, sql, chunk_rows)


def _extract_duckdb(path: str, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    import duckdb

    try:
        con = duckdb.connect(path, read_only=path != ":memory:")
    except duckdb.IOException as exc:
        raise ConfigError(f"cannot open the DuckDB warehouse {path}: {exc}") from exc
    try:
        try:
            reader = con.sql(sql).to_arrow_reader(chunk_rows)
        except duckdb.Error as exc:
            raise ConfigError(f"segment query failed in the warehouse: {exc}") from exc
        for batch in reader:
            if batch.num_rows:
                yield batch
    finally:
        con.close()


def _extract_sqlalchemy(url: str, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(sa.text(sql))
            except sa.exc.SQLAlchemyError as exc:
                raise ConfigError(f"segment query failed in the warehouse: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
            names = list(result.keys())
            for rows in result.partitions(chunk_rows):
                columns = list(zip(*rows)) if rows else [[] for _ in names]
                yield pa.record_batch([pa.array(list(col)) for col in columns], names=names)
    finally:
        engine.dispose()
