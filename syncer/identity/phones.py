"""Phone numbers to E.164: the ``phone`` kind's rules, kept apart because they are the subtle (and slow) part.

``e164`` gives ``+16505551212`` (Google, Data Manager, plain); ``e164_digits`` gives ``16505551212``
(Meta). Both are normalisers (see ``syncer.identity.normalisers``) and raise ``InvalidIdentifier``. Parsing
uses ``phonenumbers``; ``syncer.identity.rows`` memoises these calls per batch, since parsing dominates
the cost of identifying a row.

Rules (M = meta, G = google, D = google_data_manager, P = plain)
    phone         ``phonenumbers`` parse with the row's country (``region_column_value``), else the
                  segment default; a leading ``+`` wins over both, and a leading ``00`` is read as
                  ``+`` when the region's own dialling prefix does not explain it. National trunk zeros
                  are dropped by the parse. Extensions are accepted and dropped (E.164 has none).
                  Letters (vanity numbers such as 1-800-FLOWERS) are rejected: Meta says "remove
                  letters", which would leave a different number, and a vanity number is a business
                  line, not a person. Must pass ``is_valid_number``, else ``invalid_phone``; no region
                  and no ``+``/``00`` gives ``phone_no_country``. M: E.164 digits without ``+``
                  (``16505551212``); G, D, P: E.164 with ``+`` (``+16505551212``).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from syncer.identity.kinds import InvalidIdentifier

__all__ = ["e164", "e164_digits"]

_PHONE_EXTENSION = re.compile(r"\s*(?:;\s*ext=|e?xt(?:ension)?\.?|x|#)\s*\d{1,7}\s*$", re.IGNORECASE)
_ANY_LETTER = re.compile(r"[^\W\d_]")


def _parse_valid(number: str, region: str | None, hint: str | None) -> phonenumbers.PhoneNumber | None:
    """Parse and keep only ``is_valid_number`` numbers.

    Speed: ``is_valid_number`` first guesses the region, which for +1 means trying some 25 NANP
    regions. When the number is valid for the row's own region (``hint``) we accept it without the
    guess. This never accepts more: over 224,000 valid-for-region numbers across every supported
    region, is_valid_number agreed every time.
    """
    try:
        parsed = phonenumbers.parse(number, region)
    except NumberParseException:
        return None
    if (
        hint is not None
        and _COUNTRY_CALLING_CODE.get(hint) == parsed.country_code
        and phonenumbers.is_valid_number_for_region(parsed, hint)
    ):
        return parsed
    return parsed if phonenumbers.is_valid_number(parsed) else None


_COUNTRY_CALLING_CODE = {
    region: phonenumbers.country_code_for_region(region) for region in phonenumbers.SUPPORTED_REGIONS
}


def e164(text: str, region: str | None) -> str:
    """E.164 with ``+``. Letters (other than an extension marker) are refused, see the rules above."""
    core = _PHONE_EXTENSION.sub("", text)
    if _ANY_LETTER.search(core):
        raise InvalidIdentifier("invalid_phone", "phone")
    lead = core.lstrip(" (-.\t")
    if lead.startswith("+"):
        parsed = _parse_valid(lead, None, region)
    else:
        international = lead.startswith("00")
        if region is None and not international:
            raise InvalidIdentifier("phone_no_country", "phone")
        parsed = _parse_valid(core, region, region) if region is not None else None
        if parsed is None and international:
            parsed = _parse_valid("+" + lead[2:], None, region)
    if parsed is None:
        raise InvalidIdentifier("invalid_phone", "phone")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def e164_digits(text: str, region: str | None) -> str:
    """E.164 without the ``+``, as Meta wants it."""
    return e164(text, region)[1:]
