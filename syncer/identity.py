"""Identity normalisation and hashing: one raw warehouse value in, the exact form each platform matches on out.

What it does
    ``normalise(kind, raw, platform=...)`` turns a raw value (an email, a phone, a name...) into the
    text the platform documents *before* hashing; ``encode`` then hashes it (lowercase hex SHA-256 of
    the UTF-8 bytes) where the platform hashes that kind, and passes it through where it does not.
    ``identify`` does that for every identifier kind of one row and says which values were dropped and
    why; ``identify_many`` is the batch form used by the engine. Nothing here logs, and no exception
    message or reason ever carries a raw value: reasons are short codes (``REASONS``).

Rule sets (``PLATFORM_RULES``)
    ``meta``      Custom Audiences multi-key schema. Every kind hashed except MADID and EXTERN_ID.
    ``google``    Google Ads API Customer Match (``OfflineUserDataJobService``, the API our connector
                  drives): email, phone, first/last name hashed; ``country_code``, ``postal_code``,
                  ``mobile_id`` (madid) and ``third_party_user_id`` (external_id) sent in clear.
                  city, state, gender and date_of_birth are not Customer Match fields.
    ``google_data_manager``  the same members through the Data Manager API (required for most new
                  Customer Match integrations from 1 April 2026, see specs section 2); it differs from
                  ``google`` in the Gmail rule and in names (below). Offered so the connector can switch
                  without touching this module.
    ``plain``     normalised, never hashed, for ESP and SMS tools: email trimmed and lowercased, phone
                  E.164 with ``+``, names and city with their case kept, country upper-case ISO alpha-2,
                  date of birth ISO ``YYYY-MM-DD`` (what Braze and Klaviyo take).

Per kind (M = meta, G = google, D = google_data_manager, P = plain)
    email         trim, lowercase; must be local@domain.tld: one ``@``, no whitespace inside, a dot in
                  the domain, a TLD of 2+ characters; else ``invalid_email``. Gmail dots are kept on
                  M, G and P. Only D removes them: for gmail.com and googlemail.com addresses it drops
                  every ``.`` before the ``@`` and cuts a ``+tag``, as the current Data Manager page
                  requires. The Google Ads API page only says that removing the dots is "not
                  required". Inner whitespace is rejected, not squeezed out (D says "trim intermediate
                  whitespace", but ``jo hn@x.com`` is not an address we can vouch for).
    phone         ``phonenumbers`` parse with the row's country (``region_column_value``), else the
                  segment default; a leading ``+`` wins over both, and a leading ``00`` is read as
                  ``+`` when the region's own dialling prefix does not explain it. National trunk zeros
                  are dropped by the parse. Extensions are accepted and dropped (E.164 has none).
                  Letters (vanity numbers such as 1-800-FLOWERS) are rejected: Meta says "remove
                  letters", which would leave a different number, and a vanity number is a business
                  line, not a person. Must pass ``is_valid_number``, else ``invalid_phone``; no region
                  and no ``+``/``00`` gives ``phone_no_country``. M: E.164 digits without ``+``
                  (``16505551212``); G, D, P: E.164 with ``+`` (``+16505551212``).
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

Sources (read for this module)
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
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "IDENTIFIER_KINDS",
    "PLATFORM_RULES",
    "REASONS",
    "Identified",
    "InvalidIdentifier",
    "RuleSet",
    "UnsupportedKindError",
    "encode",
    "identify",
    "identify_many",
    "normalise",
    "resolve_country",
    "split_dob",
]

IDENTIFIER_KINDS: tuple[str, ...] = (
    "email", "phone", "first_name", "last_name", "postal_code", "city",
    "state", "country", "madid", "external_id", "date_of_birth", "gender",
)

#: Every reason code this module can produce. A reason is all a caller ever learns about a bad value.
REASONS: frozenset[str] = frozenset({
    "missing", "no_identifier", "incomplete_address",
    "invalid_email", "invalid_phone", "phone_no_country", "invalid_name", "invalid_postal_code",
    "invalid_city", "invalid_state", "invalid_country", "invalid_madid", "invalid_external_id",
    "invalid_gender", "invalid_dob", "ambiguous_dob",
})

_INVALID = {
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


def _text(raw: object, kind: str) -> str:
    """Coerce a warehouse value to trimmed text; None, NaN, NA and blanks are ``missing``."""
    if type(raw) is str:
        text = raw
    elif raw is None or type(raw).__name__ in _MISSING_TYPES:
        raise InvalidIdentifier("missing", kind)
    elif isinstance(raw, bool):
        raise InvalidIdentifier(_INVALID[kind], kind)
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
            raise InvalidIdentifier(_INVALID[kind], kind) from None
    else:
        text = str(raw)
    text = text.strip()
    if text and (text[0] in _ZERO_WIDTH or text[-1] in _ZERO_WIDTH):
        text = text.strip(_ZERO_WIDTH + " \t\r\n\x0b\x0c\xa0")
    if not text:
        raise InvalidIdentifier("missing", kind)
    return text


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --- text helpers -------------------------------------------------------------------------------


_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")


def _letters(text: str) -> str:
    """NFC, then keep only letters and combining marks (Unicode L* and M*): no spaces, punctuation, digits."""
    if text.isascii():
        return _NOT_ASCII_LETTER.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LM")


def _fold(text: str) -> str:
    """Lookup key for names of countries and states: accents dropped, lowercase a-z only."""
    text = unicodedata.normalize("NFKD", text).lower()
    if text.startswith("the "):
        text = text[4:]
    return "".join(ch for ch in text if "a" <= ch <= "z")


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


# --- countries and US states --------------------------------------------------------------------

# ISO 3166-1: alpha-2, alpha-3, English short name(s) separated by "|". Generated once from the ISO
# data shipped in pycountry 26.2.16 (Debian iso-codes); embedded so validation needs no extra package.
_ISO_3166 = """
AD AND Andorra; AE ARE United Arab Emirates; AF AFG Afghanistan; AG ATG Antigua and Barbuda;
AI AIA Anguilla; AL ALB Albania; AM ARM Armenia; AO AGO Angola; AQ ATA Antarctica;
AR ARG Argentina; AS ASM American Samoa; AT AUT Austria; AU AUS Australia; AW ABW Aruba;
AX ALA Åland Islands; AZ AZE Azerbaijan; BA BIH Bosnia and Herzegovina; BB BRB Barbados;
BD BGD Bangladesh; BE BEL Belgium; BF BFA Burkina Faso; BG BGR Bulgaria; BH BHR Bahrain;
BI BDI Burundi; BJ BEN Benin; BL BLM Saint Barthélemy; BM BMU Bermuda; BN BRN Brunei Darussalam;
BO BOL Bolivia|Bolivia, Plurinational State of; BQ BES Bonaire, Sint Eustatius and Saba;
BR BRA Brazil; BS BHS Bahamas; BT BTN Bhutan; BV BVT Bouvet Island; BW BWA Botswana;
BY BLR Belarus; BZ BLZ Belize; CA CAN Canada; CC CCK Cocos (Keeling) Islands;
CD COD Congo, The Democratic Republic of the; CF CAF Central African Republic; CG COG Congo;
CH CHE Switzerland; CI CIV Côte d'Ivoire; CK COK Cook Islands; CL CHL Chile; CM CMR Cameroon;
CN CHN China; CO COL Colombia; CR CRI Costa Rica; CU CUB Cuba; CV CPV Cabo Verde;
CW CUW Curaçao; CX CXR Christmas Island; CY CYP Cyprus; CZ CZE Czechia; DE DEU Germany;
DJ DJI Djibouti; DK DNK Denmark; DM DMA Dominica; DO DOM Dominican Republic; DZ DZA Algeria;
EC ECU Ecuador; EE EST Estonia; EG EGY Egypt; EH ESH Western Sahara; ER ERI Eritrea;
ES ESP Spain; ET ETH Ethiopia; FI FIN Finland; FJ FJI Fiji; FK FLK Falkland Islands (Malvinas);
FM FSM Micronesia, Federated States of; FO FRO Faroe Islands; FR FRA France; GA GAB Gabon;
GB GBR United Kingdom; GD GRD Grenada; GE GEO Georgia; GF GUF French Guiana; GG GGY Guernsey;
GH GHA Ghana; GI GIB Gibraltar; GL GRL Greenland; GM GMB Gambia; GN GIN Guinea;
GP GLP Guadeloupe; GQ GNQ Equatorial Guinea; GR GRC Greece;
GS SGS South Georgia and the South Sandwich Islands; GT GTM Guatemala; GU GUM Guam;
GW GNB Guinea-Bissau; GY GUY Guyana; HK HKG Hong Kong; HM HMD Heard Island and McDonald Islands;
HN HND Honduras; HR HRV Croatia; HT HTI Haiti; HU HUN Hungary; ID IDN Indonesia; IE IRL Ireland;
IL ISR Israel; IM IMN Isle of Man; IN IND India; IO IOT British Indian Ocean Territory;
IQ IRQ Iraq; IR IRN Iran|Iran, Islamic Republic of; IS ISL Iceland; IT ITA Italy; JE JEY Jersey;
JM JAM Jamaica; JO JOR Jordan; JP JPN Japan; KE KEN Kenya; KG KGZ Kyrgyzstan; KH KHM Cambodia;
KI KIR Kiribati; KM COM Comoros; KN KNA Saint Kitts and Nevis;
KP PRK North Korea|Korea, Democratic People's Republic of;
KR KOR South Korea|Korea, Republic of; KW KWT Kuwait; KY CYM Cayman Islands; KZ KAZ Kazakhstan;
LA LAO Laos|Lao People's Democratic Republic; LB LBN Lebanon; LC LCA Saint Lucia;
LI LIE Liechtenstein; LK LKA Sri Lanka; LR LBR Liberia; LS LSO Lesotho; LT LTU Lithuania;
LU LUX Luxembourg; LV LVA Latvia; LY LBY Libya; MA MAR Morocco; MC MCO Monaco;
MD MDA Moldova|Moldova, Republic of; ME MNE Montenegro; MF MAF Saint Martin (French part);
MG MDG Madagascar; MH MHL Marshall Islands; MK MKD North Macedonia; ML MLI Mali; MM MMR Myanmar;
MN MNG Mongolia; MO MAC Macao; MP MNP Northern Mariana Islands; MQ MTQ Martinique;
MR MRT Mauritania; MS MSR Montserrat; MT MLT Malta; MU MUS Mauritius; MV MDV Maldives;
MW MWI Malawi; MX MEX Mexico; MY MYS Malaysia; MZ MOZ Mozambique; NA NAM Namibia;
NC NCL New Caledonia; NE NER Niger; NF NFK Norfolk Island; NG NGA Nigeria; NI NIC Nicaragua;
NL NLD Netherlands; NO NOR Norway; NP NPL Nepal; NR NRU Nauru; NU NIU Niue; NZ NZL New Zealand;
OM OMN Oman; PA PAN Panama; PE PER Peru; PF PYF French Polynesia; PG PNG Papua New Guinea;
PH PHL Philippines; PK PAK Pakistan; PL POL Poland; PM SPM Saint Pierre and Miquelon;
PN PCN Pitcairn; PR PRI Puerto Rico; PS PSE Palestine, State of; PT PRT Portugal; PW PLW Palau;
PY PRY Paraguay; QA QAT Qatar; RE REU Réunion; RO ROU Romania; RS SRB Serbia;
RU RUS Russian Federation; RW RWA Rwanda; SA SAU Saudi Arabia; SB SLB Solomon Islands;
SC SYC Seychelles; SD SDN Sudan; SE SWE Sweden; SG SGP Singapore;
SH SHN Saint Helena, Ascension and Tristan da Cunha; SI SVN Slovenia;
SJ SJM Svalbard and Jan Mayen; SK SVK Slovakia; SL SLE Sierra Leone; SM SMR San Marino;
SN SEN Senegal; SO SOM Somalia; SR SUR Suriname; SS SSD South Sudan;
ST STP Sao Tome and Principe; SV SLV El Salvador; SX SXM Sint Maarten (Dutch part);
SY SYR Syria|Syrian Arab Republic; SZ SWZ Eswatini; TC TCA Turks and Caicos Islands;
TD TCD Chad; TF ATF French Southern Territories; TG TGO Togo; TH THA Thailand;
TJ TJK Tajikistan; TK TKL Tokelau; TL TLS Timor-Leste; TM TKM Turkmenistan; TN TUN Tunisia;
TO TON Tonga; TR TUR Türkiye; TT TTO Trinidad and Tobago; TV TUV Tuvalu;
TW TWN Taiwan|Taiwan, Province of China; TZ TZA Tanzania|Tanzania, United Republic of;
UA UKR Ukraine; UG UGA Uganda; UM UMI United States Minor Outlying Islands;
US USA United States; UY URY Uruguay; UZ UZB Uzbekistan; VA VAT Holy See (Vatican City State);
VC VCT Saint Vincent and the Grenadines; VE VEN Venezuela|Venezuela, Bolivarian Republic of;
VG VGB Virgin Islands, British; VI VIR Virgin Islands, U.S.; VN VNM Vietnam|Viet Nam;
VU VUT Vanuatu; WF WLF Wallis and Futuna; WS WSM Samoa; YE YEM Yemen; YT MYT Mayotte;
ZA ZAF South Africa; ZM ZMB Zambia; ZW ZWE Zimbabwe;"""

# Folded names that people write but ISO does not.
_COUNTRY_ALIASES = {
    "america": "US", "unitedstatesofamerica": "US", "uk": "GB", "greatbritain": "GB", "britain": "GB",
    "england": "GB", "scotland": "GB", "wales": "GB", "northernireland": "GB", "korea": "KR",
    "republicofkorea": "KR", "russia": "RU", "czechrepublic": "CZ", "turkey": "TR", "holland": "NL",
    "uae": "AE", "ivorycoast": "CI", "vatican": "VA", "vaticancity": "VA", "holysee": "VA",
    "palestine": "PS", "micronesia": "FM", "macedonia": "MK", "swaziland": "SZ", "capeverde": "CV",
    "burma": "MM", "brunei": "BN", "macau": "MO", "drc": "CD", "drcongo": "CD",
    "democraticrepublicofcongo": "CD", "democraticrepublicofthecongo": "CD", "deutschland": "DE",
    "espana": "ES", "brasil": "BR", "usvirginislands": "VI", "britishvirginislands": "VG",
}


def _load_countries() -> tuple[frozenset[str], dict[str, str]]:
    alpha2: set[str] = set()
    lookup: dict[str, str] = {}
    for entry in _ISO_3166.replace("\n", " ").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        a2, a3, names = entry.split(" ", 2)
        alpha2.add(a2)
        lookup[a3.lower()] = a2
        for name in names.split("|"):
            lookup[_fold(name)] = a2
    lookup.update(_COUNTRY_ALIASES)
    return frozenset(alpha2), lookup


_ALPHA2, _COUNTRY_LOOKUP = _load_countries()


def resolve_country(value: object) -> str | None:
    """ISO 3166-1 alpha-2 code (upper case) for a code, alpha-3 code or English name; None if unknown or blank."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 2 and text.upper() in _ALPHA2:
        return text.upper()
    key = _fold(text)
    if len(key) == 2:
        return key.upper() if key.upper() in _ALPHA2 else _COUNTRY_LOOKUP.get(key)
    return _COUNTRY_LOOKUP.get(key) if key else None


