"""Email addresses: the ``email`` kind's rules, as strict as the RFCs that say what an address is.

``email`` (Meta, Google Ads, plain) and ``email_data_manager`` (Google Data Manager) are normalisers
(see ``syncer.identity.normalisers``): trimmed text in, the address to hash out, or
``InvalidIdentifier`` with ``invalid_email`` (not an address) or ``placeholder`` (an address no
person owns, see ``syncer.identity.placeholders``).

Normalisation
    Lower-case, as Meta ("Trim any leading and trailing spaces. Convert all characters to
    lowercase", ``em`` in developers.facebook.com/docs/marketing-api/conversions-api/parameters/
    customer-information-parameters) and Google ("trim and lowercase", developers.google.com/
    google-ads/api/docs/remarketing/audience-types/customer-match and developers.google.com/
    data-manager/api/devguides/concepts/formatting; shared specs sections 1 and 2) ask. Text that is not ASCII is first put in Unicode NFKC (UAX #15), which folds the
    full-width and other compatibility forms that CJK input methods produce:
    ``ｊｏｈｎ@ｅｘａｍｐｌｅ.ｃｏｍ`` is ``john@example.com``, the address that person owns.
    ``raw_text`` has already trimmed surrounding whitespace (and zero-width marks at either end);
    nothing inside is ever removed: a value with an invisible character inside is refused, as we
    cannot tell which address was meant.

What an address must be (anything else is ``invalid_email``)
    - exactly one ``@``; the local part a dot-atom (RFC 5322 section 3.2.3): atoms of ``atext``
      (letters, digits and ``!#$%&'*+/=?^_`{|}~-``) joined by single dots, so no leading, trailing or
      double dot; non-ASCII characters are allowed in atoms (RFC 6531 section 3.3, ``UTF8-non-ascii``)
      unless they are control, format (U+200B and the other invisible marks), surrogate,
      private-use, unassigned or space characters. So quoted local parts, ``mailto:`` prefixes
      (RFC 6068 names a URI, not an address), angle brackets (``<x@y.com>`` is a header field's
      ``angle-addr``) and NUL bytes are all refused.
    - the domain a host name: labels of letters, digits and hyphens, not starting or ending with a
      hyphen, 1-63 characters (RFC 1035 section 2.3.1, RFC 1123 section 2.1); at least two labels; a
      top-level label of two or more characters that is not all digits (RFC 3696 section 2), so IP
      addresses and ``[...]`` literals are refused. A label with ``--`` in its 3rd and 4th places is
      reserved (RFC 5890 section 2.3.1) and allowed only as a valid IDNA A-label (``xn--...``).
    - a domain with non-ASCII letters must be a valid internationalised domain name: it is
      converted to its ASCII (A-label, punycode) form with the ``idna`` package (IDNA 2008, RFC
      5891, with the UTS #46 mapping browsers use), and that form must pass the rules above.
    - lengths in octets (RFC 5321 section 4.5.3.1): local part at most 64 (UTF-8), domain at most
      253 in its ASCII form (255 on the wire, RFC 1035 section 2.3.4), the whole address at most 254
      (the 256-octet path minus its angle brackets, RFC 3696 erratum 1690).

Which form of a Unicode domain is hashed: the Unicode form
    The hashed value is the NFKC, lower-case address with the domain as its UTS #46 U-label
    (``idna.decode`` of the A-label; for an already lower-case NFKC domain that is the text as
    written, ideographic full stops becoming dots), encoded as UTF-8. Meta's ``em`` and Google's
    email rules define the hashed value as the address trimmed and lower-cased; neither converts a
    domain to ASCII, and both hash UTF-8 text (Meta's published digests for "정" and "valéry" are
    of their UTF-8 bytes). The platforms hash the address their members registered, and
    internationalised mail (RFC 6530, 6531) lets that address keep its Unicode domain, so hashing
    the punycode form would make a ``jörg@bücher.de`` member a certain non-match. The A-label is
    only used to validate and to measure the domain. An address already written with ``xn--``
    labels is kept as written, for the same reason.

Why the ``idna`` package and not Python's ``idna`` codec
    The codec implements IDNA 2003 (RFC 3490), which IDNA 2008 replaced: it maps ``ß`` to ``ss``
    (so ``straße.de`` would validate as another domain), allows symbols such as ``♥`` and lacks
    IDNA 2008's context rules for joiners (RFC 5892). The ``idna`` package (kjd/idna) is the maintained IDNA 2008 + UTS #46
    implementation and is already installed with ``requests``.

Data Manager's Gmail rule
    ``email_data_manager`` then drops every ``.`` and any ``+tag`` from the local part of
    ``gmail.com`` and ``googlemail.com`` addresses (see ``syncer.identity.normalisers``); nothing
    left is ``invalid_email``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import idna

from syncer.identity.kinds import InvalidIdentifier
from syncer.identity.placeholders import PLACEHOLDER, placeholder_email

__all__ = ["ATEXT", "GMAIL_DOMAINS", "email", "email_data_manager"]

#: RFC 5322 section 3.2.3 ``atext``: the characters of a dot-atom's atoms.
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"(?![0-9]+$)[a-z0-9][a-z0-9-]{0,61}[a-z0-9]"  # a label of 2 or more, not all digits
_LOCAL = rf"[{ATEXT}]+(?:\.[{ATEXT}]+)*"
_DOMAIN = rf"(?:{_LABEL}\.)+{_TLD}"
_ASCII_ADDRESS = re.compile(rf"({_LOCAL})@({_DOMAIN})")
_ASCII_LOCAL = re.compile(_LOCAL)
_ASCII_DOMAIN = re.compile(_DOMAIN)
_ASCII_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-")
# Control, format (zero-width and bidi marks), surrogate, private-use, unassigned and separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_MAX_LOCAL, _MAX_DOMAIN, _MAX_ADDRESS = 64, 253, 254


def email(text: str, region: str | None) -> str:
    address = text.lower() if text.isascii() else _fold(text)
    if address.isascii():
        match = _ASCII_ADDRESS.fullmatch(address)
        # the domain is then at most 252: the address holds a local part and an "@" besides
        if match is None or match.end(1) > _MAX_LOCAL or len(address) > _MAX_ADDRESS:
            raise _invalid()
        if "--" in address and not _reserved_labels_ok(match.group(2)):
            raise _invalid()
    else:
        address = _unicode_address(address)
    if placeholder_email(address):
        raise InvalidIdentifier(PLACEHOLDER, "email")
    return address


def email_data_manager(text: str, region: str | None) -> str:
    address = email(text, region)
    local, _, domain = address.rpartition("@")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            raise _invalid()
        address = f"{local}@{domain}"
    return address


def _invalid() -> InvalidIdentifier:
    return InvalidIdentifier("invalid_email", "email")


def _fold(text: str) -> str:
    """NFKC, lower-case, NFKC again (lower-casing can leave a sequence NFKC composes)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).lower())


