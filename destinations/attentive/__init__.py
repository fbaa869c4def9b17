"""Attentive: membership as a custom attribute, never a subscribe call."""

from collections.abc import Mapping
from typing import Any

from destinations.attentive.config import CAPABILITIES, AttentiveConfig
from destinations.spec import DestinationSpec


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    """Whether a person found by the phone or by the email carries the attribute with the member value
    ("true", the sandbox destination's default; a removed member keeps it as "false")."""
    people = [emulator.person(phone=identifiers.get("phone")) if identifiers.get("phone") else None,
              emulator.person(email=identifiers.get("email")) if identifiers.get("email") else None]
    return any(p is not None and p["attributes"].get(audience_id) == "true" for p in people)


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
    sandbox_holds=_holds,
    # No refused row: Attentive refuses a call only for a phone not in E.164 or an email without "@", which
    # the identity rules never let through, and the emulator knows no refused person.
)
