"""Reading segments out of any SQLAlchemy warehouse, in bounded chunks of Arrow record batches.

Rows are read with a server-side cursor (``stream_results``) and converted chunk by chunk. DuckDB
warehouse files never come here: ``syncer.planning.local_diff`` attaches them read-only and queries them in place.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import sqlalchemy as sa

from syncer.errors import ConfigError


def extract(url: str, sql: str, *, chunk_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` and yield its rows as record batches of at most ``chunk_rows`` rows."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(sa.text(sql))
            except sa.exc.SQLAlchemyError as exc:
                raise ConfigError(f"segment query failed in the warehouse: {exc.__class__.__name__}: "
                                  f"{exc.orig if hasattr(exc, 'orig') else exc}") from exc
            names = list(result.keys())
            for rows in result.partitions(chunk_rows):
                columns = list(zip(*rows)) if rows else [[] for _ in names]
                yield pa.record_batch([pa.array(list(col)) for col in columns], names=names)
    finally:
        engine.dispose()
