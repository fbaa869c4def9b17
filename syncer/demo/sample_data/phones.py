"""Phone numbers: the per-country formats and the SQL that writes each customer's number.

A valid number is built once per customer (`core`, from the digits of one hash) and then written in
the style a real CRM collects: national, international, digits only, 00-prefixed or a local
variant; a few are invalid or missing, so that the engine's phone normalisation has work to do.
"""

from __future__ import annotations

from .people import NAMES, by_country
from .sql import list_literal

INVALID_PHONES = ["12345", "555-CALL-NOW", "", "000-000-0000", "1234567890", "n/a", "123", "+1 (000) 000-0000"]
MOBILE_PREFIXES = {  # national mobile prefixes used for valid numbers
    "GB": ["7400", "7480", "7520", "7588", "7723", "7812", "7890", "7932", "7958", "7985", "7415", "7766"],
    "DE": ["151", "152", "157", "160", "170", "171", "172", "173", "175", "176", "177", "178", "179"],
}

# `core` is the number written in the country's grouping (built from one 19-digit
# string d, the digits of one hash); the three expressions below write it in national style
# (`nat`), international style (`intl`) and a local variant (`alt`: slashes, dots, "(0)").
# Plain VARCHAR columns on purpose: a CASE returning structs was several times slower.
PHONE_CORE = """
CASE ctry
 WHEN 'GB' THEN CASE WHEN mobile THEN '0' || mob || ' ' || substr(d, 1, 6)
     WHEN area = '20' THEN '020 ' || ['3', '7', '8'][1 + CAST(substr(d, 9, 1) AS INTEGER) % 3] || substr(d, 1, 3) || ' ' || substr(d, 4, 4)
     ELSE '0' || area || ' ' || (2 + CAST(substr(d, 9, 1) AS INTEGER) % 6) || substr(d, 1, 2) || ' ' || substr(d, 3, 4) END
 WHEN 'DE' THEN CASE WHEN mobile THEN '0' || mob || ' ' || substr(d, 1, CASE WHEN mob LIKE '15%' OR pu < 0.5 THEN 8 ELSE 7 END)
     ELSE '0' || area || ' ' || (1 + CAST(substr(d, 9, 1) AS INTEGER) % 9) || substr(d, 1, 6) END
 WHEN 'FR' THEN CASE WHEN mobile AND pu < 0.7 THEN '6 ' || substr('01245678', 1 + CAST(substr(d, 9, 1) AS INTEGER) % 8, 1) || substr(d, 2, 1)
     WHEN mobile THEN '7 ' || (3 + CAST(substr(d, 9, 1) AS INTEGER) % 7) || substr(d, 2, 1)
     ELSE area || ' ' || (1 + CAST(substr(d, 9, 1) AS INTEGER) % 8) || substr(d, 2, 1) END
     || ' ' || substr(d, 3, 2) || ' ' || substr(d, 5, 2) || ' ' || substr(d, 7, 2)
 WHEN 'BR' THEN CASE WHEN mobile THEN '9' || (6 + CAST(substr(d, 9, 1) AS INTEGER) % 4)
     ELSE CAST(2 + CAST(substr(d, 9, 1) AS INTEGER) % 4 AS VARCHAR) END || substr(d, 1, 3) || '-' || substr(d, 4, 4)
 WHEN 'IN' THEN CASE WHEN mobile THEN (7 + CAST(substr(d, 9, 1) AS INTEGER) % 3) || substr(d, 1, 4) || ' ' || substr(d, 5, 5)
     ELSE area || ' ' || (2 + CAST(substr(d, 9, 1) AS INTEGER) % 5) || substr(d, 1, 3) || ' ' || substr(d, 4, 4) END
 WHEN 'AU' THEN CASE WHEN mobile THEN '4' || substr('01236', 1 + CAST(substr(d, 9, 1) AS INTEGER) % 5, 1) || substr(d, 2, 1)
                                     || ' ' || substr(d, 3, 3) || ' ' || substr(d, 6, 3)
     ELSE area || ' ' || (8 + CAST(substr(d, 9, 1) AS INTEGER) % 2) || substr(d, 1, 3) || ' ' || substr(d, 4, 4) END
 ELSE area || ' ' || exch || ' ' || substr(d, 4, 4)
END
"""