_US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts",
    "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico",
    "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia|Washington DC|Washington D.C.", "PR": "Puerto Rico", "GU": "Guam",
    "VI": "U.S. Virgin Islands|US Virgin Islands|Virgin Islands", "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}
_US_STATE_LOOKUP = {_fold(name): code for code, names in _US_STATES.items() for name in names.split("|")}
_US_STATE_LOOKUP.update({code.lower(): code for code in _US_STATES})


def _us_state(text: str) -> str | None:
    return _US_STATE_LOOKUP.get(_fold(text))


# --- normalisers: (trimmed text, region or None) -> platform text, or InvalidIdentifier ----------

Normaliser = Callable[[str, str | None], str]

_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)*\.[^@\s.]{2,}")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def _email(text: str, region: str | None) -> str:
    email = text.lower()
    if _EMAIL_RE.fullmatch(email) is None:
        raise InvalidIdentifier("invalid_email", "email")
    return email


def _email_data_manager(text: str, region: str | None) -> str:
    email = _email(text, region)
    local, _, domain = email.rpartition("@")
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            raise InvalidIdentifier("invalid_email", "email")
        email = f"{local}@{domain}"
    return email


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


def _e164(text: str, region: str | None) -> str:
    """E.164 with ``+``. Letters (other than an extension marker) are refused, see the module docstring."""
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


