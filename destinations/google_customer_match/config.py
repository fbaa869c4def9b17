"""The config model of a google_customer_match destination file (``destinations/<name>.yml``), and what each
transport accepts (``capabilities_for``), readable without importing the connector or the google-ads SDK."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["ADS_API_CAPABILITIES", "ADS_API_IDENTIFIERS", "ADS_API_MATCH_KEYS", "DATA_MANAGER_CAPABILITIES", "DATA_MANAGER_IDENTIFIERS",
           "DATA_MANAGER_MATCH_KEYS", "MAX_BATCH", "GoogleCustomerMatchConfig", "capabilities_for"]

ADS_API_IDENTIFIERS = frozenset({"email", "phone", "first_name", "last_name", "country", "postal_code", "madid", "external_id"})
DATA_MANAGER_IDENTIFIERS = ADS_API_IDENTIFIERS - {"external_id"}  # no CRM-id field verified in the Data Manager docs
# What Google recognises one person by: each identifier of a row is matched to Google accounts on its own
# (support.google.com/google-ads/answer/7474263) and a remove drops every person any of them matches. Hashed
# email and phone (hashed_email, hashed_phone_number; Data Manager emailAddress, phoneNumber), mobile id
# (mobile_id, mobileIds) and, over the Ads API only, the CRM id (third_party_user_id). The address matches too,
# but only as all four parts together, which no single kind here stands for.
ADS_API_MATCH_KEYS = frozenset({"email", "phone", "madid", "external_id"})
DATA_MANAGER_MATCH_KEYS = ADS_API_MATCH_KEYS - {"external_id"}
MAX_BATCH = 10_000
ADS_API_CAPABILITIES = Capabilities(platform="google", identifiers=ADS_API_IDENTIFIERS, max_batch=MAX_BATCH, channel="ads",
                                    consent_marker=True, match_keys=ADS_API_MATCH_KEYS)
DATA_MANAGER_CAPABILITIES = Capabilities(platform="google_data_manager", identifiers=DATA_MANAGER_IDENTIFIERS,
                                         max_batch=MAX_BATCH, channel="ads", consent_marker=True, match_keys=DATA_MANAGER_MATCH_KEYS)


class GoogleCustomerMatchConfig(DestinationConfigBase):
    """A Google Ads account whose Customer Match user lists we keep in sync."""

    type: Literal["google_customer_match"]
    customer_id: str = Field(pattern=r"^\d{3}-?\d{3}-?\d{4}$", description="Google Ads customer id that owns the user lists (dashes optional).")
    login_customer_id: str | None = Field(None, pattern=r"^\d{3}-?\d{3}-?\d{4}$", description="Manager account id sent as login-customer-id, when access goes through a manager.")
    transport: Literal["google_ads_api", "data_manager"] = Field("data_manager", description="google_ads_api: OfflineUserDataJobService over gRPC; data_manager: the Data Manager API (required for new integrations since April 2026).")
    developer_token_env: str | None = Field(None, description="Environment variable holding the developer token (google_ads_api transport).")
    access_token_env: str = Field(description="Environment variable holding an OAuth access token with the adwords or datamanager scope.")
    api_version: str = Field("v26", pattern=r"^v\d+$", description="Google Ads API version (google_ads_api transport).")
    customer_match_terms_accepted: bool = Field(False, description="Set true to state that the Customer Match terms (support.google.com/adspolicy/answer/6299717) are accepted for this account; the data_manager transport sends it with every ingest, and Google refuses uploads without it.")
    request_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one Google call before it counts as failed (retried); the SDK sets no deadline by itself.")

    _check_env = env_names("developer_token_env", "access_token_env")


def capabilities_for(config: GoogleCustomerMatchConfig) -> Capabilities:
    """What the transport ``config`` names accepts: identity rule set "google" (google_ads_api) or
    "google_data_manager", whose identifiers differ (no external_id over the Data Manager API)."""
    return ADS_API_CAPABILITIES if config.transport == "google_ads_api" else DATA_MANAGER_CAPABILITIES
