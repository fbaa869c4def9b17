"""The warehouse's tables: their DDL, and the SQL that fills the activity tables.

Tables (timestamps are naive UTC, relative to ``now``, activity over the last ~180 days)::

    customers(customer_id PK, first_name, last_name, email, phone, country, city, state, postal_code,
              gender, date_of_birth, ads_consent, email_consent, sms_consent,
              created_at, updated_at, deleted_at)          -- deleted_at: soft delete, NULL = live
    orders(order_id, customer_id, amount, ordered_at, status)   -- customer_id NULL = guest checkout
    page_views(view_id, customer_id, url, viewed_at)            -- customer_id NULL = anonymous
    carts(cart_id, customer_id, value, created_at, checked_out_at)
    conversions(conversion_id, customer_id, type, converted_at) -- ids increase with converted_at

The customers' SELECT, the largest, is in customers.py. Each builder below reads the ids of the
customers being added from the _ids temp table and continues its table's id sequence from
`id_base`, numbering rows in time order.
"""

from __future__ import annotations

from .sql import list_literal

TABLES = ("customers", "orders", "page_views", "carts", "conversions")

DDL = """
CREATE TABLE customers (
    customer_id BIGINT PRIMARY KEY, first_name VARCHAR, last_name VARCHAR, email VARCHAR, phone VARCHAR,
    country VARCHAR, city VARCHAR, state VARCHAR, postal_code VARCHAR, gender VARCHAR, date_of_birth DATE,
    ads_consent BOOLEAN, email_consent BOOLEAN, sms_consent BOOLEAN,
    created_at TIMESTAMP, updated_at TIMESTAMP, deleted_at TIMESTAMP);
CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, amount DECIMAL(10,2), ordered_at TIMESTAMP, status VARCHAR);
CREATE TABLE page_views (view_id BIGINT, customer_id BIGINT, url VARCHAR, viewed_at TIMESTAMP);
CREATE TABLE carts (cart_id BIGINT, customer_id BIGINT, value DECIMAL(10,2), created_at TIMESTAMP, checked_out_at TIMESTAMP);
CREATE TABLE conversions (conversion_id BIGINT, customer_id BIGINT, type VARCHAR, converted_at TIMESTAMP);
"""

# Pages viewed, drawn uniformly: a repeated entry is a more frequent page; {p} becomes a product sku.
URLS = ["/", "/", "/search?q=shoes", "/category/shoes", "/category/jackets", "/category/sale", "/cart",
        "/checkout", "/account", "/blog/summer-lookbook", "/help/returns", "/products/{p}", "/products/{p}",
        "/products/{p}", "/products/{p}?variant=blue"]
UTM = ["google", "facebook", "newsletter", "instagram", "tiktok"]


def orders_sql(lo: int, hi: int, guests: int, id_base: int) -> str:
    """INSERT of the orders of customers lo..hi-1 plus `guests` guest checkouts; ids in time order."""
    return f"""
INSERT INTO orders
WITH c AS (
    SELECT range AS id, _n_orders(range) AS n, _span(range) AS span, _u(range, 6) AS u_last, _u(range, 7) AS u_first,
           _whale(range) AS whale
    FROM _ids
), c2 AS (
    SELECT id, n, whale, span, u_first, span * pow(u_last, 1.5) AS last_ago FROM c WHERE n > 0
), c3 AS (
    SELECT id, n, whale, last_ago, last_ago + (span - last_ago) * u_first AS first_ago FROM c2
), k AS (
    SELECT id, n, whale, last_ago, first_ago, unnest(range(n)) AS k FROM c3
), t AS (
    SELECT id AS customer_id, k, whale,
           CASE WHEN k = 0 THEN last_ago WHEN k = n - 1 THEN first_ago
                ELSE last_ago + (first_ago - last_ago) * _uk(id, k, 70) END AS ago
    FROM k
    UNION ALL
    SELECT NULL, range, false, 180.0 * _uk(range, 0, 79) FROM _ids WHERE range < {lo + guests}
), a AS (
    SELECT customer_id, k, ago, _ago(ago) AS ordered_at,
           CAST(least(9999.99, greatest(3.0, exp(ln(55.0) + 0.75 * sqrt(-2.0 * ln(1.0 - _uk(coalesce(customer_id, -1 - k), k, 71)))
                 * cos(2 * pi() * _uk(coalesce(customer_id, -1 - k), k, 72))) * CASE WHEN whale THEN 3.0 ELSE 1.0 END)) AS DECIMAL(10,2)) AS amount,
           _uk(coalesce(customer_id, -1 - k), k, 73) AS us
    FROM t
)
SELECT {id_base} + row_number() OVER (ORDER BY ordered_at, customer_id NULLS FIRST, k) AS order_id,
       customer_id, amount, ordered_at,
       CASE WHEN us < 0.05 THEN 'cancelled'
            WHEN ago < 2 THEN CASE WHEN us < 0.45 THEN 'pending' ELSE 'shipped' END
            WHEN us < 0.09 THEN 'refunded'
            ELSE 'completed' END AS status
FROM a
"""


