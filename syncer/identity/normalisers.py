"""Per-kind normalisers: (trimmed text, region or None) -> the text one platform matches on.

Each function here is a ``Normaliser``: it takes text already trimmed by ``raw_text`` and the row's
region (ISO alpha-2, or None), and returns the platform's form *before* hashing, or raises
``InvalidIdentifier`` with a reason code. ``syncer.identity.platform_rules`` picks one per kind and platform;
``syncer.identity.rows`` runs them. Emails live in ``syncer.identity.emails``, phones in
``syncer.identity.phones``, countries and US states in ``syncer.identity.countries``, the placeholder
values both refuse in ``syncer.identity.placeholders``. This docstring is the reference for what each
platform wants.

Per kind (M = meta, G = google, D = google_data_manager, P = plain)
    email         see ``syncer.identity.emails`` (the RFC rules, NFKC, IDNA, lengths, placeholders).
                  Gmail dots are kept on M, G and P. Only D removes them: for gmail.com and
                  googlemail.com addresses it drops every ``.`` before the ``@`` and cuts a
                  ``+tag``, as the current Data Manager page requires. The Google Ads API page only
                  says that removing the dots is "not required". Inner whitespace is rejected, not
                  squeezed out (D says "trim intermediate whitespace", but ``jo hn@x.com`` is not an
                  address we can vouch for).
    phone         see ``syncer.identity.phones``. M: E.164 digits without ``+`` (``16505551212``); G, D, P:
                  E.164 with ``+`` (``+16505551212``).
    first_name    M: NFC, lowercase, letters and combining marks only (spaces, punctuation, digits
    last_name     removed; é and 정 kept, as Meta's own examples show). G: lowercase and remove
                  whitespace; for last_name also remove punctuation (the two field descriptions of
                  ``OfflineUserAddressInfo`` differ, and we follow each). D: lowercase and trim only.
                  P: trimmed, inner whitespace collapsed, case kept. No letter left: ``invalid_name``.
                  Honorifics ("Mrs.", "Jr.") are not stripped; Google asks that they not be sent, so
                  keep them out of the warehouse column.
    postal_code   M: lowercase, no spaces, no dashes; in the US the first 5 digits. G, D, P: trimmed,
                  not hashed; US: ``12345`` or ``12345-6789`` (Google: "5 digits followed by a 4-digit
                  extension ... may improve your match rate"); elsewhere upper-cased with single
                  spaces. US means the row's country (the ``country`` kind), else its phone region;
                  with neither, a 5+4 digit shape is treated as a US ZIP. A US ZIP with fewer than 5
                  digits is rejected (a numeric column lost the leading zero: cast it to text).
    city          M: like names, no spaces (``menlopark``). P: trimmed, case kept.
    state         M: US 2-letter ANSI code, lowercase; full US state names are mapped; outside the US
                  lowercase letters only. P: US code upper-case, else trimmed.
    country       ISO 3166-1 alpha-2 checked against an embedded ISO table; alpha-3 codes, English
                  names and common aliases ("USA", "United States", "UK", "England") are mapped.
                  M: lowercase and hashed; G, D, P: upper-case, not hashed.
    madid         lowercase UUID with hyphens (32 bare hex digits get them back); the all-zero id
                  sent when ad tracking is limited is rejected. Never hashed.
    external_id   trimmed, never hashed (Meta EXTERN_ID, Google third_party_user_id).
    gender        ``m`` or ``f`` (also male/female/man/woman); anything else ``invalid_gender``.
    date_of_birth M: ``YYYYMMDD`` hashed (the Conversions API ``db`` form); the multi-key schema wants
                  DOBY, DOBM and DOBD, which ``split_dob`` gives. P: ``YYYY-MM-DD``. Accepts dates,
                  ``YYYY-MM-DD``, ``YYYYMMDD`` and D/M/Y or M/D/Y strings when one part is over 12;
                  anything else is ``ambiguous_dob``. The year must be 1900 or later and the date not
                  in the future.

Sources (read for these rules)
    - Meta, Conversions API "Customer Information Parameters", developers.facebook.com/docs/
      marketing-api/conversions-api/parameters/customer-information-parameters (the same text is at
      developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/
      customer-information-parameters.md): per-field rules and the worked examples used as golden
      tests: John_Smith@gmail.com, US (650)555-1212 -> 16505551212, Mary, Valéry, 정, 2/16/1997 ->
      19970216, United States -> us, with their SHA-256 digests.
    - Meta, Marketing API "Custom Audience API", developers.facebook.com/docs/marketing-api/
      custom-audience-api ("Hashing and Normalizing Data"), and the Business Help Centre page "How to
      format a customer list" (facebook.com/business/help/2082575038703844), whose phone examples
      (1-234-567-8910, +44 844 412 4653) are used in tests. Summarised in shared specs section 1.
    - facebook-business 26.0.3: ``adobjects/helpers/customaudiencemixin.py`` (``normalize_key``)
      and ``adobjects/serverside/normalize.py``. The SDK keeps only ``[a-zA-Z]`` in FN/LN/CT/ST, so it
      turns Valéry into "valry". That contradicts Meta's own example; we follow the docs.
    - Google Ads API, "Customer Match" guide, developers.google.com/google-ads/api/docs/remarketing/
      audience-types/customer-match: trim and lowercase; "You're not required to remove all periods
      (.) preceding the domain name in gmail.com and googlemail.com email addresses since they'll
      still be accepted".
    - Google Ads API reference ``OfflineUserAddressInfo``, developers.google.com/google-ads/api/
      reference/rpc/latest/OfflineUserAddressInfo: first name "Lowercase all characters; Remove any
      extra spaces before, after, and in between"; last name "lower case only and no punctuation";
      country_code ISO-3166-1 alpha-2; postal_code not hashed.
    - Google Ads Help, "Format your customer data file" (support.google.com/google-ads/answer/7659867)
      and its hashed template: "Lowercase all characters and remove all extra spaces before after or
      in between email addresses and names", E.164 phones, accented names (zoë, pérez) allowed.
    - Google Data Manager API, "Format user data", developers.google.com/data-manager/api/devguides/
      concepts/formatting: the Gmail rule, with its examples cloudy.sanfrancisco+shopping@gmail.com ->
      cloudysanfrancisco@gmail.com and user.name+NYC@Example.com -> user.name+nyc@example.com;
      (800)555-0100 -> +18005550100; given_name and family_name lowercase and trimmed; region_code
      alpha-2; postal_code 5 or 5+4 digits in the US; neither hashed.
    - google-ads 34.0.0 ``examples/remarketing/add_customer_match_user_list.py`` (sample records
      Alex/Quinn/US/94045 and +1 800 5550101). Its ``normalize_and_hash`` does not lowercase when
      ``remove_all_whitespace=True``, and ``upload_enhanced_conversions_for_web.py`` strips ``.`` and
      ``+`` for every domain. Neither is copied.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Callable

from syncer.identity.countries import resolve_country, us_state
from syncer.identity.kinds import InvalidIdentifier

Normaliser = Callable[[str, str | None], str]
"""(trimmed text, region or None) -> platform text; raises ``InvalidIdentifier``."""

# --- text helpers -------------------------------------------------------------------------------

_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")


def _letters(text: str) -> str:
    """NFC, then keep only letters and combining marks (Unicode L* and M*): no spaces, punctuation, digits."""
    if text.isascii():
        return _NOT_ASCII_LETTER.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LM")


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


# --- one normaliser per kind and platform flavour --------------------------------------------

def name_letters(text: str, region: str | None) -> str:
    name = _letters(text.lower())
    if not name:
        raise InvalidIdentifier("invalid_name")
    return name


def name_no_space(text: str, region: str | None) -> str:
    name = "".join(unicodedata.normalize("NFC", text).lower().split())
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def name_no_space_no_punct(text: str, region: str | None) -> str:
    name = name_no_space(text, region)
    return "".join(ch for ch in name if unicodedata.category(ch)[0] != "P")


def name_trimmed_lower(text: str, region: str | None) -> str:
    name = unicodedata.normalize("NFC", text).lower()
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def name_plain(text: str, region: str | None) -> str:
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def city_letters(text: str, region: str | None) -> str:
    city = _letters(text.lower())
    if not city:
        raise InvalidIdentifier("invalid_city")
    return city


def city_plain(text: str, region: str | None) -> str:
    city = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(city):
        raise InvalidIdentifier("invalid_city")
    return city


_US_ZIP = re.compile(r"(\d{5})(?:[-\s]?(\d{4}))?")
_US_ZIP_PLUS4 = re.compile(r"\d{5}[-\s]?\d{4}")
_POSTAL_CLEAN = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]*[A-Z0-9])?")


def _is_us(region: str | None, text: str) -> bool:
    return region == "US" or (region is None and _US_ZIP_PLUS4.fullmatch(text) is not None)


def postal_meta(text: str, region: str | None) -> str:
    if _is_us(region, text):
        match = _US_ZIP.fullmatch(text)
        if match is None:
            raise InvalidIdentifier("invalid_postal_code")
        return match.group(1)
    postal = "".join(text.split()).replace("-", "").lower()
    if not (postal.isascii() and postal.isalnum()):
        raise InvalidIdentifier("invalid_postal_code")
    return postal


def postal_clear(text: str, region: str | None) -> str:
    if _is_us(region, text):
        match = _US_ZIP.fullmatch(text)
        if match is None:
            raise InvalidIdentifier("invalid_postal_code")
        zip5, plus4 = match.groups()
        return f"{zip5}-{plus4}" if plus4 else zip5
    postal = " ".join(text.split()).upper()
    if not postal.isascii() or _POSTAL_CLEAN.fullmatch(postal) is None:
        raise InvalidIdentifier("invalid_postal_code")
    return postal


def state_meta(text: str, region: str | None) -> str:
    if region in (None, "US"):
        code = us_state(text)
        if code is not None:
            return code.lower()
        if region == "US":
            raise InvalidIdentifier("invalid_state")
    state = _letters(text.lower())
    if not state:
        raise InvalidIdentifier("invalid_state")
    return state


def state_plain(text: str, region: str | None) -> str:
    if region in (None, "US"):
        code = us_state(text)
        if code is not None:
            return code
        if region == "US":
            raise InvalidIdentifier("invalid_state")
    state = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(state):
        raise InvalidIdentifier("invalid_state")
    return state


def country_upper(text: str, region: str | None) -> str:
    code = resolve_country(text)
    if code is None:
        raise InvalidIdentifier("invalid_country")
    return code


def country_lower(text: str, region: str | None) -> str:
    return country_upper(text, region).lower()


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def madid(text: str, region: str | None) -> str:
    value = text.lower()
    if _HEX32.fullmatch(value):
        value = f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    if _UUID.fullmatch(value) is None or value == _NIL_UUID:
        raise InvalidIdentifier("invalid_madid")
    return value


def external_id(text: str, region: str | None) -> str:
    return text


_GENDERS = {"m": "m", "male": "m", "man": "m", "f": "f", "female": "f", "woman": "f"}


def gender(text: str, region: str | None) -> str:
    code = _GENDERS.get(text.lower())
    if code is None:
        raise InvalidIdentifier("invalid_gender")
    return code


_DOB_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DOB_YMD = re.compile(r"(\d{4})[-/. ](\d{1,2})[-/. ](\d{1,2})(?:[T ][\d:.+\-Z]*)?")
_DOB_XXY = re.compile(r"(\d{1,2})[-/. ](\d{1,2})[-/. ](\d{4})")


def dob_parts(text: str) -> tuple[int, int, int]:
    """(year, month, day) from YYYYMMDD, YYYY-MM-DD, or D/M/Y or M/D/Y when one part is over 12."""
    match = _DOB_COMPACT.fullmatch(text) or _DOB_YMD.fullmatch(text)
    if match is not None:
        year, month, day = (int(part) for part in match.groups())
    else:
        match = _DOB_XXY.fullmatch(text)
        if match is None:
            raise InvalidIdentifier("invalid_dob")
        first, second, year = (int(part) for part in match.groups())
        if first > 12 >= second:
            day, month = first, second
        elif second > 12 >= first or first == second:
            month, day = first, second
        elif first > 12 and second > 12:
            raise InvalidIdentifier("invalid_dob")
        else:
            raise InvalidIdentifier("ambiguous_dob")
    try:
        born = _dt.date(year, month, day)
    except ValueError:
        raise InvalidIdentifier("invalid_dob") from None
    if year < 1900 or born > _dt.date.today():
        raise InvalidIdentifier("invalid_dob")
    return year, month, day


def dob_compact(text: str, region: str | None) -> str:
    year, month, day = dob_parts(text)
    return f"{year:04d}{month:02d}{day:02d}"


def dob_iso(text: str, region: str | None) -> str:
    year, month, day = dob_parts(text)
    return f"{year:04d}-{month:02d}-{day:02d}"
