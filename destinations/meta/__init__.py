"""Meta Custom Audiences: members added and removed through the Graph API's /{audience}/users edge (the official facebook-business SDK)."""

from collections.abc import Mapping
from typing import Any

from destinations.meta.config import CAPABILITIES, MetaAudienceConfig
from destinations.spec import DestinationSpec

_PERSON_KEYS = {"email": "EMAIL", "phone": "PHONE", "madid": "MADID", "external_id": "EXTERN_ID"}
"""Our identifier kinds -> the emulator's names of the strong keys a Meta person is matched by."""


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    wanted = {(_PERSON_KEYS[kind], value) for kind, value in identifiers.items() if kind in _PERSON_KEYS}
    return any(wanted & set(person.items()) for person in emulator.members(audience_id))


SPEC = DestinationSpec(
    type="meta_audience",
    config=MetaAudienceConfig,
    connector="destinations.meta.connector:MetaAudienceDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.meta.emulator:MetaEmulator",
    mount="",
    sandbox_secrets={"SANDBOX_META_TOKEN": "sandbox-meta-token"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_audience(audience_id, name=name),
    sandbox_destination=lambda base_url: {
        "type": "meta_audience", "ad_account_id": "act_1000000001", "access_token_env": "SANDBOX_META_TOKEN",
        "endpoint": base_url,
    },
    sandbox_audience="120210000000001",
    sandbox_holds=_holds,
    # No refused row: Meta refuses only values that are not a SHA-256 (or a mobile advertiser id), and the
    # identity rules hash every value they accept; the emulator has no other per-row refusal.
)
