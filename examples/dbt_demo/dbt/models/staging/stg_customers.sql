-- Live customers only: a soft-deleted customer is in no audience.
select
    customer_id, email, phone, first_name, last_name, country, postal_code, city, state,
    ads_consent, email_consent, sms_consent
from {{ source('shop', 'customers') }}
where customer_id is not null
  and deleted_at is null
