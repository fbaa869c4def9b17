"""An in-process destination for tests and dry runs."""

from destinations.fake.config import FakeConfig, capabilities_for
from destinations.spec import DestinationSpec

SPEC = DestinationSpec(
    type="fake",
    config=FakeConfig,
    connector="destinations.fake.connector:FakeDestination",
    capabilities=capabilities_for,
    emulator=None,
    mount=None,
    sandbox_secrets={},
    seed_audience=None,
)
