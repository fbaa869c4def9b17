"""The config model of a Klaviyo destination file (``destinations/<name>.yml``) and what Klaviyo accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["ATTRIBUTES", "CAPABILITIES", "KlaviyoListConfig", "MAX_LIST_PROFILES"]

MAX_LIST_PROFILES = 1_000  # profiles per list relationship call
ATTRIBUTES = {"email": "email", "phone": "phone_number", "external_id": "external_id", "first_name": "first_name", "last_name": "last_name"}
"""Identifier kind -> the Klaviyo profile attribute it is sent as."""

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset(ATTRIBUTES),
    max_batch=MAX_LIST_PROFILES,
    channel="email",
    # one profile per email, per phone number and per external id: members sharing one are one profile
    match_keys=frozenset({"email", "phone", "external_id"}),
    traits=True,  # profile properties set with the membership (Member.traits)
)


class KlaviyoListConfig(DestinationConfigBase):
    """A Klaviyo account; each sync's audience_id is a list id.

    Membership never touches consent: members join and leave the list through the list's profile
    relationships; a remove never unsubscribes anyone.
    """

    type: Literal["klaviyo_list"]
    api_key_env: str = Field(description="Environment variable holding a private API key with lists:write and profiles:write.")
    revision: str = Field("2026-07-15", pattern=r"^\d{4}-\d{2}-\d{2}$", description="Klaviyo API revision header.")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one Klaviyo response before the call counts as failed (retried).")
    import_poll_interval_s: float = Field(1.0, gt=0, le=60, description="Seconds between polls of a profile bulk import job.")
    import_timeout_s: float = Field(300.0, gt=0, description="Seconds to wait for a profile bulk import job before the batch is retried (the job is resumed, not resent).")

    _check_env = env_names("api_key_env")
