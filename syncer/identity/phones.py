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
    placeholder   a number no person owns (``1234567890``, ``0000000000``, 555-0100 to 555-0199,
                  Ofcom's drama ranges...; see ``syncer.identity.placeholders``) is ``placeholder``,
                  valid or not: the check reads the country code and national significant number
                  of the parse that is used, else of the first parse that succeeded, so
                  ``+1 111 111 1111`` (not a valid NANP number) says ``placeholder`` rather than
                  ``invalid_phone``.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from syncer.identity.kinds import InvalidIdentifier
from syncer.identity.placeholders import PLACEHOLDER, placeholder_phone

__all__ = ["e164", "e164_digits"]

_PHONE_EXTENSION = re.compile(r"\s*(?:;\s*ext=|e?xt(?:ension)?\.?|x|#)\s*\d{1,7}\s*$", re.IGNORECASE)
_ANY_LETTER = re.compile(r"[^\W\d_]")


def _parse(number: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, region)
    except NumberParseException:
        return None


def _valid(parsed: phonenumbers.PhoneNumber, hint: str | None) -> bool:
    """``is_valid_number``, faster when the number is valid for the row's own region (``hint``).

    ``is_valid_number`` first guesses the region, which for +1 means trying some 25 NANP regions.
    When the number is valid for ``hint`` we accept it without the guess. This never accepts more:
    over 224,000 valid-for-region numbers across every supported region, is_valid_number agreed
    every time.
    """
    if (
        hint is not None
        and _COUNTRY_CALLING_CODE.get(hint) == parsed.country_code
        and phonenumbers.is_valid_number_for_region(parsed, hint)
    ):
        return True
    return phonenumbers.is_valid_number(parsed)


_COUNTRY_CALLING_CODE = {
    region: phonenumbers.country_code_for_region(region) for region in phonenumbers.SUPPORTED_REGIONS
}


def _attempts(core: str, region: str | None) -> list[tuple[str, str | None]]:
    """The parses to try, in order: ``+`` form alone; else the row's region, then a ``00`` prefix as ``+``."""
    lead = core.lstrip(" (-.\t")
    if lead.startswith("+"):
        return [(lead, None)]
    international = lead.startswith("00")
    if region is None and not international:
        raise InvalidIdentifier("phone_no_country", "phone")
    attempts = [(core, region)] if region is not None else []
    return attempts + [("+" + lead[2:], None)] if international else attempts


def e164(text: str, region: str | None) -> str:
    """E.164 with ``+``. Letters (other than an extension marker) are refused, see the rules above."""
    core = _PHONE_EXTENSION.sub("", text)
    if _ANY_LETTER.search(core):
        raise InvalidIdentifier("invalid_phone", "phone")
    first = None
    for number, parse_region in _attempts(core, region):
        parsed = _parse(number, parse_region)
        if parsed is None:
            continue
        if _valid(parsed, region):
            break
        if first is None:
            first = parsed
    else:
        if first is not None and _is_placeholder(first):
            raise InvalidIdentifier(PLACEHOLDER, "phone")
        raise InvalidIdentifier("invalid_phone", "phone")
    if _is_placeholder(parsed):
        raise InvalidIdentifier(PLACEHOLDER, "phone")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def _is_placeholder(parsed: phonenumbers.PhoneNumber) -> bool:
    return placeholder_phone(parsed.country_code, phonenumbers.national_significant_number(parsed))


def e164_digits(text: str, region: str | None) -> str:
    """E.164 without the ``+``, as Meta wants it."""
    return e164(text, region)[1:]
