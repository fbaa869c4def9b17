"""Braze: membership as a custom attribute written with /users/track."""

from destinations.braze.config import BrazeConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="braze",
    config=BrazeConfig,
    connector="destinations.braze.connector:BrazeDestination",
    capabilities=lambda config: load_object("destinations.braze.connector:BrazeDestination").capabilities,
    emulator="destinations.braze.emulator:BrazeEmulator",
    mount="braze",
    sandbox_secrets={},
    seed_audience=None,
)
