"""Braze: membership as a custom attribute written with /users/track."""

from destinations.braze.config import BrazeConfig, capabilities_for
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="braze",
    config=BrazeConfig,
    connector="destinations.braze.connector:BrazeDestination",
    capabilities=capabilities_for,
    emulator="destinations.braze.emulator:BrazeEmulator",
    mount="braze",
    sandbox_secrets={"SANDBOX_BRAZE_KEY": "sandbox-braze-key"},
    seed_audience=None,  # an audience is a custom attribute: the first add creates it
    sandbox_destination=lambda base_url: {
        "type": "braze", "api_key_env": "SANDBOX_BRAZE_KEY", "endpoint": base_url,
    },
    sandbox_audience="in_contract_audience",
)
