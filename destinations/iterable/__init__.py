"""Iterable static lists: list subscribe and unsubscribe, never a channel unsubscribe."""

from destinations.iterable.config import CAPABILITIES, IterableListConfig
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="iterable_list",
    config=IterableListConfig,
    connector="destinations.iterable.connector:IterableListDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.iterable.emulator:IterableEmulator",
    mount="iterable",
    sandbox_secrets={"SANDBOX_ITERABLE_KEY": "sandbox-iterable-key"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_list(audience_id, name=name),
    sandbox_destination=lambda base_url: {
        "type": "iterable_list", "api_key_env": "SANDBOX_ITERABLE_KEY", "endpoint": base_url,
    },
    sandbox_audience="1001",
)
