"""Distinct rows of a few Arrow columns, so the columnar fast path decides each repeated value once.

``distinct_rows(columns)`` returns one representative row per distinct combination of values (nulls
count as one value) and, for every row, the position of its combination, so results computed on
the representatives are joined back with a ``take``. Rows with the same values get the same answer
from every rule of ``syncer.identity`` (they are functions of the text and the region alone), so
deciding one of them decides all.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["distinct_rows"]

#: Below this share of distinct rows the take and join back cost less than they save.
WORTH = 0.9
#: Numbering a column of distinct strings costs about a fifth of deciding them, so a strided sample
#: of this many rows is numbered first, and the whole column only when the sample repeats values
#: (a column of blanks, placeholders or a few test numbers).
SAMPLE = 8192


def distinct_rows(columns: list[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(representative rows, each row's index among them), or None when (nearly) every row is distinct."""
    n = len(columns[0])
    if n > 4 * SAMPLE:
        rows = pa.array(np.arange(0, n, n // SAMPLE))
        if _distinct_share([col.take(rows) for col in columns]) > WORTH:
            return None
    return _distinct(columns, n)


def _distinct_share(columns: list[pa.Array | pa.ChunkedArray]) -> float:
    found = _distinct(columns, len(columns[0]), worth=1.0)
    return 1.0 if found is None else len(found[0]) / len(columns[0])


def _distinct(columns: list[pa.Array | pa.ChunkedArray], n: int,
              worth: float = WORTH) -> tuple[np.ndarray, np.ndarray] | None:
    code: np.ndarray | None = None
    count = 1
    for col in columns:
        codes, size = _codes(col)
        if codes is None:
            return None
        code = codes if code is None else code * size + codes
        count *= size
    if code is None or n == 0:
        return None
    if len(columns) > 1:  # the combined codes are sparse: number them again
        encoded = pa.array(code).dictionary_encode()
        code, count = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)
    else:
        count = int(code.max()) + 1
    if count > worth * n:
        return None
    rep = np.empty(count, dtype=np.int64)
    rep[code] = np.arange(n)  # any row of a combination will do
    return rep, code


def _codes(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray | None, int]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    try:
        encoded = col.dictionary_encode()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return None, 0
    size = len(encoded.dictionary) + 1
    return encoded.indices.fill_null(size - 1).to_numpy(zero_copy_only=False).astype(np.int64), size
