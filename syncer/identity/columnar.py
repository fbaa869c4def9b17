"""Columnar identity: ``identify_many``'s results for a whole Arrow table, computed a column at a time.

``identify_columns(table, kinds, platform=..., region=..., region_column=...)`` returns a table with
one string column per kind (the encoded value, null when the kind is not among the row's
identifiers), ``reason`` (null when the row can be sent) and ``dropped`` (``kind:reason`` pairs in
``kinds`` order, null when nothing was dropped). Row for row it equals ``identity.identify_many`` on
the same arguments; ``to_identified`` turns it back into ``Identified`` objects to check that.

How it stays exact
    A vectorised path decides the values it can prove, and every other value goes through the
    per-value rule ``identify_many`` would run on it (the same normaliser, text and region), its
    answer spliced in; so a value the fast path is unsure of costs what it costs row by row, never
    a different answer. Only the undecided values go that way, not their rows: a fast plan (email
    and phone) has no address group, so each value's fate is its own, and the row's ``reason`` and
    ``dropped`` are then built from the per-kind outcomes as ``identify_many`` builds them. The
    fast path covers ``email`` and ``phone`` text (and integer) columns; a table with any other
    kind goes wholly to ``identify_many`` (those kinds only ever arrive with small audiences). How
    many rows needed the per-value rules is in the schema metadata (``fallback_rows``).

    repeats each kind is decided once per distinct value (with its region, for phones) and joined
            back (``syncer.identity.distinct``; a sample of the column says first whether it repeats).
    email   after ``raw_text``'s strip (``syncer.identity.phone_text.strip_text``), printable ASCII
            values, and values that ``emails.email``'s NFKC folding turns into lower-case ASCII
            (full-width forms), folded in Python once per distinct value: on those the rules take
            their ASCII branch (ASCII lower-casing is ``str.lower`` there). Accepted when
            a strict RE2 pattern (a subset of ``syncer.identity.emails``' rules) matches, the
            local part is at most 64 characters, the domain at most 63 and no ``--`` appears;
            then the placeholder addresses are refused and the Data Manager Gmail rule applied.
            Rejected as ``invalid_email`` when even a loose pattern that every valid address
            matches fails. Everything between (long domains, ``xn--`` labels, a top-level label
            starting with a digit) and any other value with a non-ASCII, control or inner whitespace
            character is left to the fallback.
    phone   see ``syncer.identity.phone_patterns`` for the exact conditions.
    hashing lowercase hex SHA-256 per value with CPython's built-in SHA-256 (measured faster than
            ``hashlib``'s OpenSSL object and DuckDB's ``sha256()`` for short values on this
            machine, whose two cores give one core's throughput).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncer.identity import emails, phones
from syncer.identity import rows as identity
from syncer.identity.countries import resolve_country
from syncer.identity.distinct import distinct_rows
from syncer.identity.emails import ATEXT, GMAIL_DOMAINS
from syncer.identity.kinds import InvalidIdentifier, raw_text
from syncer.identity.phone_patterns import MISSING, OK, REJECTED, UNDECIDED, columnar_e164
from syncer.identity.phone_text import strip_text
from syncer.identity.placeholder_columns import placeholder_emails
from syncer.identity.placeholders import PLACEHOLDER
from syncer.identity.rows import Identified

try:  # CPython's own SHA-256 object: the same digest as hashlib's, with less set-up per call
    from _sha2 import sha256 as _sha256
except ImportError:  # pragma: no cover - interpreter dependent
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

__all__ = ["FALLBACK_ROWS_KEY", "fallback_rows", "identify_columns", "to_identified"]

FALLBACK_ROWS_KEY = b"fallback_rows"
_PRINTABLE = r"^[!-~]*$"  # printable ASCII, no space: nothing str.strip or str.lower treat differently
# A subset of what emails.email accepts: a dot-atom, labels of letters and digits joined by single
# hyphens (so no "--", hence no reserved or xn-- label), a top-level label that starts with a letter.
# With the lengths checked apart, every match is valid there. Only printable ASCII can match.
_LABEL = "[a-z0-9](?:[a-z0-9]|-[a-z0-9])*"
_EMAIL = rf"^[{ATEXT}]+(?:\.[{ATEXT}]+)*@(?:{_LABEL}\.)+[a-z](?:[a-z0-9]|-[a-z0-9])+$"
# A superset: every address emails.email accepts matches it, so a printable value that does not is invalid.
_LOOSE_EMAIL = r"^[^@]+@[^@.]+(?:\.[^@.]+)*\.[^@.]{2,}$"
_MAX_LOCAL = 64
_MAX_DOMAIN_DECIDED = 63  # then no label is over 63 and the address is under 254: longer ones go to the rules
_GMAIL = pa.array(sorted(GMAIL_DOMAINS))


def identify_columns(
    table: pa.Table | pa.RecordBatch,
    kinds: Sequence[str],
    *,
    platform: str,
    region: str | None,
    region_column: str | None = None,
) -> pa.Table:
    """``identity.identify_many`` for an Arrow table, as columns (see the module docstring).

    Raises:
        The same errors as ``identify_many``: UnsupportedKindError for a kind the platform has no
        field for, ValueError for an unknown platform, a bad ``region``, empty or repeated ``kinds``,
        or a ``region_column`` not in the table.
    """
    plan = identity._plan(platform, tuple(kinds))
    default_region = identity._default_region(region)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if region_column is not None and region_column not in table.column_names:
        raise ValueError(f"region column {region_column!r} is not in the table")
    n = table.num_rows
    fast = all(_fast_kind(fn) for _, fn, _, _ in plan.steps)
    columns: dict[str, pa.Array] = {}
    statuses, reasons = [], []
    if fast:
        regions = _phone_regions(table, region_column, default_region, n)
        by_rules = np.zeros(n, dtype=bool)
        for kind, fn, hashed, _ in plan.steps:
            columns[kind], status, reason, undecided = _distinct_kind(table, kind, fn, hashed, regions)
            by_rules |= undecided
            statuses.append(status)
            reasons.append(reason)
        slow = np.zeros(0, dtype=np.int64)
        fallback = int(by_rules.sum())
    else:
        slow = np.arange(n)
        fallback = n
    reason, dropped = _row_outcome(plan.kinds, statuses, reasons, n)
    out = {kind: columns.get(kind, pa.nulls(n, pa.string())) for kind in plan.kinds}
    out["reason"], out["dropped"] = reason, dropped
    if len(slow):
        _splice(out, plan.kinds, slow,
                identity.identify_many(table.take(pa.array(slow)), kinds, platform=platform, region=region,
                                       region_column=region_column))
    result = pa.table({name: _as_string(col) for name, col in out.items()})
    return result.replace_schema_metadata({FALLBACK_ROWS_KEY: str(fallback).encode()})


def _distinct_kind(table: pa.Table, kind: str, fn: Callable[[str, str | None], str], hashed: bool,
                   regions: pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array, np.ndarray]:
    """``_one_kind`` on each distinct value (with its region, for phones: emails read no region), joined back."""
    if kind not in table.column_names:
        return _one_kind(table, kind, fn, hashed, regions)
    column = table.column(kind).combine_chunks()  # one chunk: strided takes across chunks are slow
    table = pa.table({kind: column})
    distinct = distinct_rows([column, regions] if kind == "phone" else [column])
    if distinct is None:
        return _one_kind(table, kind, fn, hashed, regions)
    rep, inverse = pa.array(distinct[0]), distinct[1]
    values, status, reason, undecided = _one_kind(table.take(rep), kind, fn, hashed, regions.take(rep))
    back = pa.array(inverse)
    return values.take(back), status[inverse], reason.take(back), undecided[inverse]


def _one_kind(table: pa.Table, kind: str, fn: Callable[[str, str | None], str], hashed: bool,
              regions: pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array, np.ndarray]:
    """(encoded value or null, status, reason or null, rows the per-value rules decided) for one kind."""
    values, status, reason = _decide(table, kind, fn, regions)
    undecided = status == UNDECIDED
    if undecided.any():
        values, reason = _by_the_rules(table, kind, fn, regions, values, status, reason, undecided)
    return (_sha_hex(values) if hashed else values), status, reason, undecided


def _decide(table: pa.Table, kind: str, fn: object, regions: pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """The vectorised rules for one kind: (value or null, status per row, reason or null)."""
    n = table.num_rows
    raw = _text(table, kind, n)
    if raw is None:
        return pa.nulls(n, pa.string()), _unread(table.column(kind)), pa.nulls(n, pa.string())
    if kind == "email":
        return _emails(raw, fn is emails.email_data_manager)
    values, status, reason = columnar_e164(raw, regions)
    if fn is phones.e164_digits:
        values = pc.utf8_slice_codeunits(values, 1)
    return values, status, reason


def _by_the_rules(table: pa.Table, kind: str, fn: Callable[[str, str | None], str], regions: pa.Array,
                  values: pa.Array, status: np.ndarray, reason: pa.Array,
                  undecided: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Decide the ``undecided`` values of one kind with the per-value rules, exactly as ``identify_many`` does.

    A fast plan has no address group and no ``country`` kind, so each value's fate is its own, and
    the region ``identify_many`` hands every kind of the row is the phone region. Updates ``status``
    in place; returns the spliced values and reasons. Repeated (text, region) pairs are read once.
    """
    rows = np.flatnonzero(undecided)
    index = pa.array(rows)
    raws = table.column(kind).take(index).to_pylist() if kind in table.column_names else [None] * len(rows)
    memo: dict[tuple[str, str | None], tuple[int, str | None, str | None]] = {}
    got_values, got_reasons = [], []
    for i, (raw, row_region) in enumerate(zip(raws, regions.take(index).to_pylist())):
        try:
            key = (raw_text(raw, kind), row_region)
        except InvalidIdentifier as exc:
            outcome = (MISSING, None, None) if exc.reason == "missing" else (REJECTED, None, exc.reason)
        else:
            outcome = memo.get(key) or memo.setdefault(key, _outcome(fn, *key))
        status[rows[i]] = outcome[0]
        got_values.append(outcome[1])
        got_reasons.append(outcome[2])
    where = np.arange(len(status), dtype=np.int64)
    where[rows] = len(status) + np.arange(len(rows))
    spliced = [pa.concat_arrays([_as_string(old), pa.array(new, pa.string())]).take(pa.array(where))
               for old, new in ((values, got_values), (reason, got_reasons))]
    return spliced[0], spliced[1]