def _unicode_address(address: str) -> str:
    """The hashed form of a folded address with non-ASCII characters, or ``invalid_email``."""
    local, at, domain = address.partition("@")
    if not at or "@" in domain or not _local_ok(local):
        raise _invalid()
    forms = _domain_forms(domain)
    if forms is None:
        raise _invalid()
    ascii_domain, hashed_domain = forms
    octets = len(local.encode("utf-8"))
    if octets > _MAX_LOCAL or len(ascii_domain) > _MAX_DOMAIN or octets + 1 + len(ascii_domain) > _MAX_ADDRESS:
        raise _invalid()
    return f"{local}@{hashed_domain}"


@lru_cache(maxsize=4096)
def _domain_forms(domain: str) -> tuple[str, str] | None:
    """(A-label form, hashed form) of a domain, None when it is no valid host name.

    Memoised: the IDNA conversions are the slow part of an address, and a segment's addresses
    share few domains.
    """
    try:
        ascii_domain = domain if domain.isascii() else _to_ascii(domain)
    except InvalidIdentifier:
        return None
    if _ASCII_DOMAIN.fullmatch(ascii_domain) is None or ("--" in ascii_domain and not _reserved_labels_ok(ascii_domain)):
        return None
    if domain.isascii():
        return ascii_domain, domain
    try:
        return ascii_domain, idna.decode(ascii_domain)
    except (idna.IDNAError, UnicodeError):
        return None


def _refused(text: str) -> bool:
    return any(not ch.isascii() and unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text)


def _local_ok(local: str) -> bool:
    """A dot-atom; its atoms may also hold non-ASCII characters (RFC 6531 section 3.3)."""
    if local.isascii():
        return _ASCII_LOCAL.fullmatch(local) is not None
    if _refused(local):
        return False
    return all(atom and all(not ch.isascii() or ch in _ASCII_ATEXT for ch in atom) for atom in local.split("."))


def _reserved_labels_ok(domain: str) -> bool:
    """Labels with ``--`` in their 3rd and 4th places (RFC 5890 section 2.3.1) must be valid A-labels."""
    return all(label[2:4] != "--" or _a_label_ok(label) for label in domain.split("."))


def _a_label_ok(label: str) -> bool:
    if not label.startswith("xn--"):
        return False
    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def _to_ascii(domain: str) -> str:
    """The A-label form of a non-ASCII domain; ``invalid_email`` when it is no valid IDN."""
    if _refused(domain):
        raise _invalid()  # UTS #46 would silently drop a zero-width space: refuse it instead
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise _invalid() from None
