"""Columnar E.164 for the common phone shapes, built from ``phonenumbers``' own metadata.

``columnar_e164(texts, regions)`` takes a column of raw phone text and each row's region (ISO
alpha-2, or null) and returns, per row, the E.164 text that ``syncer.identity.phones.e164`` would
give, a reason it would give (``phone_no_country``, ``placeholder``), or "undecided". It only
decides a value when it can prove ``phonenumbers.parse`` plus ``is_valid_number`` would reach the
same answer; everything else is undecided and the caller hands it to the per-value rules.
Declining is always safe; accepting a number ``phonenumbers`` would read differently is the bug
this module must never have.

What is decided (every other value is undecided)
    - the text first goes through ``syncer.identity.phone_text``: null, or blank after
      ``raw_text``'s strip, is ``missing``; a letter outside an extension is ``invalid_phone``; an
      extension is dropped; Unicode digits and no-break spaces become ASCII; a full-width plus is
      read as ``+`` (with no region it is ``phone_no_country``, as ``e164`` does not see it as a plus).
    - then ASCII only, made of digits and `` ().-`` separators, with at most one ``+`` and only first.
    - ``+`` form: the country code is the shortest 1-3 digit prefix in
      ``COUNTRY_CODE_TO_REGION_CODE`` (as ``_extract_country_code`` reads it); the national part is
      then put through the national-prefix rules of the code's main region (below).
    - national form with no region and not starting ``00``: ``phone_no_country``.
    - national form with a region phonenumbers knows: undecided if the digits start with ``00``, with
      the region's international prefix, or are fewer than 3; if they start with the region's country
      code, ``_maybe_extract_country_code``'s test is reproduced; then the national-prefix rules.
    - national-prefix rules (``_maybe_strip_national_prefix_carrier_code`` and the length test in
      ``parse``) are reproduced only when the region's ``national_prefix_for_parsing`` is a literal or
      an alternation of literals with no transform rule (``0``, ``1``, ``0|180020``); for a regex
      prefix (AU, BR, AR, the NANP islands...) a number it matches at the start is undecided.
    - then valid or not: valid for the row's region when that region shares the country code
      (``_parse_valid``'s hint), else ``is_valid_number``'s walk over the code's regions
      (``leading_digits`` first, else the full type check). Each type check is
      ``_number_type_helper``: the general description and any type description, each with its
      possible lengths, matched as whole-string RE2 regexes (libphonenumber's C++ uses RE2 on these
      same patterns, and they use only what both engines read alike). Both checks are computed
      exactly, so a number they both refuse is refused here too: ``e164`` made a single parse of
      it (``+`` form, or national without ``00``), so its answer is ``placeholder`` when that
      parse's code and number are a placeholder, else ``invalid_phone``. For a code shared by many
      regions (+1: 25) one pattern, the union of their leading digits and type patterns, first
      sets aside the numbers no region can claim (``+1 555 ...``: 555 is no NANP area code), so an
      invalid number costs what a valid one does.
    E.164 is then ``+``, the country code and the national significant number (the digits, leading
    zeros kept, exactly what ``national_significant_number`` rebuilds).
    - a number so accepted whose code and national significant number are a placeholder
      (``syncer.identity.placeholders``, the same data ``phones.e164`` reads) is ``placeholder``
      instead, valid (``+1 212 555 0100``) or not (``+1 111 111 1111``).
    Still undecided: too short or too long national parts, unknown country codes, ``00`` prefixes,
    regex national prefixes, tabs and other whitespace inside, and digits of other scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

from syncer.identity.phone_text import phone_text
from syncer.identity.placeholder_columns import placeholder_phones
from syncer.identity.placeholders import PLACEHOLDER

__all__ = ["MISSING", "OK", "REJECTED", "UNDECIDED", "columnar_e164", "digits_only"]

OK, MISSING, REJECTED, UNDECIDED = 0, 1, 2, 3

_TYPE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
               "voicemail", "fixed_line")
_MAX_NSN = 17
_CC_STRINGS = {str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE}
# What raw_text's str.strip() removes from an ASCII value, minus \x1c-\x1f (refused by the charset).
ASCII_TRIM = " \t\n\r\x0b\x0c"
_PHONE_SHAPE = r"^\+?[0-9 ().\-]*$"


@dataclass(frozen=True)
class _Plan:
    """One metadata entry (a region, or a non-geographic calling code) as anchored RE2 patterns."""

    country_code: int
    general: str | None  # whole-string pattern of general_desc, no length check (as _match_national_number)
    by_length: dict[int, tuple[str, str]]  # length -> (general, any type) whole-string patterns
    possible: tuple[int, ...]
    local_only: frozenset[int]
    prefixes: tuple[str, ...] | None  # literal national prefixes in match order; None: regex prefix
    prefix_start: str | None  # anchored national_prefix_for_parsing, to decline when it matches
    idd_start: str | None
    leading_digits: str | None

    def too_long(self, lengths: np.ndarray) -> np.ndarray:
        return (lengths > self.possible[-1]) & ~np.isin(lengths, list(self.local_only))

    def keeps_stripped(self, lengths: np.ndarray) -> np.ndarray:
        """parse() keeps a stripped number unless it is too short, local-only or of an invalid length."""
        ok = np.isin(lengths, list(self.possible)) | (lengths > self.possible[-1])
        return ok & ~np.isin(lengths, list(self.local_only))


def _whole(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _build(metadata) -> _Plan | None:
    general = metadata.general_desc
    if general is None or not general.possible_length:
        return None
    descs = [getattr(metadata, name) for name in _TYPE_DESCS]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    descs = [d for d in descs if d is not None and d.national_number_pattern]
    by_length: dict[int, tuple[str, str]] = {}
    if general.national_number_pattern:
        for length in range(2, _MAX_NSN + 1):
            if general.possible_length and length not in general.possible_length:
                continue
            fits = [d.national_number_pattern for d in descs if not d.possible_length or length in d.possible_length]
            if fits:
                by_length[length] = (_whole(general.national_number_pattern),
                                     _whole("|".join(f"(?:{p})" for p in fits)))
    npfp = metadata.national_prefix_for_parsing or ""
    alternatives = tuple(npfp.split("|")) if npfp else ()
    literal = all(a.isdigit() for a in alternatives) and not metadata.national_prefix_transform_rule
    return _Plan(
        country_code=metadata.country_code,
        general=_whole(general.national_number_pattern) if general.national_number_pattern else None,
        by_length=by_length,
        possible=tuple(sorted(general.possible_length)),
        local_only=frozenset(general.possible_length_local_only),
        prefixes=alternatives if literal else None,
        prefix_start=f"^(?:{npfp})" if npfp else None,
        idd_start=f"^(?:{metadata.international_prefix})" if metadata.international_prefix else None,
        leading_digits=f"^(?:{metadata.leading_digits})" if metadata.leading_digits else None,
    )


@lru_cache(maxsize=None)
def _plan(region: str) -> _Plan | None:
    """Plan for a region code (or "001:<cc>" for a non-geographic code); None when unusable."""
    if region.startswith("001:"):
        metadata = PhoneMetadata.metadata_for_nongeo_region(int(region[4:]), None)
    else:
        metadata = PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else _build(metadata)


def _regions_of(cc: int) -> tuple[str, ...]:
    return tuple(f"001:{cc}" if r == "001" else r for r in COUNTRY_CODE_TO_REGION_CODE[cc])


# --- small vectorised helpers --------------------------------------------------------------------


def _fullmatch(values: pa.Array, pattern: str | None) -> np.ndarray:
    if pattern is None or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    return pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)


def _lengths(values: pa.Array) -> np.ndarray:
    return pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)


def _cut(values: pa.Array, start: np.ndarray | int) -> pa.Array:
    if isinstance(start, int):
        return pc.utf8_slice_codeunits(values, start)
    out = values
    for n in np.unique(start):
        if n:
            out = pc.if_else(pa.array(start == n), pc.utf8_slice_codeunits(values, int(n)), out)
    return out


def digits_only(values: pa.StringArray) -> pa.StringArray:
    """Keep only ASCII digits of each string, in one pass over the Arrow buffers."""
    values = pa.concat_arrays([values]) if values.offset else values
    n = len(values)
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[: offsets[-1]]
    keep = (data >= 48) & (data <= 57)
    kept = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum(keep, out=kept[1:])
    new_offsets = kept[offsets] - kept[offsets[0]]
    new_data = data[offsets[0]:][keep[offsets[0]:]]
    return pa.StringArray.from_buffers(n, pa.py_buffer(new_offsets), pa.py_buffer(new_data.tobytes()),
                                       values.buffers()[0], values.null_count)


# --- the parse steps, each on an array of digit strings ----------------------------------------


def _strip_prefix(d: pa.Array, plan: _Plan) -> tuple[pa.Array, np.ndarray]:
    """``_maybe_strip_national_prefix_carrier_code``: (result, undecided mask)."""
    undecided = np.zeros(len(d), dtype=bool)
    if plan.prefix_start is None or len(d) == 0:
        return d, undecided
    if plan.prefixes is None:
        return d, _fullmatch(d, plan.prefix_start)
    cut = np.zeros(len(d), dtype=np.int64)
    for prefix in plan.prefixes:  # the first alternative that matches wins, as in re.match
        hit = (cut == 0) & pc.starts_with(d, prefix).to_numpy(zero_copy_only=False)
        cut[hit] = len(prefix)
    if not cut.any():
        return d, undecided
    stripped = _cut(d, cut)
    keep_original = (cut > 0) & _fullmatch(d, plan.general) & ~_fullmatch(stripped, plan.general)
    return pc.if_else(pa.array((cut > 0) & ~keep_original), stripped, d), undecided


def _strip_for_parse(d: pa.Array, plan: _Plan) -> tuple[pa.Array, np.ndarray]:
    """parse()'s national-prefix step: strip, and keep the result only if its length passes."""
    stripped, undecided = _strip_prefix(d, plan)
    keep = plan.keeps_stripped(_lengths(stripped))
    return pc.if_else(pa.array(keep), stripped, d), undecided


