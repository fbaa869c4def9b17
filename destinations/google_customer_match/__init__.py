"""Google Ads Customer Match user lists, over the Data Manager API or the Google Ads API (gRPC).

The sandbox serves the Data Manager API (``DataManagerEmulator`` under ``/datamanager``), so the contract
suite runs the data_manager transport; the gRPC transport has its own emulator (``ads_api_emulator``).
"""

from destinations.google_customer_match.config import GoogleCustomerMatchConfig, capabilities_for
from destinations.spec import DestinationSpec

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
)
