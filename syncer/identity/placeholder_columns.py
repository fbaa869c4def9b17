"""``syncer.identity.placeholders`` over Arrow columns, for the columnar fast path.

Each function answers, row by row, what its per-value twin in ``syncer.identity.placeholders``
answers, from the same data: a set lookup becomes ``is_in``, a whole-string ``re`` pattern the same
pattern anchored for RE2 (the patterns use only what both engines read alike), and the email
prefix and suffix tests stay prefix and suffix tests (far cheaper than a regex over every row).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncer.identity.placeholders import FICTIONAL_RANGES, NO_REPLY_PREFIXES, PLACEHOLDER_ADDRESSES, RESERVED_SUFFIXES, RUN_NUMBERS

__all__ = ["placeholder_emails", "placeholder_phones"]

_RUNS = pa.array(sorted(RUN_NUMBERS), pa.string())
_ADDRESSES = pa.array(sorted(PLACEHOLDER_ADDRESSES), pa.string())
_FICTIONAL = {cc: f"^(?:{pattern})$" for cc, pattern in FICTIONAL_RANGES.items()}


def placeholder_phones(cc: int, nsn: pa.Array) -> np.ndarray:
    """``placeholder_phone`` for a column of national significant numbers sharing one country code."""
    fake = _mask(pc.is_in(nsn, value_set=_RUNS))
    pattern = _FICTIONAL.get(cc)
    if pattern is not None and len(nsn):
        fake |= _mask(pc.match_substring_regex(nsn, pattern))
    return fake


def placeholder_emails(addresses: pa.Array) -> np.ndarray:
    """``placeholder_email`` for a column of valid, normalised ASCII addresses (nulls are False)."""
    fake = _mask(pc.is_in(addresses, value_set=_ADDRESSES))
    for prefix in NO_REPLY_PREFIXES:
        fake |= _mask(pc.starts_with(addresses, prefix))
    for suffix in RESERVED_SUFFIXES:
        fake |= _mask(pc.ends_with(addresses, suffix))
    return fake


def _mask(values: pa.Array) -> np.ndarray:
    return values.fill_null(False).to_numpy(zero_copy_only=False)