def _valid_for(nsn: pa.Array, plan: _Plan | None) -> np.ndarray:
    """``_number_type_helper(nsn, metadata) != UNKNOWN`` for every row."""
    out = np.zeros(len(nsn), dtype=bool)
    if plan is None or len(nsn) == 0:
        return out
    lengths = _lengths(nsn)
    for length in np.unique(lengths):
        patterns = plan.by_length.get(int(length))
        if patterns is None:
            continue
        rows = np.flatnonzero(lengths == length)
        sub = nsn if len(rows) == len(nsn) else nsn.take(pa.array(rows))
        ok = _fullmatch(sub, patterns[0])
        if ok.any():
            ok &= _fullmatch(sub, patterns[1])
        out[rows] = ok
    return out


def _valid_number(nsn: pa.Array, cc: int) -> tuple[np.ndarray, np.ndarray]:
    """``is_valid_number``: the first region of the code whose leading digits or type check claims it.

    Returns (valid, exact): ``exact`` is False only for rows whose walk met a region without a plan,
    where the answer is unknown. A code shared by many regions (+1) first screens every row with
    one pattern, the union of each region's leading digits and type patterns: a row it does not
    match is claimed by no region and matches no type anywhere, so it is invalid without the walk.
    """
    regions = _regions_of(cc)
    if len(regions) == 1:
        plan = _plan(regions[0])
        return _valid_for(nsn, plan), np.full(len(nsn), plan is not None)
    valid = np.zeros(len(nsn), dtype=bool)
    exact = np.ones(len(nsn), dtype=bool)
    screen = _screen(cc)
    pending = _fullmatch(nsn, screen[0]) | _fullmatch(nsn, screen[1]) if screen else np.ones(len(nsn), bool)
    for region in regions:
        rows = np.flatnonzero(pending)
        if len(rows) == 0:
            break
        plan = _plan(region)
        if plan is None:
            exact[rows] = False  # phonenumbers would read this region's metadata; we cannot
            break
        sub = nsn.take(pa.array(rows))
        if plan.leading_digits is not None:
            claimed = _fullmatch(sub, plan.leading_digits)
            valid[rows[claimed]] = _valid_for(sub.filter(pa.array(claimed)), plan)
        else:
            claimed = _valid_for(sub, plan)
            valid[rows[claimed]] = True
        pending[rows[claimed]] = False
    return valid, exact


