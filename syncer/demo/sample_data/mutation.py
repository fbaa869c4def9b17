"""Changing a sample warehouse as time passes: `mutate` (customers join, leave and move between the
demo's segments) and `add_conversion` (one conversion, as the shop records it)."""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path

import duckdb

from .generation import column_max, connect, populate
from .macros import install_helpers
from .segments import HIGH_VALUE_THRESHOLD, SEGMENTS, segment_members
from .sql import utc_now
from .tables import TABLES

_THRESHOLD = str(HIGH_VALUE_THRESHOLD)
_LIVE = "SELECT customer_id FROM customers WHERE deleted_at IS NULL"
# Lifetime value and biggest order per buyer, counting the orders high_value counts.
_LTV = ("SELECT customer_id, sum(amount) AS ltv, max(amount) AS top FROM orders WHERE customer_id IS NOT NULL "
        "AND status IN ('completed', 'shipped', 'pending') GROUP BY customer_id")


def mutate(path: str | Path, pct: float, *, seed: int = 11, now: datetime | None = None) -> dict[str, int]:
    """Change the warehouse so that each demo segment gains and loses about `pct` percent of members.

    Deterministic for the same file, pct, seed and `now`. Successive calls on the same file pick
    different customers (the choice also depends on the current highest customer id).

    What it does, with k = pct% of live customers:
      * inserts k new customers (same generator, so with orders, carts and views in the usual shares:
        some are high value, some abandon carts, some are lapsed buyers imported with history);
      * deletes k/4 customers outright and soft-deletes k/4 (deleted_at = now);
      * per segment, moves about 0.6 * pct % of its members out: abandoners check out (order now),
        lapsed buyers order again, recent orders are cancelled, the big order of a high-value
        member is refunded; and about 0.25 * pct % in: new open carts, big new orders;
      * revokes a consent flag of k/4 customers and gives k/2 customers a new email address.

    Returns:
        Counts of what it did, by action.
    """
    now = utc_now(now)
    con = connect(path)
    try:
        con.execute("BEGIN")
        live, max_id = con.execute(
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL), coalesce(max(customer_id), 0) FROM customers").fetchone()
        eff = (int(seed) * 1_000_003 + int(max_id) * 7919 + int(live)) % (2**31)
        k = int(round(live * pct / 100.0))
        sizes = {name: len(segment_members(con, name, now)) for name in SEGMENTS}
        install_helpers(con, eff, now)
        done = _mutate_segments(con, pct, sizes)
        done.update(_mutate_customers(con, k, max_id))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return done


def _pick(con: duckdb.DuckDBPyConnection, action: str, candidates_sql: str, limit: int) -> int:
    """Record up to `limit` candidates (not yet picked) in _picked under `action`.

    Each action orders candidates by its own hash, so its picks are independent of the others'."""
    con.execute(f"""
        INSERT INTO _picked
        SELECT customer_id, '{action}' FROM ({candidates_sql}) cand
        WHERE customer_id NOT IN (SELECT customer_id FROM _picked)
        ORDER BY _hk(customer_id, {zlib.crc32(action.encode())}, 200), customer_id LIMIT {int(limit)}""")
    return int(con.execute(f"SELECT count(*) FROM _picked WHERE action = '{action}'").fetchone()[0])


def _new_orders(con: duckdb.DuckDBPyConnection, select_sql: str) -> int:
    """Insert orders (customer_id, amount, ordered_at, status) with the next ids, and a purchase
    conversion for each."""
    floor = column_max(con, "orders", "order_id")
    con.execute(f"""
        INSERT INTO orders SELECT {floor} + row_number() OVER (ORDER BY ordered_at, customer_id), customer_id,
                                  CAST(amount AS DECIMAL(10,2)), ordered_at, status
        FROM ({select_sql})""")
    conv_floor = column_max(con, "conversions", "conversion_id")
    con.execute(f"""
        INSERT INTO conversions SELECT {conv_floor} + row_number() OVER (ORDER BY ordered_at, customer_id),
                                       customer_id, 'purchase', least(_now(), ordered_at + INTERVAL 5 SECOND)
        FROM orders WHERE order_id > {floor}""")
    return column_max(con, "orders", "order_id") - floor


