"""An in-process destination for tests and dry runs."""

from destinations.fake.config import FakeConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="fake",
    config=FakeConfig,
    connector="destinations.fake.connector:FakeDestination",
    capabilities=lambda config: load_object("destinations.fake.connector:FakeDestination").capabilities,
    emulator=None,
    mount=None,
    sandbox_secrets={},
    seed_audience=None,
)
