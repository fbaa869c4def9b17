"""Klaviyo lists: membership through the list's profile relationships, never consent."""

from collections.abc import Mapping
from typing import Any

from destinations.klaviyo.config import CAPABILITIES, KlaviyoListConfig
from destinations.spec import DestinationSpec

_PROFILE_FIELDS = {"email": "email", "phone": "phone_number", "external_id": "external_id"}
"""Our identifier kinds -> the profile fields Klaviyo keeps one profile per value of."""


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    wanted = {(_PROFILE_FIELDS[kind], value) for kind, value in identifiers.items() if kind in _PROFILE_FIELDS}
    return any(wanted & set(profile.items()) for profile in emulator.members(audience_id))


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
    sandbox_holds=_holds,
    # An address our rules take (a top-level label need only not be all digits) whose top-level domain
    # exists nowhere (a 0 typed for an o): the import reports the row as an invalid email (the emulator's
    # check, a top-level label of letters, is its reading of Klaviyo's [U]).
    sandbox_refused_row={"email": "ann.lee@example.c0m"},
)
