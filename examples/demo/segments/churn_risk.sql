-- Churn risk: repeat buyers (two or more orders that were not cancelled) whose last order is
-- more than 90 days old. Audience for win-back campaigns; they leave it when they order again.
-- One row per customer; identifiers are raw (the engine normalises and hashes them).
-- Timestamps in the warehouse are UTC without time zone, hence the UTC "now".
WITH params AS (
    SELECT CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) AS now_utc
),
buyers AS (
    SELECT o.customer_id, COUNT(*) AS order_count, MAX(o.ordered_at) AS last_order_at
    FROM orders o
    WHERE o.customer_id IS NOT NULL
      AND o.status <> 'cancelled'
    GROUP BY o.customer_id
)
SELECT
    c.customer_id, c.email, c.phone, c.first_name, c.last_name,
    c.country, c.postal_code, c.city, c.state,
    c.ads_consent, c.email_consent, c.sms_consent
FROM customers c
JOIN buyers b ON b.customer_id = c.customer_id
CROSS JOIN params p
WHERE c.customer_id IS NOT NULL
  AND c.deleted_at IS NULL
  AND b.order_count >= 2
  AND b.last_order_at < p.now_utc - INTERVAL '90 days'