def _phone_digits(text: str, region: str | None) -> str:
    return _e164(text, region)[1:]


def _name_letters(text: str, region: str | None) -> str:
    name = _letters(text.lower())
    if not name:
        raise InvalidIdentifier("invalid_name")
    return name


def _name_no_space(text: str, region: str | None) -> str:
    name = "".join(unicodedata.normalize("NFC", text).lower().split())
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def _name_no_space_no_punct(text: str, region: str | None) -> str:
    name = _name_no_space(text, region)
    return "".join(ch for ch in name if unicodedata.category(ch)[0] != "P")


def _name_trimmed_lower(text: str, region: str | None) -> str:
    name = unicodedata.normalize("NFC", text).lower()
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def _name_plain(text: str, region: str | None) -> str:
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(name):
        raise InvalidIdentifier("invalid_name")
    return name


def _city_letters(text: str, region: str | None) -> str:
    city = _letters(text.lower())
    if not city:
        raise InvalidIdentifier("invalid_city")
    return city


def _city_plain(text: str, region: str | None) -> str:
    city = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(city):
        raise InvalidIdentifier("invalid_city")
    return city


_US_ZIP = re.compile(r"(\d{5})(?:[-\s]?(\d{4}))?")
_US_ZIP_PLUS4 = re.compile(r"\d{5}[-\s]?\d{4}")
_POSTAL_CLEAN = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]*[A-Z0-9])?")


