"""The temp SQL macros every generator query builds on: a seeded hash as the random source, the
country draw, the clock pinned to `now`, and the draws of sign-up age and activity size.

Macros rather than Python values so that each row's values are computed by DuckDB in bulk, as a
pure function of (row id, salt, seed): no Python loop and no ``random()``.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from .people import COUNTRY_SHARES
from .sql import timestamp_literal


def install_helpers(con: duckdb.DuckDBPyConnection, seed: int, now: datetime) -> None:
    """Temp macros for one generation pass; the seed and `now` are baked in as constants."""
    seed = int(seed) % (2**62)
    country_case, acc = [], 0.0
    for code, share in COUNTRY_SHARES[:-1]:
        acc += share
        country_case.append(f"WHEN u < {acc:.4f} THEN '{code}'")
    macros = f"""
    CREATE OR REPLACE TEMP MACRO _h(id, salt) AS hash(CAST(id AS BIGINT), CAST(salt AS BIGINT), CAST({seed} AS BIGINT));
    CREATE OR REPLACE TEMP MACRO _u(id, salt) AS CAST(_h(id, salt) >> 11 AS DOUBLE) / 9007199254740992.0;
    CREATE OR REPLACE TEMP MACRO _hk(id, k, salt) AS hash(CAST(id AS BIGINT), CAST(k AS BIGINT), CAST(salt AS BIGINT), CAST({seed} AS BIGINT));
    CREATE OR REPLACE TEMP MACRO _uk(id, k, salt) AS CAST(_hk(id, k, salt) >> 11 AS DOUBLE) / 9007199254740992.0;
    CREATE OR REPLACE TEMP MACRO _pick(u) AS CASE {' '.join(country_case)} ELSE '{COUNTRY_SHARES[-1][0]}' END;
    CREATE OR REPLACE TEMP MACRO _country(id) AS _pick(_u(id, 1));
    CREATE OR REPLACE TEMP MACRO _now() AS {timestamp_literal(now)};
    CREATE OR REPLACE TEMP MACRO _ago(days) AS _now() - to_seconds(CAST(days * 86400.0 AS BIGINT));
    -- days since sign-up: three years, skewed to recent sign-ups
    CREATE OR REPLACE TEMP MACRO _created_days(id) AS 1095.0 * pow(_u(id, 2), 1.5) + 0.02;
    -- days of possible activity: since sign-up, at most 180
    CREATE OR REPLACE TEMP MACRO _span(id) AS least(_created_days(id), 180.0);
    CREATE OR REPLACE TEMP MACRO _whale(id) AS _u(id, 4) < 0.06;
    CREATE OR REPLACE TEMP MACRO _n_orders(id) AS CAST(CASE
        WHEN _u(id, 3) >= 0.65 THEN 0
        WHEN _whale(id) THEN 5 + floor(_u(id, 5) * 26)
        ELSE least(30, 1 + floor(-ln(1.0 - _u(id, 5)) * 1.8)) END AS INTEGER);
    CREATE OR REPLACE TEMP MACRO _digits(x, n) AS lpad(CAST(x % CAST(pow(10, n) AS UBIGINT) AS VARCHAR), n, '0');
    CREATE OR REPLACE TEMP MACRO _mess_name(x, u) AS CASE
        WHEN u < 0.03 THEN upper(x) WHEN u < 0.05 THEN lower(x)
        WHEN u < 0.065 THEN ' ' || x WHEN u < 0.08 THEN x || '  ' ELSE x END;
    CREATE OR REPLACE TEMP MACRO _consent(u, p_true, p_false) AS CASE
        WHEN u < p_true THEN true WHEN u < p_true + p_false THEN false ELSE NULL END;
    """
    con.execute(macros)

