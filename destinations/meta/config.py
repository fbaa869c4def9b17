"""The config model of a Meta destination file (``destinations/<name>.yml``) and what Meta accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "KEYS", "MetaAudienceConfig"]

KEYS = {
    "email": "EMAIL", "phone": "PHONE", "first_name": "FN", "last_name": "LN", "postal_code": "ZIP", "city": "CT",
    "state": "ST", "country": "COUNTRY", "madid": "MADID", "external_id": "EXTERN_ID", "gender": "GEN",
}
"""Our identifier kind -> Meta's multi-key schema field. ``date_of_birth`` is not offered: Meta wants
DOBY/DOBM/DOBD hashed apart, and a hashed full date cannot be split."""

CAPABILITIES = Capabilities(
    platform="meta",
    identifiers=frozenset(KEYS),
    max_batch=10_000,  # rows per /users request (Graph API Custom Audience docs)
)


class MetaAudienceConfig(DestinationConfigBase):
    """A Meta ad account whose Custom Audiences we keep in sync."""

    type: Literal["meta_audience"]
    ad_account_id: str = Field(pattern=r"^(act_)?\d+$", description="Ad account id, with or without act_.")
    access_token_env: str = Field(description="Environment variable holding a token with ads_management.")
    app_secret_env: str | None = Field(None, description="Environment variable holding the app secret (enables appsecret_proof).")
    api_version: str = Field("v26.0", pattern=r"^v\d+\.\d+$", description="Graph API version used in request paths, e.g. v26.0.")
    request_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one Graph API response before the call counts as failed (retried).")

    _check_env = env_names("access_token_env", "app_secret_env")
