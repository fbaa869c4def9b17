"""The config model of a Braze destination file (``destinations/<name>.yml``) and what Braze accepts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["BURST", "BrazeConfig", "CAPABILITIES", "IDENTIFIER_KEYS", "MAX_OBJECTS", "RATE_PER_SECOND", "WINDOW_LIMIT",
           "WINDOW_S", "capabilities_for"]

MAX_OBJECTS = 75  # objects per /users/track request, across attributes, events and purchases
WINDOW_LIMIT, WINDOW_S = 3000, 3.0  # Braze: 3,000 /users/track requests per 3 seconds per workspace
BURST, RATE_PER_SECOND = 600.0, 800.0  # BURST + RATE_PER_SECOND * WINDOW_S == WINDOW_LIMIT
IDENTIFIER_KEYS = ("external_id", "email", "phone")
"""The identifiers an attributes object may carry, in the order the connector picks one."""

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset(IDENTIFIER_KEYS),
    max_batch=MAX_OBJECTS,
    channel="email",
    consent_marker=True,  # _consent decides the opt-in subscription group write on add
    traits=True,  # profile properties set with the membership (Member.traits)
)
"""What Braze accepts with the default ``max_objects_per_request``; ``capabilities_for`` gives a config's own."""


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
        MAX_OBJECTS, ge=1, le=MAX_OBJECTS,
        description="Attribute objects per /users/track request: 75 (the default limit), 50 for workspaces on"
                    " Monthly Active Users CY 24-25 plans.")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one Braze response before the call counts as failed (retried).")

    _check_env = env_names("api_key_env")


def capabilities_for(config: BrazeConfig) -> Capabilities:
    """``CAPABILITIES`` with the config's ``max_objects_per_request`` as ``max_batch``: one batch, one request."""
    return dataclasses.replace(CAPABILITIES, max_batch=config.max_objects_per_request)