def _is_us(region: str | None, text: str) -> bool:
    return region == "US" or (region is None and _US_ZIP_PLUS4.fullmatch(text) is not None)


def _postal_meta(text: str, region: str | None) -> str:
    if _is_us(region, text):
        match = _US_ZIP.fullmatch(text)
        if match is None:
            raise InvalidIdentifier("invalid_postal_code")
        return match.group(1)
    postal = "".join(text.split()).replace("-", "").lower()
    if not (postal.isascii() and postal.isalnum()):
        raise InvalidIdentifier("invalid_postal_code")
    return postal


def _postal_clear(text: str, region: str | None) -> str:
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


def _state_meta(text: str, region: str | None) -> str:
    if region in (None, "US"):
        code = _us_state(text)
        if code is not None:
            return code.lower()
        if region == "US":
            raise InvalidIdentifier("invalid_state")
    state = _letters(text.lower())
    if not state:
        raise InvalidIdentifier("invalid_state")
    return state


def _state_plain(text: str, region: str | None) -> str:
    if region in (None, "US"):
        code = _us_state(text)
        if code is not None:
            return code
        if region == "US":
            raise InvalidIdentifier("invalid_state")
    state = " ".join(unicodedata.normalize("NFC", text).split())
    if not _has_letter(state):
        raise InvalidIdentifier("invalid_state")
    return state


