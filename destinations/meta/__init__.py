"""Meta Custom Audiences: members added and removed through the Graph API's /{audience}/users edge (the official facebook-business SDK)."""

from destinations.meta.config import CAPABILITIES, MetaAudienceConfig
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="meta_audience",
    config=MetaAudienceConfig,
    connector="destinations.meta.connector:MetaAudienceDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.meta.emulator:MetaEmulator",
    mount="",
    sandbox_secrets={"SANDBOX_META_TOKEN": "sandbox-meta-token"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_audience(audience_id, name=name),
    sandbox_destination=lambda base_url: {
        "type": "meta_audience", "ad_account_id": "act_1000000001", "access_token_env": "SANDBOX_META_TOKEN",
        "endpoint": base_url,
    },
    sandbox_audience="120210000000001",
)
