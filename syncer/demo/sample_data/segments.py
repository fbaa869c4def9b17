"""The demo's segments: the rule that puts a customer in each, evaluated at a given time.

`mutate` reads them to pick who moves in and out; the tests check them against the segment .sql
files of examples/demo/segments.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb

from .sql import timestamp_literal, utc_now

HIGH_VALUE_THRESHOLD = Decimal("350.00")
"""Lifetime spend (orders neither cancelled nor refunded) that puts a customer in ``high_value``
(about the top 10% of customers)."""

# Membership of each demo segment at time {now} (a TIMESTAMP literal): the same rules as the .sql
# files in examples/demo/segments, which use now() instead.
SEGMENTS: dict[str, str] = {
    "cart_abandoners": """
        SELECT c.customer_id FROM customers c
        JOIN (SELECT customer_id, max(created_at) AS cart_at FROM carts
              WHERE customer_id IS NOT NULL AND checked_out_at IS NULL
                AND created_at >= {now} - INTERVAL '24 hours' AND created_at <= {now}
              GROUP BY customer_id) oc ON oc.customer_id = c.customer_id
        WHERE c.deleted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id
                          AND o.ordered_at >= oc.cart_at AND o.status <> 'cancelled')""",
    "high_value": """
        SELECT c.customer_id FROM customers c
        JOIN (SELECT customer_id, sum(amount) AS ltv FROM orders
              WHERE customer_id IS NOT NULL AND status IN ('completed', 'shipped', 'pending')
              GROUP BY customer_id) v ON v.customer_id = c.customer_id
        WHERE c.deleted_at IS NULL AND v.ltv >= """ + str(HIGH_VALUE_THRESHOLD),
    "churn_risk": """
        SELECT c.customer_id FROM customers c
        JOIN (SELECT customer_id, count(*) AS n, max(ordered_at) AS last_at FROM orders
              WHERE customer_id IS NOT NULL AND status <> 'cancelled'
              GROUP BY customer_id) o ON o.customer_id = c.customer_id
        WHERE c.deleted_at IS NULL AND o.n >= 2 AND o.last_at < {now} - INTERVAL '90 days'""",
    "recent_purchasers": """
        SELECT c.customer_id FROM customers c
        WHERE c.deleted_at IS NULL
          AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id AND o.status <> 'cancelled'
                      AND o.ordered_at >= {now} - INTERVAL '7 days' AND o.ordered_at <= {now})""",
}


def segment_members(con: duckdb.DuckDBPyConnection, name: str, now: datetime | None = None) -> set[int]:
    """Customer ids in demo segment `name` at `now` (default: current UTC time)."""
    sql = SEGMENTS[name].replace("{now}", timestamp_literal(utc_now(now)))
    return {row[0] for row in con.execute(sql).fetchall()}
