"""A member row's fingerprint: md5 of the raw values a sync sends, to tell which rows changed.

The ledger keeps it as 32 hex digits (portable: every warehouse has ``md5``). Inside DuckDB the diff
compares ``md5_number``, the same digest as an unsigned 128-bit number, which joins three times
faster than text; ``number_from_hex`` converts the ledger's form. Parquet has no 128-bit integer, so
snapshots store the two 64-bit halves.
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1


def concat_sql(parts: list[str]) -> str:
    """The text that is hashed: the parts joined by the unit separator, NULL shown as ``chr(30)``."""
    return "concat_ws(chr(31), " + ", ".join(f"coalesce(CAST({p} AS VARCHAR), chr(30))" for p in parts) + ")"


def number_from_hex(expr: str) -> str:
    """DuckDB SQL: ``md5_number`` of a value, from its ``md5`` hex (``md5_number`` reads the digest little-endian)."""
    low = " || ".join(f"substr({expr}, {i}, 2)" for i in range(15, 0, -2))
    high = " || ".join(f"substr({expr}, {i}, 2)" for i in range(31, 16, -2))
    return f"((('0x' || {high})::UBIGINT::UHUGEINT << 64) | ('0x' || {low})::UBIGINT::UHUGEINT)"


def byte_reversed_hex(expr: str) -> str:
    """SQL: the md5 hex ``expr`` with its bytes reversed, which sorts like ``md5_number`` (a warehouse
    without it keeps the same row of a repeated key as the local mode: the smallest ``md5_number``)."""
    return " || ".join(f"substr({expr}, {i}, 2)" for i in range(31, 0, -2))


def halves(expr: str) -> str:
    return f"({expr} >> 64)::UBIGINT AS fp_hi, ({expr} & {_MASK64}::UHUGEINT)::UBIGINT AS fp_lo"


def from_halves() -> str:
    return "(fp_hi::UHUGEINT << 64) | fp_lo::UHUGEINT"