def _mutate_segments(con: duckdb.DuckDBPyConnection, pct: float, sizes: dict[str, int]) -> dict[str, int]:
    """Targeted moves out of each segment (0.6 * pct % of its size) and into it (0.25 * pct %).

    With the deletions (0.5 * pct %) and the new customers (pct %, in the usual shares) that
    _mutate_customers adds, each segment gains and loses roughly pct % of its members."""
    done = _pick_movers(con, pct, sizes)
    _check_out_carts(con)
    done["orders_inserted"] = _new_orders(con, _MOVER_ORDERS)  # each with its purchase conversion
    _cancel_and_refund(con)
    _open_carts(con)
    return done


def _pick_movers(con: duckdb.DuckDBPyConnection, pct: float, sizes: dict[str, int]) -> dict[str, int]:
    """Pick, per segment, who moves out and who moves in (recorded in _picked): the number picked
    for each move, by the name `mutate` reports it under."""
    con.execute("CREATE OR REPLACE TEMP TABLE _picked(customer_id BIGINT, action VARCHAR)")
    seg = {name: SEGMENTS[name].replace("{now}", "_now()") for name in SEGMENTS}

    def share(name: str, factor: float = 0.6) -> int:
        return max(1, int(round(sizes[name] * pct * factor / 100.0))) if pct > 0 and sizes[name] else 0

    thr = _THRESHOLD
    # Picked in this order: a customer picked by an earlier action is not picked again.
    return {
        "carts_checked_out": _pick(con, "checkout", seg["cart_abandoners"], share("cart_abandoners")),
        "lapsed_reordered": _pick(con, "reorder", seg["churn_risk"], share("churn_risk")),
        "recent_orders_cancelled": _pick(con, "cancel", seg["recent_purchasers"], share("recent_purchasers")),
        "high_value_refunded": _pick(con, "refund", f"SELECT customer_id FROM ({_LTV}) WHERE ltv >= {thr} AND ltv - top < {thr}"
                                     f" AND customer_id IN ({seg['high_value']})", share("high_value")),
        "carts_opened": _pick(con, "open_cart", f"{_LIVE} EXCEPT {seg['cart_abandoners']}", share("cart_abandoners", 0.25)),
        "big_orders": _pick(con, "big_order", f"SELECT customer_id FROM ({_LTV}) WHERE ltv < {thr} AND ltv >= {thr} * 0.5"
                            f" AND customer_id IN ({_LIVE})", share("high_value", 0.25)),
    }


def _check_out_carts(con: duckdb.DuckDBPyConnection) -> None:
    """Check out the last day's open carts of those picked to check out, in the last ten minutes
    (after each cart's creation); _MOVER_ORDERS then places the orders."""
    con.execute("""
        UPDATE carts SET checked_out_at = least(_now(), greatest(created_at + INTERVAL 1 MINUTE,
                                                 _now() - to_seconds(CAST(_u(cart_id, 201) * 600 AS BIGINT))))
        WHERE checked_out_at IS NULL AND created_at >= _now() - INTERVAL 24 HOUR
          AND customer_id IN (SELECT customer_id FROM _picked WHERE action = 'checkout')""")


# The orders of the movers: checkouts (the order placed as the cart is checked out), lapsed
# buyers' reorders, and big orders that lift a buyer over the high-value threshold.
_MOVER_ORDERS = """
        SELECT customer_id, max(value) AS amount, max(checked_out_at) AS ordered_at, 'pending' AS status FROM carts
        WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'checkout') AND checked_out_at >= _now() - INTERVAL 11 MINUTE
        GROUP BY customer_id
        UNION ALL
        SELECT customer_id, 20 + 150 * _u(customer_id, 202), _now() - to_seconds(CAST(_u(customer_id, 203) * 3600 AS BIGINT)), 'pending'
        FROM _picked WHERE action = 'reorder'
        UNION ALL
        SELECT v.customer_id, """ + _THRESHOLD + """ - v.ltv + 40 + 200 * _u(v.customer_id, 204),
               _now() - to_seconds(CAST(_u(v.customer_id, 205) * 3600 AS BIGINT)), 'pending'
        FROM (""" + _LTV + """) v JOIN _picked p ON p.customer_id = v.customer_id AND p.action = 'big_order'"""


def _cancel_and_refund(con: duckdb.DuckDBPyConnection) -> None:
    """Cancel the last week's orders of those picked to cancel, and refund the biggest order of
    each high-value member picked to refund (picked because that order alone keeps them in)."""
    con.execute("""
        UPDATE orders SET status = 'cancelled'
        WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'cancel')
          AND ordered_at >= _now() - INTERVAL 7 DAY AND status <> 'cancelled'""")
    con.execute("""
        UPDATE orders SET status = 'refunded'
        WHERE order_id IN (SELECT arg_max(order_id, amount) FROM orders
                           WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'refund')
                             AND status IN ('completed', 'shipped', 'pending') GROUP BY customer_id)""")


