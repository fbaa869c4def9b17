"""Iterable static lists: list subscribe and unsubscribe, never a channel unsubscribe."""

from collections.abc import Mapping
from typing import Any

from destinations.iterable.config import CAPABILITIES, IterableListConfig
from destinations.spec import DestinationSpec


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    """Whether the list holds the user of the email or userId (the list names each by its email, else userId)."""
    held = emulator.list_members(audience_id)
    return any(value in held or value.lower() in held for kind, value in identifiers.items() if kind in ("email", "external_id"))


def _refuse(emulator: Any, identifiers: Mapping[str, str]) -> None:
    """The person asked Iterable to forget them (GDPR): every later list call on them fails as forgotten."""
    emulator.forget(email=identifiers.get("email"), user_id=None if identifiers.get("email") else identifiers.get("external_id"))


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
    sandbox_holds=_holds,
    sandbox_refuse=_refuse,  # no address our rules take is one Iterable's own check refuses
)
