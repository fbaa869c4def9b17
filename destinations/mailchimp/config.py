"""The config model of a Mailchimp destination file (``destinations/<name>.yml``) and what Mailchimp accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "MAX_BATCH", "MailchimpAudienceConfig"]

MAX_BATCH = 500  # members per batch subscribe and per static segment call

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset({"email", "phone", "first_name", "last_name"}),
    max_batch=MAX_BATCH,
    channel="email",
    consent_marker=True,  # _consent decides the status of a NEW contact (subscribed only when granted)
    match_keys=frozenset({"email"}),  # a contact is its email (its id is the MD5 of it); a phone is a merge field
    traits=True,  # profile properties set with the membership (Member.traits)
)


class MailchimpAudienceConfig(DestinationConfigBase):
    """A Mailchimp account; each sync's audience_id names the audience (list) and the tag or static segment.

    Membership never touches consent: a remove takes the tag off (or leaves the static segment); the
    contact's subscription status is never changed and nobody is unsubscribed or archived.
    """

    type: Literal["mailchimp_audience"]
    api_key_env: str = Field(description="Environment variable holding the API key (its -usN suffix names the data center).")
    membership: Literal["tag", "static_segment"] = Field("tag", description="How an audience_id of the form 'LIST_ID:NAME' is read: NAME is a tag name (tag) or a static segment id (static_segment). 'LIST_ID:tag:NAME' and 'LIST_ID:segment:ID' say it explicitly.")
    granted_status: Literal["subscribed", "pending"] = Field("subscribed", description="Status given to a NEW contact whose email consent is granted (pending sends Mailchimp's double opt-in email). New contacts without granted consent get 'transactional' (non-subscribed); existing contacts' status is never changed.")
    merge_fields: dict[Literal["first_name", "last_name", "phone"], str] = Field(
        default_factory=lambda: {"first_name": "FNAME", "last_name": "LNAME"},
        description="Identifier -> merge tag written on NEW contacts only (e.g. {phone: PHONE} when the audience has a phone merge field).")
    max_connections: int = Field(10, ge=1, le=10, description="Concurrent requests to the account (Mailchimp allows 10 simultaneous connections per account).")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one Mailchimp response before the call counts as failed (retried).")

    _check_env = env_names("api_key_env")
