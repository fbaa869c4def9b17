"""Countries and US states by code or name: the ISO 3166-1 table, the aliases people write, and US states.

``resolve_country`` (re-exported by ``syncer.identity.rows``) turns an alpha-2 or alpha-3 code, an English
name or a common alias ("USA", "UK", "England", "Deutschland") into the upper-case alpha-2 code, or
None. ``us_state`` does the same for US state codes and names. The normalisers use both to check the
``country`` and ``state`` kinds and to decide which rows get US-only postal and state rules; the row
encoder uses ``resolve_country`` for each row's region column.

The ISO table is embedded, not read from a package, so validation needs nothing beyond the standard
library. Names are compared folded (accents dropped, lowercase a-z only, a leading "the" ignored).
"""

from __future__ import annotations

import unicodedata

__all__ = ["resolve_country", "us_state"]


def _fold(text: str) -> str:
    """Lookup key for names of countries and states: accents dropped, lowercase a-z only."""
    text = unicodedata.normalize("NFKD", text).lower()
    if text.startswith("the "):
        text = text[4:]
    return "".join(ch for ch in text if "a" <= ch <= "z")


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


def us_state(text: str) -> str | None:
    """Two-letter US state (or territory) code for a code or name, any case; None if it is not one."""
    return _US_STATE_LOOKUP.get(_fold(text))