@lru_cache(maxsize=None)
def _screen(cc: int) -> tuple[str | None, str | None] | None:
    """(leading-digits prefix pattern, whole-string type pattern) over every region of ``cc``; None if unusable."""
    plans = [_plan(region) for region in _regions_of(cc)]
    if any(plan is None for plan in plans):
        return None
    leading = [plan.leading_digits[1:] for plan in plans if plan.leading_digits]
    types = sorted({pattern for plan in plans for _, pattern in plan.by_length.values()})
    lead = "^(?:" + "|".join(leading) + ")" if leading else None
    return lead, ("^(?:" + "|".join(t[1:-1] for t in types) + ")$") if types else None


def _group_rows(keys: pa.Array) -> dict[object, np.ndarray]:
    """Row positions per distinct key (nulls under None), without a Python loop over rows."""
    encoded = keys.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if len(codes) else []
    ends = list(starts[1:]) + [len(codes)]
    return {(None if sorted_codes[s] < 0 else names[sorted_codes[s]]): order[s:e] for s, e in zip(starts, ends)}


# --- the two forms -----------------------------------------------------------------------------


@dataclass
class _Accepted:
    rows: list[np.ndarray]
    cc: list[int]
    nsn: list[pa.Array]
    placeholders: list[np.ndarray]  # refused as ``placeholder``, valid or not, as ``phones.e164`` does
    invalid: list[np.ndarray]  # parsed, valid nowhere, not a placeholder: ``invalid_phone``

    def add(self, rows: np.ndarray, cc: int, nsn: pa.Array, accept: np.ndarray) -> None:
        if not accept.any():
            return
        rows, nsn = rows[accept], nsn.filter(pa.array(accept))
        fake = placeholder_phones(cc, nsn)
        if fake.any():
            self.placeholders.append(rows[fake])
            rows, nsn = rows[~fake], nsn.filter(pa.array(~fake))
        if len(rows):
            self.rows.append(rows)
            self.cc.append(cc)
            self.nsn.append(nsn)

    def refuse(self, rows: np.ndarray, cc: int, nsn: pa.Array, refuse: np.ndarray) -> None:
        """Numbers ``parse`` reads as (cc, nsn) and no validity check accepts: the rules' ``first`` parse."""
        if not refuse.any():
            return
        rows, nsn = rows[refuse], nsn.filter(pa.array(refuse))
        fake = placeholder_phones(cc, nsn)
        self.placeholders.append(rows[fake])
        self.invalid.append(rows[~fake])


