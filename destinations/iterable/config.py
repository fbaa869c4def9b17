"""The config model of an Iterable destination file (``destinations/<name>.yml``) and what Iterable accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "IterableListConfig", "MAX_SUBSCRIBERS", "RATE_PER_SECOND"]

MAX_SUBSCRIBERS = 1000  # subscribers per list subscribe or unsubscribe request
RATE_PER_SECOND = 10.0  # a conservative guess: Iterable documents a leaky bucket per project and endpoint, not its rate

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset({"email", "external_id"}),  # external_id is sent as Iterable's userId
    max_batch=MAX_SUBSCRIBERS,
    channel="email",
    match_keys=frozenset({"email", "external_id"}),  # a user is found by email or by userId
    traits=True,  # profile properties set with the membership (Member.traits)
)


class IterableListConfig(DestinationConfigBase):
    """An Iterable project; each sync's audience_id is a list id.

    Membership never touches consent: removes unsubscribe from the list only (channelUnsubscribe false).
    """

    type: Literal["iterable_list"]
    api_key_env: str = Field(description="Environment variable holding a server-side API key.")
    data_center: Literal["US", "EU"] = Field("US", description="US (api.iterable.com) or EU (api.eu.iterable.com) project.")
    prefer_user_id: bool = Field(
        False, description="Identify members by userId (the external_id identifier) when they have one; default: email"
                           " first, userId only for members without an email.")
    update_existing_users_only: bool = Field(
        False, description="Never create Iterable users on add: members without a profile are rejected (not found).")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one Iterable response before the call counts as failed (retried).")

    _check_env = env_names("api_key_env")
