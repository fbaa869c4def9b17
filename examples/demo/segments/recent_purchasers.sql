-- Recent purchasers: customers with an order (not cancelled) in the last 7 days. Used as a
-- suppression audience (stop acquisition and "come back" ads) and for post-purchase
-- cross-sell. One row per customer; identifiers are raw (the engine normalises and hashes them).
-- Timestamps in the warehouse are UTC without time zone, hence the UTC "now".
WITH params AS (
    SELECT CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) AS now_utc
)
SELECT
    c.customer_id, c.email, c.phone, c.first_name, c.last_name,
    c.country, c.postal_code, c.city, c.state,
    c.ads_consent, c.email_consent, c.sms_consent
FROM customers c
CROSS JOIN params p
WHERE c.customer_id IS NOT NULL
  AND c.deleted_at IS NULL
  AND EXISTS (
      SELECT 1 FROM orders o
      WHERE o.customer_id = c.customer_id
        AND o.status <> 'cancelled'
        AND o.ordered_at >= p.now_utc - INTERVAL '7 days'
        AND o.ordered_at <= p.now_utc
  )
