"""The vocabulary of ``syncer.identity.rows``: identifier kinds, reason codes, its two errors, raw value to text.

Every other identity module (``countries``, ``phones``, ``normalisers``, ``platform_rules``) builds on
these names, so they live here, below all of them, and import nothing of ours. ``syncer.identity.rows``
re-exports the public ones; import them from there.

- ``IDENTIFIER_KINDS`` and ``REASONS``: the kinds a segment can map and the short codes a dropped
  value is reported with. A reason code is all a caller ever learns about a bad value.
- ``InvalidIdentifier`` (drop the value) and ``UnsupportedKindError`` (fix the destination config).
- ``raw_text``: any warehouse value (str, int, float, date, bytes, NA...) to trimmed text, or
  ``missing``; ``sha256``: the lowercase hex digest every platform matches hashed values on.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

IDENTIFIER_KINDS: tuple[str, ...] = (
    "email", "phone", "first_name", "last_name", "postal_code", "city",
    "state", "country", "madid", "external_id", "date_of_birth", "gender",
)

#: Every reason code this module can produce. A reason is all a caller ever learns about a bad value.
REASONS: frozenset[str] = frozenset({
    "missing", "no_identifier", "incomplete_address",
    "invalid_email", "invalid_phone", "phone_no_country", "invalid_name", "invalid_postal_code",
    "invalid_city", "invalid_state", "invalid_country", "invalid_madid", "invalid_external_id",
    "invalid_gender", "invalid_dob", "ambiguous_dob", "placeholder",
})

#: The reason a value of each kind is dropped with when it cannot even be read as text.
INVALID_REASON = {
    "email": "invalid_email", "phone": "invalid_phone", "first_name": "invalid_name",
    "last_name": "invalid_name", "postal_code": "invalid_postal_code", "city": "invalid_city",
    "state": "invalid_state", "country": "invalid_country", "madid": "invalid_madid",
    "external_id": "invalid_external_id", "date_of_birth": "invalid_dob", "gender": "invalid_gender",
}


class InvalidIdentifier(ValueError):
    """The value cannot be used for matching; drop it. ``reason`` is a code from ``REASONS``, never the value."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(f"{kind}: {reason}" if kind else reason)
        self.reason = reason
        self.kind = kind


class UnsupportedKindError(ValueError):
    """The platform has no field for this identifier kind (or the kind is unknown): fix the destination config."""


# --- raw value -> trimmed text ------------------------------------------------------------------

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_MISSING_TYPES = frozenset({"NAType", "NaTType"})  # pandas.NA / pandas.NaT, without importing pandas


def raw_text(raw: object, kind: str) -> str:
    """Coerce a warehouse value to trimmed text; None, NaN, NA and blanks are ``missing``."""
    if type(raw) is str:
        text = raw
    elif raw is None or type(raw).__name__ in _MISSING_TYPES:
        raise InvalidIdentifier("missing", kind)
    elif isinstance(raw, bool):
        raise InvalidIdentifier(INVALID_REASON[kind], kind)
    elif isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        if raw != raw:
            raise InvalidIdentifier("missing", kind)
        # A phone or id read as DOUBLE: 16505551212.0 means 16505551212.
        text = str(int(raw)) if raw.is_integer() else str(raw)
    elif isinstance(raw, _dt.datetime):
        text = raw.date().isoformat()
    elif isinstance(raw, _dt.date):
        text = raw.isoformat()
    elif isinstance(raw, (bytes, bytearray)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidIdentifier(INVALID_REASON[kind], kind) from None
    else:
        text = str(raw)
    text = text.strip()
    if text and (text[0] in _ZERO_WIDTH or text[-1] in _ZERO_WIDTH):
        text = text.strip(_ZERO_WIDTH + " \t\r\n\x0b\x0c\xa0")
    if not text:
        raise InvalidIdentifier("missing", kind)
    return text


def sha256(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes: the hashed form every platform matches on."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
