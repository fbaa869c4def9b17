"""The customers table: the SELECT that generates its rows, one CTE per step.

The mess is deliberate (it is what the engine's normalisation must survive): emails with upper
case, stray spaces and a few invalid values; phones in national and international formats of eight
countries, some invalid; names with accents, odd case and spaces; country codes in lower case,
blank or "UK"; ZIP+4 and ZIPs that lost their leading zero; consent flags that are NULL (unknown).
"""

from __future__ import annotations

from .people import DOMAINS, GEO, NAMES, by_country, email_part, padded
from .phones import PHONE_ALT, PHONE_CORE, PHONE_INTL, PHONE_NAT, phone_column_sql, phone_parts_sql


def customers_sql(lo: int, hi: int) -> str:
    """SELECT producing customers lo..hi-1 (column order of the customers table).

    The ids come from the _ids temp table that the caller fills with lo..hi-1."""
    return ("\n" + _DRAWS + _pools_step() + _formats_step()
            + _NAME_COLUMNS + _EMAIL_COLUMN + phone_column_sql() + _PLACE_COLUMNS + _PROFILE_COLUMNS)


# `b` and `g`: the draws every later step reads (country, city, gender, sign-up age).
_DRAWS = """\
WITH b AS (
    SELECT range AS id, _country(range) AS ctry, CAST(_h(range, 20) % 5 AS INTEGER) AS city_idx,
           _u(range, 10) AS ug, _created_days(range) AS created_days, _u(range, 12) AS u_upd
    FROM _ids
), g AS (
    SELECT b.*, CASE WHEN ug < 0.46 THEN 'M' WHEN ug < 0.92 THEN 'F' END AS gender,
           ug < 0.46 OR (ug >= 0.92 AND _h(id, 11) % 2 = 0) AS male
    FROM b
"""


def _pools_step() -> str:
    """`nm`: the values picked from the pools (place, name, email domain) and the phone parts."""
    return "), nm AS (\n    SELECT g.*,\n" + _place_pools() + _name_pools() + phone_parts_sql() + "    FROM g\n"


def _place_pools() -> str:
    """City, its ASCII spelling, state, postal range, landline area code and GB/CA outward code."""
    return f"""\
        {by_country({c: [x[0] for x in v] for c, v in GEO.items()}, "city_idx")} AS city,
        {by_country({c: [x[1] or x[0] for x in v] for c, v in GEO.items()}, "city_idx")} AS city_ascii,
        {by_country({c: [x[2] for x in v] for c, v in GEO.items()}, "city_idx")} AS state,
        {by_country({c: [x[4] for x in v] for c, v in GEO.items()}, "city_idx")} AS postal_lo,
        {by_country({c: [max(x[5], 1) for x in v] for c, v in GEO.items()}, "city_idx")} AS postal_n,
        {by_country({c: padded([x[3] for x in v], 3) for c, v in GEO.items()}, "city_idx * 3 + _h(id, 21) % 3")} AS area,
        {by_country({c: padded([x[6] or [""] for x in v], 7) for c, v in GEO.items()}, "city_idx * 7 + _h(id, 55) % 7")} AS outward,
"""


def _name_pools() -> str:
    """First and last names as written and as they appear in an email address, and the domain."""
    return f"""\
        CASE WHEN male THEN {by_country({c: v[0] for c, v in NAMES.items()}, "_h(id, 13)")}
             ELSE {by_country({c: v[1] for c, v in NAMES.items()}, "_h(id, 13)")} END AS first_clean,
        CASE WHEN male THEN {by_country({c: [email_part(x) for x in v[0]] for c, v in NAMES.items()}, "_h(id, 13)")}
             ELSE {by_country({c: [email_part(x) for x in v[1]] for c, v in NAMES.items()}, "_h(id, 13)")} END AS fe,
        {by_country({c: v[2] for c, v in NAMES.items()}, "_h(id, 14)")} AS last_clean,
        {by_country({c: [email_part(x) for x in v[2]] for c, v in NAMES.items()}, "_h(id, 14)")} AS le,
        {by_country(DOMAINS, "_h(id, 15)")} AS domain,
"""


def _formats_step() -> str:
    """`e` and `l`: the phone number and postcode, then the phone styles and the email's local part."""
    return f"""\
), e AS (
    SELECT nm.*,
        {PHONE_CORE} AS core,
        CASE WHEN ctry IN ('GB', 'CA') THEN outward || ' ' ||
             CASE WHEN ctry = 'GB' THEN CAST(_h(id, 56) % 10 AS VARCHAR) || substr('ABDEFGHJLNPQRSTUWXYZ', 1 + CAST(_h(id, 57) % 20 AS INTEGER), 1)
                                        || substr('ABDEFGHJLNPQRSTUWXYZ', 1 + CAST(_h(id, 58) % 20 AS INTEGER), 1)
                  ELSE CAST(_h(id, 56) % 10 AS VARCHAR) || substr('ABCEGHJKLMNPRSTVWXYZ', 1 + CAST(_h(id, 57) % 20 AS INTEGER), 1)
                                        || CAST(_h(id, 58) % 10 AS VARCHAR) END END AS postcode
    FROM nm
), l AS (
    SELECT e.*, {PHONE_NAT} AS nat, {PHONE_INTL} AS intl, {PHONE_ALT} AS alt,
        CASE _h(id, 16) % 5 WHEN 0 THEN fe || '.' || le WHEN 1 THEN fe || le WHEN 2 THEN substr(fe, 1, 1) || le
             WHEN 3 THEN fe || '_' ELSE le || '.' || fe END || CAST(id AS VARCHAR) AS local_part
    FROM e
)
"""