PHONE_NAT = """
CASE ctry
 WHEN 'GB' THEN core WHEN 'DE' THEN core WHEN 'FR' THEN '0' || core
 WHEN 'BR' THEN '(' || area || ') ' || core
 WHEN 'IN' THEN CASE WHEN mobile THEN core ELSE '0' || core END
 WHEN 'AU' THEN CASE WHEN mobile THEN '0' || core ELSE '(0' || area || ') ' || substr(core, length(area) + 2) END
 ELSE '(' || area || ') ' || exch || '-' || substr(d, 4, 4)
END"""

PHONE_INTL = """
CASE ctry
 WHEN 'GB' THEN '+44 ' || substr(core, 2) WHEN 'DE' THEN '+49 ' || substr(core, 2) WHEN 'FR' THEN '+33 ' || core
 WHEN 'BR' THEN '+55 ' || area || ' ' || core WHEN 'IN' THEN '+91 ' || core WHEN 'AU' THEN '+61 ' || core
 ELSE '+1 ' || area || '-' || exch || '-' || substr(d, 4, 4)
END"""

PHONE_ALT = """
CASE ctry
 WHEN 'GB' THEN '+44 (0)' || substr(core, 2) WHEN 'DE' THEN replace(core, ' ', '/') WHEN 'FR' THEN '0' || replace(core, ' ', '.')
 WHEN 'BR' THEN area || ' ' || core WHEN 'IN' THEN '+91-' || replace(core, ' ', '') WHEN 'AU' THEN '0' || core
 ELSE CASE WHEN pu < 0.5 THEN area || '.' || exch || '.' || substr(d, 4, 4) ELSE '1-' || area || '-' || exch || '-' || substr(d, 4, 4) END
END"""


def digits_only(x: str, keep_plus: bool = False) -> str:
    """SQL removing the separators our phone formats use (cheaper than a regex)."""
    for ch in (" ", "-", "(", ")", ".", "/") + (() if keep_plus else ("+",)):
        x = f"replace({x}, '{ch}', '')"
    return x


def phone_parts_sql() -> str:
    """Columns of the customers' `nm` step that the formats above read: the mobile prefix `mob`,
    the 19 digits `d`, the draws `pu` (validity, variant) and `pf` (style), `mobile` and the NANP
    exchange `exch` (never N11, which NANP reserves)."""
    return f"""\
        {by_country({c: MOBILE_PREFIXES.get(c, [""]) for c in NAMES}, "_h(id, 44)")} AS mob,
        _digits(_h(id, 40), 19) AS d, _u(id, 41) AS pu, _u(id, 42) AS pf,
        ctry NOT IN ('US', 'CA') AND _u(id, 43) < 0.6 AS mobile,
        CAST(200 + CAST(_h(id, 45) % 800 AS INTEGER) + CASE WHEN _h(id, 45) % 100 = 11 THEN 1 ELSE 0 END AS VARCHAR) AS exch
"""


def phone_column_sql() -> str:
    """The customers' `phone` column: missing, invalid, or `core` written in one of the styles."""
    invalid = list_literal(INVALID_PHONES)
    return f"""\
    CASE WHEN pu < 0.06 THEN NULL
         WHEN pu < 0.09 THEN {invalid}[1 + CAST(_h(id, 46) % {len(INVALID_PHONES)} AS INTEGER)]
         WHEN ctry = 'US' THEN CASE
              WHEN pf < 0.30 THEN nat
              WHEN pf < 0.52 THEN area || '-' || exch || '-' || substr(d, 4, 4)
              WHEN pf < 0.62 THEN area || exch || substr(d, 4, 4)
              WHEN pf < 0.77 THEN intl
              WHEN pf < 0.87 THEN '+1' || area || exch || substr(d, 4, 4)
              ELSE alt END
         ELSE CASE
              WHEN pf < 0.35 THEN nat
              WHEN pf < 0.50 THEN {digits_only('nat')}
              WHEN pf < 0.75 THEN intl
              WHEN pf < 0.87 THEN {digits_only('intl', keep_plus=True)}
              WHEN pf < 0.93 AND ctry IN ('GB', 'DE', 'FR', 'IN') THEN '00' || substr(intl, 2)  -- their IDD is 00
              WHEN pf < 0.93 THEN nat
              ELSE alt END
    END AS phone,
"""
