"""The config model of a meta destination file (``destinations/<name>.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.config import DestinationConfigBase, env_names


class MetaAudienceConfig(DestinationConfigBase):
    """A Meta ad account whose Custom Audiences we keep in sync."""

    type: Literal["meta_audience"]
    ad_account_id: str = Field(pattern=r"^(act_)?\d+$", description="Ad account id, with or without act_.")
    access_token_env: str = Field(description="Environment variable holding a token with ads_management.")
    app_secret_env: str | None = Field(None, description="Environment variable holding the app secret (enables appsecret_proof).")
    api_version: str = Field("v26.0", pattern=r"^v\d+\.\d+$", description="Graph API version used in request paths, e.g. v26.0.")
    request_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one Graph API response before the call counts as failed (retried).")

    _check_env = env_names("access_token_env", "app_secret_env")
