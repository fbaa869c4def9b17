-- High-value customers: lifetime spend on orders that were not cancelled or refunded of at
-- least 350.00 (about the top 10% of the sample warehouse). Audience for VIP offers, early
-- access and lookalike seeds. One row per customer; identifiers are raw (the engine normalises
-- and hashes them).
WITH lifetime AS (
    SELECT o.customer_id, SUM(o.amount) AS lifetime_value
    FROM orders o
    WHERE o.customer_id IS NOT NULL
      AND o.status IN ('completed', 'shipped', 'pending')
    GROUP BY o.customer_id
)
SELECT
    c.customer_id, c.email, c.phone, c.first_name, c.last_name,
    c.country, c.postal_code, c.city, c.state,
    c.ads_consent, c.email_consent, c.sms_consent
FROM customers c
JOIN lifetime l ON l.customer_id = c.customer_id
WHERE c.customer_id IS NOT NULL
  AND c.deleted_at IS NULL
  AND l.lifetime_value >= 350.00
