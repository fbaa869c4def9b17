"""TikTok Ads custom audiences: members added and removed through the segment API's /segment/mapping/."""

from collections.abc import Mapping
from typing import Any

from destinations.spec import DestinationSpec
from destinations.tiktok.config import CAPABILITIES, ID_SCHEMA, TikTokAudienceConfig


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    wanted = {(ID_SCHEMA[kind], value) for kind, value in identifiers.items() if kind in ID_SCHEMA}
    return any(wanted & set(person.items()) for person in emulator.members(audience_id))


SPEC = DestinationSpec(
    type="tiktok_audience",
    config=TikTokAudienceConfig,
    connector="destinations.tiktok.connector:TikTokAudienceDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.tiktok.emulator:TikTokEmulator",
    mount="tiktok",
    sandbox_secrets={"SANDBOX_TIKTOK_TOKEN": "sandbox-tiktok-token"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_audience(
        audience_id, name, advertiser_id=config.advertiser_id),
    sandbox_destination=lambda base_url: {
        "type": "tiktok_audience", "advertiser_id": "7000000000000000001", "access_token_env": "SANDBOX_TIKTOK_TOKEN",
        "endpoint": base_url,
    },
    sandbox_audience="1790000000000001",
    sandbox_holds=_holds,
    # No refused row: TikTok refuses only ids that are not a SHA-256, and the identity rules hash every value
    # they accept; no per-row refusal is documented.
)
