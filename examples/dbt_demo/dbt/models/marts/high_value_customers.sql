-- Customers whose lifetime spend is at least 350.00 (about the top 10% of the sample warehouse): the
-- syncer's segment high_value_customers. One row per customer, identifiers raw (the syncer normalises
-- and hashes them); the same members as examples/demo/segments/high_value.sql.
with lifetime as (
    select customer_id, sum(amount) as lifetime_value
    from {{ ref('stg_orders') }}
    group by customer_id
)
select c.*, l.lifetime_value
from {{ ref('stg_customers') }} c
join lifetime l using (customer_id)
where l.lifetime_value >= 350.00
