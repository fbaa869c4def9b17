"""Google Ads Customer Match user lists, over the Data Manager API or the Google Ads API (gRPC)."""

from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="google_customer_match",
    config=GoogleCustomerMatchConfig,
    connector="destinations.google_customer_match.destination:GoogleCustomerMatchDestination",
    capabilities=lambda config: load_object(
        "destinations.google_customer_match.destination:GoogleCustomerMatchDestination").capabilities_for(config),
    emulator="destinations.google_customer_match.data_manager_emulator:DataManagerEmulator",
    mount="datamanager",
    sandbox_secrets={"SANDBOX_DATAMANAGER_KEY": "sandbox-datamanager-key"},
    seed_audience=lambda emulator, config, audience_id, name: emulator.create_user_list(config.customer_id, audience_id),
)