def _outcome(fn: Callable[[str, str | None], str], text: str, region: str | None) -> tuple[int, str | None, str | None]:
    try:
        return OK, fn(text, region), None
    except InvalidIdentifier as exc:
        return (MISSING, None, None) if exc.reason == "missing" else (REJECTED, None, exc.reason)


def fallback_rows(result: pa.Table) -> int:
    """How many rows of an ``identify_columns`` result needed the per-value rules for at least one identifier."""
    return int((result.schema.metadata or {}).get(FALLBACK_ROWS_KEY, b"0"))


def to_identified(result: pa.Table) -> list[Identified]:
    """The ``Identified`` of each row of an ``identify_columns`` result (the form the planner and the tests read)."""
    kinds = [name for name in result.column_names if name not in ("reason", "dropped")]
    values = [result.column(kind).to_pylist() for kind in kinds]
    out = []
    for i, (reason, dropped) in enumerate(zip(result.column("reason").to_pylist(),
                                              result.column("dropped").to_pylist())):
        identifiers = {kind: col[i] for kind, col in zip(kinds, values) if col[i] is not None}
        pairs = dict(pair.split(":", 1) for pair in dropped.split(",")) if dropped else {}
        out.append(Identified(identifiers, pairs, reason))
    return out


# --- inputs --------------------------------------------------------------------------------------


