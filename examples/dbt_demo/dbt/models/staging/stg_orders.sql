-- Orders that count towards spend: not cancelled or refunded, and not guest checkouts.
select order_id, customer_id, amount, ordered_at
from {{ source('shop', 'orders') }}
where customer_id is not null
  and status in ('completed', 'shipped', 'pending')
