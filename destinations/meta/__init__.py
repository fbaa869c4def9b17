"""Meta Custom Audiences: members added and removed through the Graph API's /{audience}/users edge (the official facebook-business SDK)."""

from destinations.meta.config import MetaAudienceConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="meta_audience",
    config=MetaAudienceConfig,
    connector="destinations.meta.connector:MetaAudienceDestination",
    capabilities=lambda config: load_object("destinations.meta.connector:MetaAudienceDestination").capabilities,
    emulator="destinations.meta.emulator:MetaEmulator",
    mount="",
    sandbox_secrets={"SANDBOX_META_TOKEN": "sandbox-meta-token"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_audience(audience_id, name=name),
)
