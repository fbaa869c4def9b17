"""The config model of a iterable destination file (``destinations/<name>.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.config import DestinationConfigBase, env_names


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
