"""Braze: membership as a custom attribute written with /users/track."""

from collections.abc import Mapping
from typing import Any

from destinations.braze.config import BrazeConfig, capabilities_for
from destinations.spec import DestinationSpec


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    """Whether a profile found by any of the identifiers (as /users/track finds one) has the attribute set."""
    for kind in ("external_id", "email", "phone"):
        user = emulator.user(**{kind: identifiers[kind]}) if identifiers.get(kind) else None
        if user is not None and user["attributes"].get(audience_id) is True:
            return True
    return False


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
    sandbox_holds=_holds,
    # No refused row: Braze refuses an object only for a malformed email or a phone not in E.164, which the
    # identity rules never let through, and the emulator knows no refused person.
)
