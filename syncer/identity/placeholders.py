"""Placeholder identifiers: values that pass every format rule but are typed by people who will not give theirs.

A platform matches people, not rows: every member whose phone is ``1234567890`` is the same person to
Meta and Google, so one of them leaving the segment removes "all of them", and a stranger who really
owns the number collects their ads. These values are dropped with the reason ``placeholder``. Each
rule has one definition here, used by the per-value rules (``syncer.identity.phones``,
``syncer.identity.emails``) and, vectorised over Arrow, by the columnar fast path
(``syncer.identity.placeholder_columns``); both read the data below, so they cannot drift apart.
This module stays pure Python so that the per-value rules never import Arrow.

Phones (read on the country calling code ``cc`` and the national significant number ``nsn``, the
digits after the country code with trunk prefixes removed, as ``phonenumbers`` gives them)
    - the whole ``nsn`` is one digit repeated (``0000000000``, ``5555555555``, ``+1 111 111 1111``)
      or a run counting up or down, wrapping 9 to 0 (``1234567890``, ``0123456789`` read in GB as
      ``123456789``, ``9876543210``), at least 6 digits long. ``1-234-567-8910`` (Meta's
      own formatting example, ``+1 234 567 8910``) is not a run by this rule and stays accepted.
    - NANP (``cc`` 1): line numbers 555-0100 to 555-0199 in any geographic area code, "reserved for
      fictitious use" by the North American Numbering Plan Administrator
      (nationalnanpa.com/number_resource_info/555_numbers.html). Toll-free codes (800, 833, 844,
      855, 866, 877, 888) are left out: the reservation concerns the 555 exchange of geographic
      area codes, toll-free numbers are assigned through their own registry (Somos), a toll-free
      line belongs to a business rather than a person, and Google's own formatting examples use
      ``(800)555-0100`` and ``+1 800 5550101``.
    - UK (``cc`` 44): Ofcom's "Telephone numbers for drama purposes"
      (ofcom.org.uk/phones-and-broadband/phone-numbers/numbers-for-drama): 0113/0114/0115/0116/
      0117/0118/0121/0131/0141/0151/0161 496 0000-0999, 0191 498 0000-0999, 020 7946 0000-0999,
      028 9649 6000-6999, 029 2018 0000-0999, 01632 960000-960999, 07700 900000-900999,
      08081 570000-570999, 0909 8790000-8790999 and 03069 990000-990999.
    - Australia (``cc`` 61): ACMA's "Phone numbers for use in TV shows, films and creative works"
      (acma.gov.au/phone-numbers-use-tv-shows-films-and-creative-works): the 30 mobile numbers
      0491 570 006 ... 0491 579 760 and the landline blocks (0x) 5550 xxxx and (0x) 7010 xxxx for
      areas 2, 3, 7 and 8.

Emails (read on the normalised, lower-case address, before Data Manager's Gmail rule)
    - a domain under a TLD reserved by RFC 2606 section 2 and RFC 6761: ``.test``, ``.example``,
      ``.invalid`` and ``.localhost``: no mailbox can exist there.
    - a no-reply local part (``noreply``, ``no-reply``, ``no_reply``, ``donotreply``,
      ``do-not-reply``, ``do_not_reply``): a system sender, never a person.
    - a handful of addresses typed to get past a form: ``test@test.com``, ``email@email.com``,
      ``none@none.com``, ``noemail@noemail.com``.
    The second-level names RFC 2606 reserves (``example.com``, ``example.net``, ``example.org``) are
    *not* placeholders here: the project's sample data, benchmarks and tests use ``@example.com``
    for every synthetic member, and no real person holds such an address, so it cannot merge
    strangers on a platform either.
"""

from __future__ import annotations

import re

__all__ = [
    "FICTIONAL_RANGES", "NO_REPLY_PREFIXES", "PLACEHOLDER", "PLACEHOLDER_ADDRESSES", "RESERVED_SUFFIXES",
    "RUN_NUMBERS", "placeholder_email", "placeholder_phone",
]

PLACEHOLDER = "placeholder"

# --- phones ----------------------------------------------------------------------------------------

# National numbers as short as 4 digits exist (Niue, Saint Helena...); from 6 digits on, a whole
# number that is a run is taken for a placeholder.
_MIN_RUN = 6
_MAX_NSN = 17


def _runs() -> frozenset[str]:
    out = set()
    for length in range(_MIN_RUN, _MAX_NSN + 1):
        for start in range(10):
            for step in (0, 1, -1):
                out.add("".join(str((start + step * i) % 10) for i in range(length)))
    return frozenset(out)


#: Every national significant number that is one digit repeated or a run up or down.
RUN_NUMBERS = _runs()

_AU_MOBILE = ("570006", "570156", "570157", "570158", "570159", "570110", "570313", "570737", "571266",
              "571491", "571804", "572549", "572665", "572983", "573770", "573087", "574118", "574632",
              "575254", "575789", "576398", "576801", "577426", "577644", "578957", "578148", "578888",
              "579212", "579760", "579455")
_NANP_GEOGRAPHIC = r"(?:[2-79][0-9]{2}|8(?:0[1-9]|[129][0-9]|3[0-24-9]|4[0-35-9]|5[0-46-9]|6[0-57-9]|7[0-689]|8[0-79]))"

#: cc -> the national significant numbers of its fictional ranges, as one whole-string pattern that
#: Python's ``re`` and Arrow's RE2 read alike (ASCII digits, classes, counts and alternation only).
FICTIONAL_RANGES: dict[int, str] = {
    1: _NANP_GEOGRAPHIC + r"55501[0-9]{2}",
    44: r"(?:1(?:1[3-8]|[2-6]1)4960|1914980|2079460|2896496|2920180|1632960|7700900|8081570|9098790|3069990)[0-9]{3}",
    61: r"(?:491(?:" + "|".join(_AU_MOBILE) + r")|[2378](?:5550|7010)[0-9]{4})",
}
_FICTIONAL_RE = {cc: re.compile(pattern) for cc, pattern in FICTIONAL_RANGES.items()}


def placeholder_phone(cc: int, nsn: str) -> bool:
    """True when the number is a placeholder (see the module docstring); ``nsn`` as phonenumbers gives it."""
    if nsn in RUN_NUMBERS:
        return True
    fictional = _FICTIONAL_RE.get(cc)
    return fictional is not None and fictional.fullmatch(nsn) is not None


# --- emails ----------------------------------------------------------------------------------------

_RESERVED_TLDS = ("test", "example", "invalid", "localhost")
_NO_REPLY = ("noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply")
PLACEHOLDER_ADDRESSES = frozenset({"test@test.com", "email@email.com", "none@none.com", "noemail@noemail.com"})
# On a valid address (one "@", labels without dots) a prefix "local@" is its local part and a suffix
# ".tld" its top-level label, so prefix and suffix tests say exactly what set lookups on the parts
# would, for one value here and for a column in syncer.identity.placeholder_columns.
NO_REPLY_PREFIXES = tuple(f"{local}@" for local in _NO_REPLY)
RESERVED_SUFFIXES = tuple(f".{tld}" for tld in _RESERVED_TLDS)


def placeholder_email(address: str) -> bool:
    """True when a valid, normalised address is a placeholder (see the module docstring)."""
    return (address.startswith(NO_REPLY_PREFIXES) or address.endswith(RESERVED_SUFFIXES)
            or address in PLACEHOLDER_ADDRESSES)