def _country_upper(text: str, region: str | None) -> str:
    code = resolve_country(text)
    if code is None:
        raise InvalidIdentifier("invalid_country")
    return code


def _country_lower(text: str, region: str | None) -> str:
    return _country_upper(text, region).lower()


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _madid(text: str, region: str | None) -> str:
    madid = text.lower()
    if _HEX32.fullmatch(madid):
        madid = f"{madid[:8]}-{madid[8:12]}-{madid[12:16]}-{madid[16:20]}-{madid[20:]}"
    if _UUID.fullmatch(madid) is None or madid == _NIL_UUID:
        raise InvalidIdentifier("invalid_madid")
    return madid


def _external_id(text: str, region: str | None) -> str:
    return text


_GENDERS = {"m": "m", "male": "m", "man": "m", "f": "f", "female": "f", "woman": "f"}


def _gender(text: str, region: str | None) -> str:
    gender = _GENDERS.get(text.lower())
    if gender is None:
        raise InvalidIdentifier("invalid_gender")
    return gender


_DOB_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DOB_YMD = re.compile(r"(\d{4})[-/. ](\d{1,2})[-/. ](\d{1,2})(?:[T ][\d:.+\-Z]*)?")
_DOB_XXY = re.compile(r"(\d{1,2})[-/. ](\d{1,2})[-/. ](\d{4})")


def _dob_parts(text: str) -> tuple[int, int, int]:
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


def _dob_compact(text: str, region: str | None) -> str:
    year, month, day = _dob_parts(text)
    return f"{year:04d}{month:02d}{day:02d}"


def _dob_iso(text: str, region: str | None) -> str:
    year, month, day = _dob_parts(text)
    return f"{year:04d}-{month:02d}-{day:02d}"