def _fast_kind(fn: object) -> bool:
    return fn in (emails.email, emails.email_data_manager, phones.e164, phones.e164_digits)


def _text(table: pa.Table, kind: str, n: int) -> pa.StringArray | None:
    """The column as one string array (ints as ``str(int)``, like ``raw_text``); None for other types."""
    if kind not in table.column_names:
        return pa.nulls(n, pa.string())
    col = table.column(kind)
    kind_type = col.type
    if pa.types.is_dictionary(kind_type):
        col, kind_type = col.cast(kind_type.value_type), kind_type.value_type
    if not (pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type)
            or pa.types.is_integer(kind_type) or pa.types.is_null(kind_type)):
        return None
    col = col.cast(pa.string())
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _unread(col: pa.ChunkedArray) -> np.ndarray:
    status = np.full(len(col), UNDECIDED, dtype=np.int8)
    status[col.is_null().to_numpy()] = MISSING
    return status


def _phone_regions(table: pa.Table, region_column: str | None, default: str | None, n: int) -> pa.Array:
    """Each row's phone region: its own country when that resolves, else the segment default."""
    if region_column is None:
        return pa.array([default] * n, pa.string()) if n else pa.nulls(0, pa.string())
    col = table.column(region_column)
    col_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)):
        return pa.array([default] * n, pa.string())  # resolve_country only reads str
    encoded = col.cast(pa.string()).combine_chunks().dictionary_encode()
    resolved = [resolve_country(v) or default for v in encoded.dictionary.to_pylist()]
    regions = pa.array(resolved, pa.string()).take(encoded.indices)
    return regions.fill_null(default) if default is not None else regions


