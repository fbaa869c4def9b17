"""The config model of an Attentive destination file (``destinations/<name>.yml``) and what it accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["AttentiveConfig", "CAPABILITIES", "DEFAULT_REQUESTS_PER_SECOND"]

DEFAULT_REQUESTS_PER_SECOND = 150.0
"""Attentive's default limit per API key."""

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset({"phone", "email"}),
    max_batch=100,
    can_remove=True,
    channel="sms",
    # each identifier is sent alone (connector docstring): the phone's person and the email's person each
    # carry the attribute, so members sharing either value are one person there
    match_keys=frozenset({"phone", "email"}),
)


class AttentiveConfig(DestinationConfigBase):
    """An Attentive company; each sync's audience_id is the custom attribute that marks membership.

    Membership is written with the Custom Attributes API only; the connector never calls a subscribe
    endpoint (that would text the person).
    """

    type: Literal["attentive"]
    api_key_env: str = Field(description="Environment variable holding a private app API key (scope attributes:write).")
    member_value: str = Field("true", min_length=1, description="Attribute value written when a member is added. Attentive types an attribute by its first value; for a property created in the Attentive UI it must be one of the values defined there.")
    removed_value: str = Field("false", min_length=1, description="Attribute value written when a member is removed (Attentive has no call that deletes an attribute).")
    concurrency: int = Field(8, ge=1, le=64, description="Members in flight at once (a request per identifier, the phone's then the email's); the request rate stays under requests_per_second.")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one response before the call counts as failed (retried; setting an attribute is idempotent).")

    _check_env = env_names("api_key_env")

    @model_validator(mode="after")
    def _distinct_values(self) -> "AttentiveConfig":
        if self.member_value == self.removed_value:
            raise ValueError("member_value and removed_value must differ, or removed members would still look like members")
        return self