def split_dob(value: object, *, hashed: bool = True) -> tuple[str, str, str]:
    """Meta's multi-key DOBY, DOBM and DOBD for one date of birth.

    Args:
        value: a date, or text in any form ``normalise("date_of_birth", ...)`` accepts.
        hashed: False returns the normalised parts (``"1997"``, ``"02"``, ``"16"``) instead of their digests.

    Returns:
        (YYYY, MM, DD), each the lowercase hex SHA-256 of the zero-padded part unless ``hashed`` is False.

    Raises:
        InvalidIdentifier: ``missing``, ``invalid_dob`` or ``ambiguous_dob``.
    """
    try:
        year, month, day = _dob_parts(_text(value, "date_of_birth"))
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(exc.reason, "date_of_birth") from None
    parts = (f"{year:04d}", f"{month:02d}", f"{day:02d}")
    if not hashed:
        return parts
    return (_sha256(parts[0]), _sha256(parts[1]), _sha256(parts[2]))


# --- rule sets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSet:
    """How one platform wants each identifier kind: a normaliser per supported kind, and which kinds it hashes.

    ``address_group`` lists kinds that only count together (Google's address identifier needs first
    name, last name, country and postal code); ``identify`` drops a partial group as ``incomplete_address``.
    """

    name: str
    normalisers: Mapping[str, Normaliser]
    hashed: frozenset[str]
    address_group: tuple[str, ...] = ()

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.normalisers)


_GOOGLE_ADDRESS = ("first_name", "last_name", "country", "postal_code")

_META = RuleSet(
    name="meta",
    normalisers=MappingProxyType({
        "email": _email, "phone": _phone_digits, "first_name": _name_letters,
        "last_name": _name_letters, "postal_code": _postal_meta, "city": _city_letters,
        "state": _state_meta, "country": _country_lower, "madid": _madid,
        "external_id": _external_id, "date_of_birth": _dob_compact, "gender": _gender,
    }),
    hashed=frozenset(IDENTIFIER_KINDS) - {"madid", "external_id"},
)
_GOOGLE = RuleSet(
    name="google",
    normalisers=MappingProxyType({
        "email": _email, "phone": _e164, "first_name": _name_no_space,
        "last_name": _name_no_space_no_punct, "postal_code": _postal_clear,
        "country": _country_upper, "madid": _madid, "external_id": _external_id,
    }),
    hashed=frozenset({"email", "phone", "first_name", "last_name"}),
    address_group=_GOOGLE_ADDRESS,
)
_GOOGLE_DATA_MANAGER = RuleSet(
    name="google_data_manager",
    normalisers=MappingProxyType({
        "email": _email_data_manager, "phone": _e164, "first_name": _name_trimmed_lower,
        "last_name": _name_trimmed_lower, "postal_code": _postal_clear,
        "country": _country_upper, "madid": _madid,
    }),
    hashed=frozenset({"email", "phone", "first_name", "last_name"}),
    address_group=_GOOGLE_ADDRESS,
)
_PLAIN = RuleSet(
    name="plain",
    normalisers=MappingProxyType({
        "email": _email, "phone": _e164, "first_name": _name_plain, "last_name": _name_plain,
        "postal_code": _postal_clear, "city": _city_plain, "state": _state_plain,
        "country": _country_upper, "madid": _madid, "external_id": _external_id,
        "date_of_birth": _dob_iso, "gender": _gender,
    }),
    hashed=frozenset(),
)

PLATFORM_RULES: Mapping[str, RuleSet] = MappingProxyType(
    {rules.name: rules for rules in (_META, _GOOGLE, _GOOGLE_DATA_MANAGER, _PLAIN)}
)


def _rules(platform: str) -> RuleSet:
    try:
        return PLATFORM_RULES[platform]
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}; expected one of {sorted(PLATFORM_RULES)}") from None


def _normaliser(rules: RuleSet, kind: str) -> Normaliser:
    try:
        return rules.normalisers[kind]
    except KeyError:
        if kind not in IDENTIFIER_KINDS:
            raise UnsupportedKindError(f"unknown identifier kind {kind!r}") from None
        raise UnsupportedKindError(f"platform {rules.name!r} takes no {kind!r} identifier") from None