# --- email ---------------------------------------------------------------------------------------


def _emails(raw: pa.StringArray, data_manager: bool) -> tuple[pa.Array, np.ndarray, pa.Array]:
    n = len(raw)
    trimmed, proved, ascii_rows = strip_text(raw)
    status = np.full(n, UNDECIDED, dtype=np.int8)
    empty = pc.binary_length(trimmed).fill_null(0).to_numpy(zero_copy_only=False) == 0
    status[empty] = MISSING
    address, readable = _ascii_addresses(trimmed, proved, ascii_rows)
    valid = _mask(pc.match_substring_regex(address, _EMAIL))  # only printable ASCII can match
    if valid.any():  # exact lengths for the local part; long domains go to the rules
        local_len = pc.find_substring(address, "@").fill_null(0).to_numpy(zero_copy_only=False)
        domain_len = pc.binary_length(address).fill_null(0).to_numpy(zero_copy_only=False) - local_len - 1
        valid &= (local_len <= _MAX_LOCAL) & (domain_len <= _MAX_DOMAIN_DECIDED)
    rest = ~valid & ~empty & readable
    invalid = _rows_failing(address, rest & _rows_matching(address, rest, _PRINTABLE), _LOOSE_EMAIL)
    fake = valid & placeholder_emails(address) if valid.any() else np.zeros(n, dtype=bool)
    valid &= ~fake
    if data_manager and valid.any():
        address, emptied = _gmail_rule(address, valid)
        invalid |= emptied
        valid &= ~emptied
    status[valid] = OK
    status[invalid | fake] = REJECTED
    values = pc.if_else(pa.array(valid), address, pa.scalar(None, pa.string()))
    reason = pc.if_else(pa.array(fake), pa.scalar(PLACEHOLDER), pa.scalar(None, pa.string()))
    reason = pc.if_else(pa.array(invalid), pa.scalar("invalid_email"), reason)
    return values, status, reason


def _ascii_addresses(trimmed: pa.StringArray, proved: np.ndarray,
                     ascii_rows: np.ndarray) -> tuple[pa.StringArray, np.ndarray]:
    """(the address ``emails.email`` reads, rows where that is ASCII and proved).

    ASCII text is lower-cased; other text is folded as ``emails.email`` folds it (NFKC, lower,
    NFKC, in Python, once per distinct value) and kept when the result is ASCII and already lower
    case, since the rules then take their ASCII branch on exactly that address. The rest stays
    as it is, to match no pattern here and go to the rules.
    """
    address = pc.ascii_lower(trimmed)
    other = np.flatnonzero(proved & ~ascii_rows & ~trimmed.is_null().to_numpy(zero_copy_only=False))
    if len(other) == 0:
        return address, ascii_rows & proved
    texts = trimmed.take(pa.array(other))
    encoded = texts.dictionary_encode()
    folded = [_fold_ascii(text) for text in encoded.dictionary.to_pylist()]
    got = pa.array(folded, pa.string()).take(encoded.indices)
    ok = got.is_valid().to_numpy(zero_copy_only=False)
    where = np.arange(len(trimmed), dtype=np.int64)
    where[other[ok]] = len(trimmed) + np.flatnonzero(ok)
    readable = ascii_rows & proved
    readable[other[ok]] = True
    return pa.concat_arrays([address, got]).take(pa.array(where)), readable


def _fold_ascii(text: str) -> str | None:
    folded = emails._fold(text)
    return folded if folded.isascii() and folded == folded.lower() else None


def _mask(values: pa.Array) -> np.ndarray:
    return values.fill_null(False).to_numpy(zero_copy_only=False)


def _rows_matching(values: pa.Array, rows: np.ndarray, pattern: str) -> np.ndarray:
    """Among ``rows``, those whose value matches ``pattern`` (the regex runs on those rows only)."""
    out = np.zeros(len(values), dtype=bool)
    if rows.any():
        out[rows] = _mask(pc.match_substring_regex(values.filter(pa.array(rows)), pattern))
    return out


