"""LinkedIn Matched Audiences: members added to and removed from user DMP segments (/dmpSegments/{id}/users)."""

from collections.abc import Mapping
from typing import Any

from destinations.linkedin.config import CAPABILITIES, ID_TYPES, LinkedInAudienceConfig
from destinations.spec import DestinationSpec


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    wanted = {(ID_TYPES[kind], value) for kind, value in identifiers.items() if kind in ID_TYPES}
    return any(wanted & set(person) for person in emulator.members(audience_id))


SPEC = DestinationSpec(
    type="linkedin_audience",
    config=LinkedInAudienceConfig,
    connector="destinations.linkedin.connector:LinkedInAudienceDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.linkedin.emulator:LinkedInEmulator",
    mount="linkedin",
    sandbox_secrets={"SANDBOX_LINKEDIN_TOKEN": "sandbox-linkedin-token"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_segment(
        audience_id, name, account_id=config.ad_account_id),
    sandbox_destination=lambda base_url: {
        "type": "linkedin_audience", "ad_account_id": "500000001", "access_token_env": "SANDBOX_LINKEDIN_TOKEN",
        "endpoint": base_url,
    },
    sandbox_audience="8000000000000001",
    sandbox_holds=_holds,
    # No refused row: LinkedIn refuses an element only for a malformed id, and the identity rules hash every
    # email they accept into the exact format; no refusal of a well-formed hashed email is documented.
)
