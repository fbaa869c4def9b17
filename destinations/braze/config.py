"""The config model of a braze destination file (``destinations/<name>.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.config import DestinationConfigBase, env_names


class BrazeConfig(DestinationConfigBase):
    """A Braze workspace; each sync's audience_id is the boolean custom attribute that marks membership.

    Membership never touches consent: a remove sets the attribute to false and never unsubscribes anyone.
    """

    type: Literal["braze"]
    api_key_env: str = Field(description="Environment variable holding a REST API key with users.track.")
    instance_url: str = Field("https://rest.iad-01.braze.com", description="REST endpoint of the workspace's cluster.")
    subscription_groups: dict[str, str] = Field(
        default_factory=dict,
        description="Sync audience_id -> Braze subscription group id. On add, a member whose consent for the sync's"
                    " channel is granted is subscribed to that group; a remove never unsubscribes anyone.")
    update_existing_only: bool = Field(
        False, description="Only update members who already have a Braze profile; never create one on add."
                           " Removes always run in update-only mode.")
    max_objects_per_request: int = Field(
        75, ge=1, le=75,
        description="Attribute objects per /users/track request: 75 (the default limit), 50 for workspaces on"
                    " Monthly Active Users CY 24-25 plans.")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one Braze response before the call counts as failed (retried).")

    _check_env = env_names("api_key_env")
