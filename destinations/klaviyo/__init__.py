"""Klaviyo lists: membership through the list's profile relationships, never consent."""

from destinations.klaviyo.config import CAPABILITIES, KlaviyoListConfig
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="klaviyo_list",
    config=KlaviyoListConfig,
    connector="destinations.klaviyo.connector:KlaviyoListDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.klaviyo.emulator:KlaviyoEmulator",
    mount="klaviyo",
    sandbox_secrets={"SANDBOX_KLAVIYO_KEY": "sandbox-klaviyo-key"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_list(audience_id, name=name),
    sandbox_destination=lambda base_url: {
        "type": "klaviyo_list", "api_key_env": "SANDBOX_KLAVIYO_KEY", "endpoint": base_url,
        "import_poll_interval_s": 0.05,  # the emulator's import jobs finish on their second poll
    },
    sandbox_audience="Y6nRLr",
)
