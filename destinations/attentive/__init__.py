"""Attentive: membership as a custom attribute, never a subscribe call."""

from destinations.attentive.config import AttentiveConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="attentive",
    config=AttentiveConfig,
    connector="destinations.attentive.connector:AttentiveDestination",
    capabilities=lambda config: load_object("destinations.attentive.connector:AttentiveDestination").capabilities,
    emulator="destinations.attentive.emulator:AttentiveEmulator",
    mount="attentive",
    sandbox_secrets={},
    seed_audience=None,
)
