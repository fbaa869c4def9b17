"""Raw phone text to the ASCII text ``syncer.identity.phone_patterns`` reads, for the columnar fast path.

``phone_text(texts)`` answers, per row, what ``raw_text`` and the first lines of ``phones.e164``
make of a value before any parse: blank (``missing``), letters left after an extension
(``invalid_phone``), or the text whose digits are then parsed (``core``). A row it cannot prove is
``core`` null: the caller leaves it undecided for the per-value rules.

Why each step gives the rules' answer
    trim        ``str.strip`` removes exactly the code points in ``_STRIP`` (those ``str.isspace``
                holds for), so ``utf8_trim`` with that set is the first strip of ``raw_text``. Its
                second strip runs only when a zero-width mark is then at an end: such rows are
                left undecided.
    digits      ``phonenumbers`` reads every Unicode decimal digit as its value and treats a
                no-break space as it treats a space (both are in its ``VALID_PUNCTUATION``), and
                ``e164``'s letter and extension patterns read them as ``\\d`` and ``\\s``: so the
                full-width, Arabic-Indic and Extended Arabic-Indic digits and U+00A0 are replaced
                by their ASCII forms.
    plus        a leading full-width plus (``＋``) is not ``"+"`` to ``e164``, which therefore parses
                the text with the row's region, or says ``phone_no_country`` without one; with a
                region, ``parse`` reads it as a plus and the region only as the validity hint, as
                for ``+``. Such rows are flagged ``wide_plus`` and given a ``+``.
    extension   only on printable ASCII text, where ``\\s`` is a space, ``\\d`` a digit and
                ``re.IGNORECASE`` ASCII folding, so ``_EXTENSION`` is ``phones._PHONE_EXTENSION``
                for RE2; both take the leftmost match ending the text. A letter left after it is
                ``invalid_phone`` (``[^\\W\\d_]`` on ASCII is ``[A-Za-z]``), before any region test.
    Everything else not printable ASCII is left undecided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncer.identity.kinds import _ZERO_WIDTH  # the marks raw_text's second strip removes

__all__ = ["STRIP", "PhoneText", "phone_text", "strip_text"]

#: Every code point ``str.strip()`` removes (those ``str.isspace`` holds for; a test checks the list).
STRIP = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
         "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ZERO_WIDTH_END = f"^[{_ZERO_WIDTH}]|[{_ZERO_WIDTH}]$"
_DIGIT_ZEROS = ("\uff10", "\u0660", "\u06f0")  # full-width, Arabic-Indic, Extended Arabic-Indic
_WIDE_PLUS = "\uff0b"
_PRINTABLE = r"^[ -~]*$"
_EXTENSION = r"(?i) *(?:; *ext=|e?xt(?:ension)?\.?|x|#) *[0-9]{1,7} *$"


@dataclass(frozen=True)
class PhoneText:
    core: pa.StringArray  # the text e164 parses, ASCII; null when missing, refused or undecided
    missing: np.ndarray
    letters: np.ndarray  # invalid_phone: a letter outside an extension
    wide_plus: np.ndarray  # led by a full-width plus, now "+"


def strip_text(texts: pa.StringArray) -> tuple[pa.StringArray, np.ndarray, np.ndarray]:
    """(``raw_text``'s text, rows where that is proved, rows that are ASCII).

    Proved unless a zero-width mark is then at an end (only non-ASCII text can hold one).
    """
    trimmed = pc.utf8_trim(texts, STRIP)
    ascii_rows = _mask(pc.string_is_ascii(trimmed)) | trimmed.is_null().to_numpy(zero_copy_only=False)
    proved = np.ones(len(texts), dtype=bool)
    other = np.flatnonzero(~ascii_rows)
    if len(other):
        proved[other] = ~_mask(pc.match_substring_regex(trimmed.take(pa.array(other)), _ZERO_WIDTH_END))
    return trimmed, proved, ascii_rows


def phone_text(texts: pa.StringArray) -> PhoneText:
    trimmed, proved, ascii_rows = strip_text(texts)
    missing = proved & (pc.binary_length(trimmed).fill_null(0).to_numpy(zero_copy_only=False) == 0)
    text = _ascii_digits(trimmed, ascii_rows)
    wide_plus = _mask(pc.starts_with(text, _WIDE_PLUS)) if not ascii_rows.all() else np.zeros(len(texts), bool)
    if wide_plus.any():
        text = pc.if_else(pa.array(wide_plus), pc.binary_join_element_wise("+", pc.utf8_slice_codeunits(text, 1), ""),
                          text)
    core = pc.if_else(pa.array(proved & ~missing), text, pa.scalar(None, pa.string()))
    letters = np.zeros(len(texts), dtype=bool)
    marked = np.flatnonzero(_holds_letter_or_mark(core))
    if len(marked):  # extensions and letters, read only on printable ASCII (else left undecided)
        sub = core.take(pa.array(marked))
        readable = _mask(pc.match_substring_regex(sub, _PRINTABLE))
        sub = pc.replace_substring_regex(sub, _EXTENSION, "")
        letters[marked] = readable & _mask(pc.match_substring_regex(sub, "[A-Za-z]"))
        sub = pc.if_else(pa.array(readable & ~letters[marked]), sub, pa.scalar(None, pa.string()))
        where = np.arange(len(core), dtype=np.int64)
        where[marked] = len(core) + np.arange(len(marked))
        core = pa.concat_arrays([core, sub]).take(pa.array(where))
    return PhoneText(core, missing, letters, wide_plus & ~missing & ~letters & proved)


def _ascii_digits(trimmed: pa.StringArray, ascii_rows: np.ndarray) -> pa.StringArray:
    """Non-ASCII decimal digits of the blocks above, and no-break spaces, as their ASCII forms."""
    other = ~ascii_rows
    if not other.any():
        return trimmed
    rows = np.flatnonzero(other)
    sub = trimmed.take(pa.array(rows))
    sub = pc.replace_substring(sub, "\u00a0", " ")
    for zero in _DIGIT_ZEROS:
        for value in range(10):
            sub = pc.replace_substring(sub, chr(ord(zero) + value), str(value))
    where = np.arange(len(trimmed), dtype=np.int64)
    where[rows] = len(trimmed) + np.arange(len(rows))
    return pa.concat_arrays([trimmed, sub]).take(pa.array(where))


_NOT_LETTER_OR_MARK = bytes(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#;"))


def _holds_letter_or_mark(values: pa.StringArray) -> np.ndarray:
    """Rows holding an ASCII letter, ``#`` or ``;``; clean columns hold none, which one pass over the bytes shows."""
    data = values.buffers()[2]
    if data is None or not data.to_pybytes().translate(None, _NOT_LETTER_OR_MARK):
        return np.zeros(len(values), dtype=bool)
    return _mask(pc.match_substring_regex(values, "[A-Za-z#;]"))


def _mask(values: pa.Array) -> np.ndarray:
    return values.fill_null(False).to_numpy(zero_copy_only=False)
