"""Klaviyo lists: membership through the list's profile relationships, never consent."""

from destinations.klaviyo.config import KlaviyoListConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="klaviyo_list",
    config=KlaviyoListConfig,
    connector="destinations.klaviyo.connector:KlaviyoListDestination",
    capabilities=lambda config: load_object("destinations.klaviyo.connector:KlaviyoListDestination").capabilities,
    emulator="destinations.klaviyo.emulator:KlaviyoEmulator",
    mount="klaviyo",
    sandbox_secrets={"SANDBOX_KLAVIYO_KEY": "sandbox-klaviyo-key"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_list(audience_id, name=name),
)
