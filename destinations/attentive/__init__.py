"""Attentive: membership as a custom attribute, never a subscribe call."""

from destinations.attentive.config import CAPABILITIES, AttentiveConfig
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="attentive",
    config=AttentiveConfig,
    connector="destinations.attentive.connector:AttentiveDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.attentive.emulator:AttentiveEmulator",
    mount="attentive",
    # the key the emulator accepts by default (``Emulator.__init__``: $SANDBOX_ATTENTIVE_KEY, else this)
    sandbox_secrets={"SANDBOX_ATTENTIVE_KEY": "sandbox-attentive-key"},
    seed_audience=None,  # an attribute needs no creating: the first write defines it
    sandbox_destination=lambda base_url: {"type": "attentive", "endpoint": base_url,
                                          "api_key_env": "SANDBOX_ATTENTIVE_KEY"},
    sandbox_audience="in_vip_segment",  # the custom attribute's name
)