def _default_region(region: str | None) -> str | None:
    if region is None or (isinstance(region, str) and not region.strip()):
        return None
    code = resolve_country(region)
    if code is None:
        raise ValueError("region must be an ISO 3166-1 alpha-2 country code")
    return code


# --- single values -------------------------------------------------------------------------------


def normalise(kind: str, raw: object, *, platform: str, region: str | None = None) -> str:
    """The text the platform wants for this kind, before any hashing.

    Args:
        kind: one of ``IDENTIFIER_KINDS``.
        raw: the warehouse value (str, int, float, date...).
        platform: a key of ``PLATFORM_RULES``.
        region: ISO alpha-2 country: the phone's default region, and the country that decides
            US-only rules for postal_code and state.

    Raises:
        InvalidIdentifier: the value is unusable; ``missing`` for None or blank.
        UnsupportedKindError: the platform has no such field.
        ValueError: unknown platform, or ``region`` is not a country.
    """
    normaliser = _normaliser(_rules(platform), kind)
    reg = _default_region(region)
    try:
        return normaliser(_text(raw, kind), reg)
    except InvalidIdentifier as exc:
        if exc.kind is None:
            raise InvalidIdentifier(exc.reason, kind) from None
        raise


def encode(kind: str, raw: object, *, platform: str, region: str | None = None) -> str:
    """``normalise``, then lowercase hex SHA-256 where the platform hashes the kind; pass-through elsewhere."""
    value = normalise(kind, raw, platform=platform, region=region)
    return _sha256(value) if kind in _rules(platform).hashed else value


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identified:
    """The encoded identifiers of one row.

    ``identifiers`` maps kind to encoded value and holds only values the platform can take.
    ``dropped`` maps kind to reason for values that were given but unusable; missing or blank values
    are not listed. ``reason`` is None when the row can be sent; otherwise the row is rejected with it
    (the first dropped reason, else ``no_identifier``).
    """

    identifiers: dict[str, str]
    dropped: dict[str, str]
    reason: str | None


@dataclass(frozen=True)
class _Plan:
    kinds: tuple[str, ...]
    steps: tuple[tuple[str, Normaliser, bool, bool], ...]  # kind, normaliser, hashed, is_phone
    country_index: int | None
    address_group: tuple[str, ...]


@lru_cache(maxsize=128)
def _plan(platform: str, kinds: tuple[str, ...]) -> _Plan:
    rules = _rules(platform)
    if not kinds:
        raise ValueError("kinds must name at least one identifier kind")
    if len(set(kinds)) != len(kinds):
        raise ValueError("kinds must not repeat")
    steps = tuple((kind, _normaliser(rules, kind), kind in rules.hashed, kind == "phone") for kind in kinds)
    group = rules.address_group if set(kinds) & set(rules.address_group) else ()
    country_index = kinds.index("country") if "country" in kinds else None
    return _Plan(kinds, steps, country_index, group)


_PHONE_CACHE_MAX = 500_000


def _cached_phone(normaliser: Normaliser, hashed: bool) -> Normaliser:
    """Memoise phone parsing (the slow part) by (text, region) for one batch; the cache dies with the batch."""
    cache: dict[tuple[str, str | None], str] = {}

    def phone(text: str, region: str | None) -> str:
        key = (text, region)
        hit = cache.get(key)
        if hit is None:
            try:
                value = normaliser(text, region)
                hit = _sha256(value) if hashed else value
            except InvalidIdentifier as exc:
                hit = "!" + exc.reason  # encoded phones never start with "!"
            if len(cache) >= _PHONE_CACHE_MAX:
                cache.clear()
            cache[key] = hit
        if hit[0] == "!":
            raise InvalidIdentifier(hit[1:], "phone")
        return hit

    return phone