def _rows_failing(values: pa.Array, rows: np.ndarray, pattern: str) -> np.ndarray:
    """Among ``rows``, those whose value does not match ``pattern``."""
    return rows & ~_rows_matching(values, rows, pattern)


def _gmail_rule(address: pa.Array, valid: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """``email_data_manager``: for Gmail domains drop the ``+tag`` and the dots of the local part."""
    parts = pc.extract_regex(address, r"^(?P<local>[^@]*)@(?P<domain>[^@]*)$")
    local, domain = pc.struct_field(parts, "local"), pc.struct_field(parts, "domain")
    gmail = pc.is_in(domain, value_set=_GMAIL).fill_null(False).to_numpy(zero_copy_only=False) & valid
    if not gmail.any():
        return address, np.zeros(len(address), dtype=bool)
    untagged = pc.struct_field(pc.extract_regex(local, r"^(?P<head>[^+]*)"), "head")
    bare = pc.replace_substring(untagged, ".", "")
    emptied = gmail & (pc.binary_length(bare).fill_null(0).to_numpy(zero_copy_only=False) == 0)
    rewritten = pc.binary_join_element_wise(bare, domain, "@")
    return pc.if_else(pa.array(gmail), rewritten, address), emptied


# --- hashing and rows ------------------------------------------------------------------------------


def _sha_hex(values: pa.Array) -> pa.Array:
    """Lowercase hex SHA-256 of each non-null value's UTF-8 bytes; nulls stay null."""
    present = values.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(present)
    if len(rows) == 0:
        return pa.nulls(len(values), pa.string())
    data = (values if len(rows) == len(values) else values.filter(pa.array(present))).cast(pa.binary())
    sha = _sha256
    digests = pa.array([sha(b).hexdigest() for b in data.to_pylist()], pa.string())
    if len(rows) == len(values):
        return digests
    where = np.full(len(values), len(rows), dtype=np.int64)
    where[rows] = np.arange(len(rows))
    return pa.concat_arrays([digests, pa.nulls(1, pa.string())]).take(pa.array(where))


def _row_outcome(kinds: Sequence[str], statuses: list[np.ndarray], reasons: list[pa.Array],
                 n: int) -> tuple[pa.Array, pa.Array]:
    """``reason`` and ``dropped`` as ``_row_encoder`` builds them (no address group on the fast path)."""
    if not statuses:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    any_ok = np.any(np.stack(statuses) == OK, axis=0)
    reason: pa.Array = pa.array(np.where(any_ok, None, "no_identifier"), pa.string())
    for status, why in zip(reversed(statuses), reversed(reasons)):  # the first dropped kind wins
        reason = pc.if_else(pa.array((status == REJECTED) & ~any_ok), why, reason)
    parts = [pc.if_else(pa.array(status == REJECTED), pc.binary_join_element_wise(kind, why, ":"), "")
             for kind, status, why in zip(kinds, statuses, reasons)]
    # Joined with empty parts, then the spare commas removed: pyarrow 26's null_handling="skip" loses rows.
    dropped = pc.binary_join_element_wise(*parts, ",") if len(parts) > 1 else parts[0]
    dropped = pc.utf8_trim(pc.replace_substring_regex(dropped, ",,+", ","), ",")
    dropped = pc.if_else(pc.equal(dropped, ""), pa.scalar(None, pa.string()), dropped)
    return reason, dropped


def _splice(out: dict[str, pa.Array], kinds: Sequence[str], rows: np.ndarray, slow: list[Identified]) -> None:
    """Put ``identify_many``'s answers for ``rows`` in place of the fast path's."""
    n = len(out["reason"])
    where = np.arange(n, dtype=np.int64)
    where[rows] = n + np.arange(len(rows))
    index = pa.array(where)
    fresh = {kind: [ident.identifiers.get(kind) for ident in slow] for kind in kinds}
    fresh["reason"] = [ident.reason for ident in slow]
    fresh["dropped"] = [",".join(f"{k}:{ident.dropped[k]}" for k in kinds if k in ident.dropped) or None
                        for ident in slow]
    for name, values in fresh.items():
        out[name] = pa.concat_arrays([_as_string(out[name]), pa.array(values, pa.string())]).take(index)


def _as_string(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col if col.type == pa.string() else col.cast(pa.string())