def _validate(out: _Accepted, rows: np.ndarray, cc: int, nsn: pa.Array, hints: pa.Array) -> None:
    """``_parse_valid``: valid for the row's own region when it shares the code, else ``is_valid_number``.

    Every row reaching here was parsed in one attempt (``+`` form, or national without ``00``), so a
    number neither check accepts is what ``phones.e164`` refuses, as its first parse.
    """
    accept = np.zeros(len(rows), dtype=bool)
    exact = np.ones(len(rows), dtype=bool)
    for hint, sub in _group_rows(hints).items():
        if hint is not None and phonenumbers.country_code_for_region(hint) == cc:
            plan = _plan(hint)
            accept[sub] = _valid_for(nsn.take(pa.array(sub)), plan)
            exact[sub] = plan is not None
    rest = np.flatnonzero(~accept)
    if len(rest):
        accept[rest], known = _valid_number(nsn.take(pa.array(rest)), cc)
        exact[rest] &= known
    out.add(rows, cc, nsn, accept)
    out.refuse(rows, cc, nsn, ~accept & exact)


def _international(out: _Accepted, rows: np.ndarray, d: pa.Array, hints: pa.Array) -> None:
    """``+`` followed by digits: country code, then the national part as ``parse`` reads it."""
    lengths = _lengths(d)
    cc_len = np.zeros(len(d), dtype=np.int64)
    for k in (3, 2, 1):  # shortest prefix wins, as in _extract_country_code
        head = pc.utf8_slice_codeunits(d, 0, k)
        hit = pc.is_in(head, value_set=pa.array(sorted(_CC_STRINGS))).to_numpy(zero_copy_only=False)
        cc_len[hit & (lengths >= k)] = k
    cc_len[pc.starts_with(d, "0").to_numpy(zero_copy_only=False)] = 0
    usable = (cc_len > 0) & (lengths > 2)
    if not usable.any():
        return
    code = pa.nulls(len(d), pa.string())
    for k in (1, 2, 3):
        code = pc.if_else(pa.array(usable & (cc_len == k)), pc.utf8_slice_codeunits(d, 0, k), code)
    for key, sub in _group_rows(code).items():
        if key is None:
            continue
        cc = int(key)
        plan = _plan(_regions_of(cc)[0])
        if plan is None:
            continue
        national = _cut(d.take(pa.array(sub)), int(len(str(cc))))
        nsn, undecided = _strip_for_parse(national, plan)
        nlen = _lengths(nsn)
        fine = ~undecided & (_lengths(national) >= 2) & (nlen >= 2) & (nlen <= _MAX_NSN)
        keep = np.flatnonzero(fine)
        _validate(out, rows[sub[keep]], cc, nsn.take(pa.array(keep)), hints.take(pa.array(sub[keep])))