def _row_encoder(
    plan: _Plan, default_region: str | None, *, cache_phone: bool
) -> Callable[[Sequence[object], object], Identified]:
    """Build the per-row function once per call, with everything it needs bound to locals."""
    steps = plan.steps
    if cache_phone:
        steps = tuple(
            (kind, _cached_phone(fn, hashed), False, True) if is_phone else (kind, fn, hashed, is_phone)
            for kind, fn, hashed, is_phone in steps
        )
    countries: dict[object, str | None] = {}
    country_index, group = plan.country_index, plan.address_group
    text_of, sha, invalid = _text, _sha256, InvalidIdentifier

    def country(value: object) -> str | None:
        if value is None:
            return None
        try:
            return countries[value]
        except KeyError:
            code = countries[value] = resolve_country(value)
            return code
        except TypeError:  # unhashable value in a country column
            return None

    def encode_row(values: Sequence[object], region_value: object) -> Identified:
        phone_region = country(region_value) or default_region
        address_region = phone_region
        if country_index is not None:
            address_region = country(values[country_index]) or phone_region
        identifiers: dict[str, str] = {}
        dropped: dict[str, str] = {}
        for (kind, fn, hashed, is_phone), raw in zip(steps, values):
            try:
                value = fn(text_of(raw, kind), phone_region if is_phone else address_region)
            except invalid as exc:
                if exc.reason != "missing":
                    dropped[kind] = exc.reason
                continue
            identifiers[kind] = sha(value) if hashed else value
        if group:
            _drop_partial_group(group, identifiers, dropped)
        if identifiers:
            return Identified(identifiers, dropped, None)
        return Identified(identifiers, dropped, next(iter(dropped.values()), "no_identifier"))

    return encode_row


def _drop_partial_group(group: tuple[str, ...], identifiers: dict[str, str], dropped: dict[str, str]) -> None:
    present = [kind for kind in group if kind in identifiers]
    if present and len(present) < len(group):
        for kind in present:
            del identifiers[kind]
            dropped[kind] = "incomplete_address"


def identify(
    row: Mapping[str, object],
    kinds: Sequence[str],
    *,
    platform: str,
    region: str | None = None,
    region_column_value: object = None,
) -> Identified:
    """Encode every kind of one row for ``platform``; see ``Identified`` for what comes back.

    Args:
        row: identifier kind -> raw value; absent keys count as missing.
        kinds: the kinds to use, in priority order (the first dropped reason becomes the row's reason).
        platform: a key of ``PLATFORM_RULES``.
        region: the segment's default country (ISO alpha-2) for phones and address rules.
        region_column_value: the row's own country; used for the phone when it is a known country.

    Raises:
        UnsupportedKindError: a kind is unknown or the platform has no field for it.
        ValueError: unknown platform, bad ``region``, empty or repeated ``kinds``.
    """
    plan = _plan(platform, tuple(kinds))
    encode_row = _row_encoder(plan, _default_region(region), cache_phone=False)
    get = row.get
    return encode_row([get(kind) for kind in plan.kinds], region_column_value)


def identify_many(
    rows: pyarrow.Table | pyarrow.RecordBatch | Iterable[Mapping[str, object]],
    kinds: Sequence[str],
    *,
    platform: str,
    region: str | None,
    region_column: str | None = None,
) -> list[Identified]:
    """``identify`` for a batch: a ``pyarrow.Table`` (or RecordBatch) whose columns are named by kind, or an
    iterable of mappings. ``region_column`` names the column holding each row's country. Phone parses
    are memoised per call. Results are in row order.
    """
    plan = _plan(platform, tuple(kinds))
    encode_row = _row_encoder(plan, _default_region(region), cache_phone=True)
    if hasattr(rows, "column_names") and hasattr(rows, "num_rows"):
        return _identify_table(rows, plan, encode_row, region_column)
    return _identify_mappings(rows, plan, encode_row, region_column)


def _identify_table(
    table: Any, plan: _Plan, encode_row: Callable[[Sequence[object], object], Identified], region_column: str | None
) -> list[Identified]:
    n = table.num_rows
    names = set(table.column_names)
    if region_column is not None and region_column not in names:
        raise ValueError(f"region column {region_column!r} is not in the table")
    columns = [table.column(kind).to_pylist() if kind in names else [None] * n for kind in plan.kinds]
    regions = table.column(region_column).to_pylist() if region_column is not None else [None] * n
    return [encode_row(values, region) for values, region in zip(zip(*columns), regions)]


def _identify_mappings(
    rows: Iterable[Mapping[str, object]],
    plan: _Plan,
    encode_row: Callable[[Sequence[object], object], Identified],
    region_column: str | None,
) -> list[Identified]:
    kinds = plan.kinds
    out: list[Identified] = []
    append = out.append
    for row in rows:
        get = row.get
        append(encode_row([get(kind) for kind in kinds], get(region_column) if region_column else None))
    return out
