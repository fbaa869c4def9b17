-- Cart abandoners: people who put something in a cart in the last 24 hours, did not check out,
-- and have not ordered since. Audience for "you left something behind" ads, emails and SMS;
-- a purchase must remove them fast (the conversion fast path), not at the next refresh.
-- One row per customer; identifiers are raw (the engine normalises and hashes them).
-- Timestamps in the warehouse are UTC without time zone, hence the UTC "now".
WITH params AS (
    SELECT CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) AS now_utc
),
open_carts AS (
    SELECT ca.customer_id, MAX(ca.created_at) AS last_cart_at
    FROM carts ca
    CROSS JOIN params p
    WHERE ca.customer_id IS NOT NULL
      AND ca.checked_out_at IS NULL
      AND ca.created_at >= p.now_utc - INTERVAL '24 hours'
      AND ca.created_at <= p.now_utc
    GROUP BY ca.customer_id
)
SELECT
    c.customer_id, c.email, c.phone, c.first_name, c.last_name,
    c.country, c.postal_code, c.city, c.state,
    c.ads_consent, c.email_consent, c.sms_consent
FROM customers c
JOIN open_carts oc ON oc.customer_id = c.customer_id
WHERE c.customer_id IS NOT NULL
  AND c.deleted_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM orders o
      WHERE o.customer_id = c.customer_id
        AND o.ordered_at >= oc.last_cart_at
        AND o.status <> 'cancelled'
  )
