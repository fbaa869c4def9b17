"""Identifier dicts as the canonical JSON the ledger stores and the plan hashes (sorted keys, compact,
ASCII-escaped, exactly ``json.dumps``), encoded and decoded in bulk.

Millions of rows pass through here on an initial sync: ``dumps_many`` encodes a whole batch in one call
and cuts it apart, and ``loads`` is orjson's parser (same values, several times faster). Encoding stays
with the standard library so the stored text never changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import orjson

dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
loads = orjson.loads


def dumps_many(dicts: Sequence[Mapping[str, str]]) -> list[str]:
    """``[dumps(d) for d in dicts]``, in one encode cut at the "},{" between objects; if a value holds "},{"
    itself there are more pieces than dicts, and each is encoded alone."""
    if not dicts:
        return []
    pieces = dumps(list(dicts))[2:-2].split("},{")
    if len(pieces) != len(dicts) or "" in pieces and any(dicts):
        return [dumps(d) for d in dicts]
    return ["{" + piece + "}" for piece in pieces]