def carts_sql(lo: int, hi: int, anonymous: int, order_floor: int, id_base: int) -> str:
    """INSERT of carts: one checked-out cart per order above order_floor, abandoned carts, and a
    ~2.5% share of customers with an open cart created in the last 24 hours."""
    return f"""
INSERT INTO carts
WITH checked AS (
    SELECT customer_id, amount AS value,
           ordered_at - to_seconds(CAST(60 + _u(order_id, 74) * 7200 AS BIGINT)) AS created_at,
           ordered_at AS checked_out_at, order_id AS k
    FROM orders WHERE order_id > {order_floor} AND customer_id IS NOT NULL
), c AS (
    SELECT range AS id, _span(range) AS span, _u(range, 75) AS u_n, _u(range, 76) AS u_recent FROM _ids
), hist AS (
    SELECT id, span, unnest(range(CASE WHEN u_n < 0.55 THEN 0 WHEN u_n < 0.80 THEN 1 WHEN u_n < 0.93 THEN 2 ELSE 3 END)) AS j
    FROM c WHERE span > 1.05
), abandoned AS (
    -- older abandoned carts (more than a day old: they do not make cart abandoners)
    SELECT id AS customer_id, CAST(5.0 + 300.0 * pow(_uk(id, j, 77), 2) AS DECIMAL(10,2)) AS value,
           _ago(1.05 + (span - 1.05) * _uk(id, j, 78)) AS created_at, NULL::TIMESTAMP AS checked_out_at, -1 - j AS k
    FROM hist
    UNION ALL
    SELECT id, CAST(8.0 + 250.0 * pow(_u(id, 79), 2) AS DECIMAL(10,2)),
           _ago(least(span, 0.0005 + _u(id, 80) * 0.99)), NULL, -10
    FROM c WHERE u_recent < 0.025
    UNION ALL
    SELECT NULL, CAST(5.0 + 200.0 * _uk(range, 0, 81) AS DECIMAL(10,2)), _ago(7.0 * _uk(range, 0, 82)), NULL, range
    FROM _ids WHERE range < {lo + anonymous}
), allc AS (SELECT * FROM checked UNION ALL SELECT * FROM abandoned)
SELECT {id_base} + row_number() OVER (ORDER BY created_at, customer_id NULLS FIRST, k) AS cart_id,
       customer_id, value, created_at, checked_out_at
FROM allc
"""


def page_views_sql(lo: int, hi: int, anonymous: int, id_base: int) -> str:
    """INSERT of page views: a skewed number per customer, recent views likelier, plus `anonymous`
    views without a customer; ~8% of urls carry UTM parameters."""
    urls = list_literal(URLS)
    return f"""
INSERT INTO page_views
WITH c AS (
    SELECT range AS id, _span(range) AS span, _u(range, 85) AS u_n, _u(range, 86) AS u_len FROM _ids
), v AS (
    SELECT id, span, unnest(range(CASE WHEN u_n < 0.15 THEN 0 ELSE CAST(least(60, 1 + floor(-ln(1.0 - u_len) * 3.0)) AS INTEGER) END)) AS j
    FROM c
    UNION ALL
    SELECT NULL, 30.0, range FROM _ids WHERE range < {lo + anonymous}
), w AS (
    SELECT id AS customer_id, j, coalesce(id, -1 - j) AS rid,
           _ago(span * pow(_uk(coalesce(id, -1 - j), j, 87), 2)) AS viewed_at
    FROM v
)
SELECT {id_base} + row_number() OVER (ORDER BY viewed_at, customer_id NULLS FIRST, j) AS view_id, customer_id,
       replace({urls}[1 + CAST(_hk(rid, j, 88) % {len(URLS)} AS INTEGER)], '{{p}}', 'sku-' || CAST(100 + _hk(rid, j, 89) % 900 AS VARCHAR))
       || CASE WHEN _uk(rid, j, 90) < 0.08
               THEN '?utm_source=' || {list_literal(UTM)}[1 + CAST(_hk(rid, j, 91) % {len(UTM)} AS INTEGER)] || '&utm_medium=cpc'
               ELSE '' END AS url,
       viewed_at
FROM w
"""


def conversions_sql(lo: int, hi: int, order_floor: int, id_base: int) -> str:
    """INSERT of conversions: purchases (orders of the last 90 days that were not cancelled),
    sign-ups in the last 180 days and a few subscriptions."""
    return f"""
INSERT INTO conversions
WITH conv AS (
    SELECT customer_id, 'purchase' AS type, ordered_at + to_seconds(CAST(1 + _u(order_id, 92) * 20 AS BIGINT)) AS converted_at
    FROM orders
    WHERE order_id > {order_floor} AND customer_id IS NOT NULL AND status <> 'cancelled' AND ordered_at >= _now() - INTERVAL 90 DAY
    UNION ALL
    SELECT customer_id, 'signup', created_at FROM customers
    WHERE customer_id >= {lo} AND customer_id < {hi} AND created_at >= _now() - INTERVAL 180 DAY
    UNION ALL
    SELECT range, 'subscription', _ago(_span(range) * _u(range, 93)) FROM _ids WHERE _u(range, 94) < 0.05
)
SELECT {id_base} + row_number() OVER (ORDER BY converted_at, customer_id, type) AS conversion_id,
       customer_id, type, least(converted_at, _now()) AS converted_at
FROM conv
"""
