"""The config model of a LinkedIn destination file (``destinations/<name>.yml``) and what LinkedIn accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "DEFAULT_VERSION", "ID_TYPES", "MAX_BATCH", "LinkedInAudienceConfig"]

MAX_BATCH = 1_000
"""Elements per ``BATCH_CREATE`` call to /dmpSegments/{id}/users. LinkedIn's published limit was not found;
1,000 is the conservative choice (see the connector's docstring)."""

ID_TYPES = {"email": "SHA256_EMAIL"}
"""Our identifier kind -> LinkedIn's ``idType``. Phones are no user id on LinkedIn. Mobile ids are not offered:
LinkedIn wants GOOGLE_AID or APPLE_IDFA, and our one ``madid`` kind does not say which a value is."""

DEFAULT_VERSION = "202607"
"""``LinkedIn-Version`` sent when the destination names none; each monthly version lives about a year."""

CAPABILITIES = Capabilities(
    # the "google" email rule is LinkedIn's: trimmed, lowercased, SHA-256 as lowercase hex
    platform="google",
    identifiers=frozenset(ID_TYPES),
    max_batch=MAX_BATCH,
    match_keys=frozenset(ID_TYPES),  # one LinkedIn member per hashed email
)


class LinkedInAudienceConfig(DestinationConfigBase):
    """A LinkedIn ad account whose user DMP segments (Matched Audiences) we keep in sync; each sync's
    ``audience_id`` is the numeric id of one DMP segment of type USER."""

    type: Literal["linkedin_audience"]
    ad_account_id: str = Field(pattern=r"^\d+$", description="LinkedIn Campaign Manager ad account (sponsoredAccount)"
                                                             " id that owns the DMP segments.")
    access_token_env: str = Field(description="Environment variable holding a LinkedIn OAuth access token with the"
                                              " rw_dmp_segments scope, of a member with a role above VIEWER on the"
                                              " ad account.")
    linkedin_version: str = Field(DEFAULT_VERSION, pattern=r"^\d{6}(\.\d{2})?$",
                                  description="LinkedIn-Version header (YYYYMM) of the Marketing API to call.")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one LinkedIn response before the"
                                                             " call counts as failed (retried).")

    _check_env = env_names("access_token_env")