def _national(out: _Accepted, rows: np.ndarray, d: pa.Array, region: str) -> None:
    """Digits without ``+`` in a known region: ``parse(text, region)`` for the shapes proved above."""
    plan = _plan(region)
    if plan is None:
        return
    lengths = _lengths(d)
    fine = (lengths >= 3) & ~pc.starts_with(d, "00").to_numpy(zero_copy_only=False)
    fine &= ~_fullmatch(d, plan.idd_start)
    cc = plan.country_code
    main = _plan(_regions_of(cc)[0])
    with_cc = fine & pc.starts_with(d, str(cc)).to_numpy(zero_copy_only=False)
    nsn = d
    if with_cc.any():
        # _maybe_extract_country_code: drop the code when that makes a non-matching number match, or
        # when the number is too long for the region; the national part is then read with the
        # metadata of the code's main region.
        after, undecided = _strip_prefix(_cut(d, len(str(cc))), plan)
        takes = with_cc & ~undecided & (
            (~_fullmatch(d, plan.general) & _fullmatch(after, plan.general)) | plan.too_long(lengths))
        fine &= ~(with_cc & undecided)
        if takes.any():
            parsed, undecided = _strip_for_parse(after, main)
            fine &= ~(takes & (undecided | (_lengths(after) < 2)))
            nsn = pc.if_else(pa.array(takes), parsed, nsn)
        rest = ~takes
    else:
        rest = np.ones(len(d), dtype=bool)
    if rest.any():
        parsed, undecided = _strip_for_parse(d, plan)
        fine &= ~(rest & undecided)
        nsn = pc.if_else(pa.array(rest), parsed, nsn)
    nlen = _lengths(nsn)
    fine &= (nlen >= 2) & (nlen <= _MAX_NSN)
    keep = np.flatnonzero(fine)
    hints = pa.array([region] * len(keep), pa.string())
    _validate(out, rows[keep], cc, nsn.take(pa.array(keep)), hints)


def columnar_e164(texts: pa.StringArray, regions: pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """(E.164 or null, status per row (OK/MISSING/REJECTED/UNDECIDED), reason or null) for a text column.

    ``regions`` holds each row's phone region: the row's country, else the segment default, as
    ``syncer.identity.rows`` resolves it.
    """
    n = len(texts)
    status = np.full(n, UNDECIDED, dtype=np.int8)
    text = phone_text(texts)
    status[text.missing] = MISSING
    status[text.letters] = REJECTED
    core = text.core
    shaped = pc.match_substring_regex(core, _PHONE_SHAPE).fill_null(False).to_numpy(zero_copy_only=False)
    d = digits_only(core.fill_null(""))
    plus = pc.starts_with(core, "+").fill_null(False).to_numpy(zero_copy_only=False)
    no_region = regions.is_null().to_numpy(zero_copy_only=False)
    starts00 = pc.starts_with(d, "00").to_numpy(zero_copy_only=False)
    no_country = shaped & ((~plus & ~starts00) | text.wide_plus) & no_region
    status[no_country] = REJECTED
    plus &= ~no_country
    accepted = _Accepted([], [], [], [], [])
    rows = np.flatnonzero(shaped & plus)
    if len(rows):
        _international(accepted, rows, d.take(pa.array(rows)), regions.take(pa.array(rows)))
    national = shaped & ~plus & ~no_region
    for region, sub in _group_rows(regions.filter(pa.array(national))).items():
        rows = np.flatnonzero(national)[sub]
        _national(accepted, rows, d.take(pa.array(rows)), region)
    values = _assemble(n, accepted)
    if accepted.rows:
        status[np.concatenate(accepted.rows)] = OK
    reason = pc.if_else(pa.array(no_country), pa.scalar("phone_no_country"), pa.scalar(None, pa.string()))
    reason = pc.if_else(pa.array(text.letters), pa.scalar("invalid_phone"), reason)
    if accepted.invalid:
        invalid = np.zeros(n, dtype=bool)
        invalid[np.concatenate(accepted.invalid)] = True
        status[invalid] = REJECTED
        reason = pc.if_else(pa.array(invalid), pa.scalar("invalid_phone"), reason)
    if accepted.placeholders:
        fake = np.zeros(n, dtype=bool)
        fake[np.concatenate(accepted.placeholders)] = True
        status[fake] = REJECTED
        reason = pc.if_else(pa.array(fake), pa.scalar(PLACEHOLDER), reason)
    return values, status, reason


def _assemble(n: int, accepted: _Accepted) -> pa.Array:
    if not accepted.rows:
        return pa.nulls(n, pa.string())
    parts = [pc.binary_join_element_wise("+" + str(cc), nsn, "") for cc, nsn in zip(accepted.cc, accepted.nsn)]
    values = pa.concat_arrays([*parts, pa.nulls(1, pa.string())])
    where = np.full(n, len(values) - 1, dtype=np.int64)
    where[np.concatenate(accepted.rows)] = np.arange(len(values) - 1)
    return values.take(pa.array(where))