def _open_carts(con: duckdb.DuckDBPyConnection) -> None:
    """An open cart, created in the last two hours, for each customer picked to open one."""
    cart_floor = column_max(con, "carts", "cart_id")
    con.execute(f"""
        INSERT INTO carts
        SELECT {cart_floor} + row_number() OVER (ORDER BY customer_id), customer_id,
               CAST(10 + 240 * _u(customer_id, 206) AS DECIMAL(10,2)),
               _now() - to_seconds(CAST(30 + _u(customer_id, 207) * 7200 AS BIGINT)), NULL
        FROM _picked WHERE action = 'open_cart'""")


def _mutate_customers(con: duckdb.DuckDBPyConnection, k: int, max_id: int) -> dict[str, int]:
    """New customers, deletions, consent revocations and email changes."""
    hard = _pick(con, "delete", _LIVE, k // 4)
    soft = _pick(con, "soft_delete", _LIVE, k // 2 - k // 4)
    revoked = _pick(con, "revoke", _LIVE, k // 4)
    changed = _pick(con, "email", "SELECT customer_id FROM customers WHERE deleted_at IS NULL AND email LIKE '%_@_%._%'", k // 2)
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'delete')")
    con.execute("""UPDATE customers SET deleted_at = _now(), updated_at = _now()
                   WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'soft_delete')""")
    con.execute("""
        UPDATE customers SET
            ads_consent = CASE WHEN _h(customer_id, 210) % 4 < 2 THEN false ELSE ads_consent END,
            email_consent = CASE WHEN _h(customer_id, 210) % 4 = 2 THEN false ELSE email_consent END,
            sms_consent = CASE WHEN _h(customer_id, 210) % 4 = 3 THEN false ELSE sms_consent END,
            updated_at = _now()
        WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'revoke')""")
    # New address: the old local part + 'x' + a round marker keeps valid emails unique.
    con.execute(f"""
        UPDATE customers SET
            email = split_part(lower(trim(email)), '@', 1) || 'x{max_id}@' ||
                    ['gmail.com', 'outlook.com', 'icloud.com', 'proton.me'][1 + CAST(_h(customer_id, 211) % 4 AS INTEGER)],
            updated_at = _now()
        WHERE customer_id IN (SELECT customer_id FROM _picked WHERE action = 'email')""")
    if k > 0:
        populate(con, max_id + 1, max_id + k + 1, guests=0, anonymous=0)
        # Imported just now: history from the old system, but the row itself is new.
        con.execute(f"UPDATE customers SET updated_at = _now() WHERE customer_id > {int(max_id)}")
    return {"customers_inserted": k, "customers_deleted": hard, "customers_soft_deleted": soft,
            "consents_revoked": revoked, "emails_changed": changed}


def add_conversion(path: str | Path, customer_id: int, type: str = "purchase", at: datetime | None = None,
                   *, with_order: bool = False) -> int:
    """Insert one conversion and return its id (the next after the highest).

    Args:
        with_order: for a purchase, also record the order (amount = the open cart's value, else
            49.90) and check out the customer's open carts, as the shop would, so that the next
            segment refresh agrees with the fast path.
    """
    if type not in ("purchase", "signup", "subscription"):
        raise ValueError("type must be 'purchase', 'signup' or 'subscription'")
    at = utc_now(at)
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")
        conversion_id = column_max(con, "conversions", "conversion_id") + 1
        con.execute("INSERT INTO conversions VALUES (?, ?, ?, ?)", [conversion_id, customer_id, type, at])
        if with_order and type == "purchase":
            amount = con.execute("""SELECT coalesce(max(value), 49.90) FROM carts
                                    WHERE customer_id = ? AND checked_out_at IS NULL AND created_at <= ?""",
                                 [customer_id, at]).fetchone()[0]
            con.execute("UPDATE carts SET checked_out_at = ? WHERE customer_id = ? AND checked_out_at IS NULL AND created_at <= ?",
                        [at, customer_id, at])
            con.execute("INSERT INTO orders VALUES (?, ?, ?, ?, 'pending')",
                        [column_max(con, "orders", "order_id") + 1, customer_id, amount, at])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return conversion_id
