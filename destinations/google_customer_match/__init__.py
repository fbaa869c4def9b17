"""Google Ads Customer Match user lists, over the Data Manager API or the Google Ads API (gRPC).

The sandbox serves the Data Manager API (``DataManagerEmulator`` under ``/datamanager``), so the contract
suite runs the data_manager transport; the gRPC transport has its own emulator (``ads_api_emulator``).
"""

from collections.abc import Mapping
from typing import Any

from destinations.google_customer_match.config import GoogleCustomerMatchConfig, capabilities_for
from destinations.spec import DestinationSpec

_MEMBER_KINDS = {"email": "hashed_email", "phone": "hashed_phone_number", "madid": "mobile_id"}
"""Our identifier kinds -> the emulator's kinds of the identifiers a user list member is matched by."""


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    wanted = {(_MEMBER_KINDS[kind], value.lower()) for kind, value in identifiers.items() if kind in _MEMBER_KINDS}
    for member in emulator.members(audience_id):
        held = {(kind, value) for kind, values in member.items() if kind in _MEMBER_KINDS.values()
                for value in (values if isinstance(values, tuple) else (values,))}
        if wanted & held:
            return True
    return False


SPEC = DestinationSpec(
    type="google_customer_match",
    config=GoogleCustomerMatchConfig,
    connector="destinations.google_customer_match.connector:GoogleCustomerMatchDestination",
    capabilities=capabilities_for,
    emulator="destinations.google_customer_match.data_manager_emulator:DataManagerEmulator",
    mount="datamanager",
    sandbox_secrets={"SANDBOX_DATAMANAGER_KEY": "sandbox-datamanager-key"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_user_list(config.customer_id, audience_id),
    sandbox_destination=lambda base_url: {
        "type": "google_customer_match", "customer_id": "1234567890", "transport": "data_manager",
        "access_token_env": "SANDBOX_DATAMANAGER_KEY", "customer_match_terms_accepted": True, "endpoint": base_url},
    sandbox_audience="5550001",
    sandbox_holds=_holds,
    # A member known by a mobile advertising id only, sent to the sandbox's CONTACT_INFO list: Google allows
    # one upload key type per list ("Mixed data types are not allowed on the same list") and refuses that
    # member for good (INVALID_USER_LIST_TYPE over the Data Manager API), whatever else the batch holds.
    sandbox_refused_row={"email": None, "phone": None, "madid": "0f8fad5b-d9cb-469f-a165-70867728950e"},
)