# The columns, in the customers table's order, each with its share of mess.
_NAME_COLUMNS = """\
SELECT
    id AS customer_id,
    CASE WHEN _u(id, 17) < 0.005 THEN NULL ELSE _mess_name(first_clean, _u(id, 18)) END AS first_name,
    CASE WHEN _u(id, 19) < 0.01 THEN NULL ELSE _mess_name(last_clean, _u(id, 22)) END AS last_name,
"""

_EMAIL_COLUMN = """\
    CASE WHEN _u(id, 30) < 0.03 THEN NULL
         WHEN _u(id, 30) < 0.045 THEN ['n/a', '', local_part || domain, local_part || '@', 'none',
                                        local_part || '@' || split_part(domain, '.', 1), local_part || '@' || replace(domain, '.', ',')][1 + CAST(_h(id, 31) % 7 AS INTEGER)]
         WHEN _u(id, 30) < 0.07 THEN upper(substr(local_part, 1, 1)) || substr(local_part, 2) || '@' || upper(substr(domain, 1, 1)) || substr(domain, 2)
         WHEN _u(id, 30) < 0.085 THEN upper(local_part || '@' || domain)
         WHEN _u(id, 30) < 0.10 THEN ' ' || local_part || '@' || domain
         WHEN _u(id, 30) < 0.12 THEN local_part || '@' || domain || ' '
         ELSE local_part || '@' || domain END AS email,
"""

_PLACE_COLUMNS = """\
    CASE WHEN _u(id, 50) < 0.04 THEN lower(ctry)
         WHEN _u(id, 50) < 0.055 THEN ''
         WHEN _u(id, 50) < 0.06 THEN NULL
         WHEN _u(id, 50) < 0.07 THEN ' ' || ctry
         WHEN ctry = 'GB' AND _u(id, 50) < 0.16 THEN 'UK'
         ELSE ctry END AS country,
    CASE WHEN _u(id, 51) < 0.02 THEN NULL
         WHEN _u(id, 51) < 0.06 THEN upper(city)
         WHEN _u(id, 51) < 0.09 THEN lower(city)
         WHEN _u(id, 51) < 0.12 THEN city || ' '
         WHEN _u(id, 51) < 0.25 THEN city_ascii
         ELSE city END AS city,
    CASE WHEN _u(id, 52) < 0.03 THEN NULL WHEN _u(id, 52) < 0.07 THEN lower(state) ELSE state END AS state,
    CASE WHEN _u(id, 53) < 0.02 THEN NULL
         WHEN ctry = 'US' THEN CASE
              WHEN postal_lo < 10000 AND _u(id, 54) < 0.3 THEN CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR)
              WHEN _u(id, 54) < 0.12 THEN lpad(CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR), 5, '0') || '-' || _digits(_h(id, 56), 4)
              ELSE lpad(CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR), 5, '0') END
         WHEN ctry IN ('GB', 'CA') THEN CASE WHEN _u(id, 54) < 0.08 THEN lower(replace(postcode, ' ', ''))
                                             WHEN _u(id, 54) < 0.12 THEN replace(postcode, ' ', '') ELSE postcode END
         WHEN ctry = 'BR' THEN lpad(CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR), 5, '0')
                               || CASE WHEN _u(id, 54) < 0.2 THEN '' ELSE '-' END || _digits(_h(id, 56), 3)
         WHEN ctry IN ('DE', 'FR') THEN lpad(CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR), 5, '0')
         ELSE CAST(postal_lo + _h(id, 55) % postal_n AS VARCHAR) END AS postal_code,
"""

_PROFILE_COLUMNS = """\
    gender,
    CASE WHEN _u(id, 60) < 0.15 THEN NULL
         WHEN _u(id, 60) < 0.153 THEN DATE '1900-01-01'
         ELSE CAST(_now() AS DATE) - CAST(18 * 365 + floor(_u(id, 61) * 62 * 365) AS INTEGER) END AS date_of_birth,
    CASE WHEN ctry IN ('GB', 'DE', 'FR') THEN _consent(_u(id, 62), 0.55, 0.20) ELSE _consent(_u(id, 62), 0.72, 0.10) END AS ads_consent,
    _consent(_u(id, 63), 0.60, 0.25) AS email_consent,
    _consent(_u(id, 64), 0.35, 0.35) AS sms_consent,
    _ago(created_days) AS created_at,
    _ago(created_days * (1.0 - u_upd)) AS updated_at,
    CASE WHEN _u(id, 65) < 0.005 THEN _ago(created_days * (1.0 - u_upd)) END AS deleted_at
FROM l
"""
