"""The config model of a TikTok destination file (``destinations/<name>.yml``) and what TikTok accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "ID_SCHEMA", "MAX_BATCH", "TikTokAudienceConfig"]

MAX_BATCH = 1_000
"""Rows of ``batch_data`` per /segment/mapping/ call. TikTok's published limit was not found; 1,000 is the
conservative choice (see the connector's docstring)."""

ID_SCHEMA = {"email": "EMAIL_SHA256", "phone": "PHONE_SHA256"}
"""Our identifier kind -> TikTok's ``id_schema`` name. Mobile advertising ids are not offered: TikTok wants
them hashed (IDFA_SHA256 / GAID_SHA256), and no identity rule set hashes a ``madid``."""

CAPABILITIES = Capabilities(
    # the "google" rules are TikTok's: email trimmed and lowercased, phone E.164 with its "+", both SHA-256
    platform="google",
    identifiers=frozenset(ID_SCHEMA),
    max_batch=MAX_BATCH,
    match_keys=frozenset(ID_SCHEMA),  # TikTok matches a person by any of the ids of a row
)


class TikTokAudienceConfig(DestinationConfigBase):
    """A TikTok advertiser whose custom audiences (segments) we keep in sync."""

    type: Literal["tiktok_audience"]
    advertiser_id: str = Field(pattern=r"^\d+$", description="TikTok Ads Manager advertiser (ad account) id.")
    access_token_env: str = Field(description="Environment variable holding a TikTok API for Business access token"
                                              " with the Audience Management scope for the advertiser.")
    api_version: str = Field("v1.3", pattern=r"^v\d+\.\d+$", description="API version in request paths, e.g. v1.3.")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one TikTok response before the"
                                                             " call counts as failed (retried).")

    _check_env = env_names("access_token_env")
