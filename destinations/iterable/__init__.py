"""Iterable static lists: list subscribe and unsubscribe, never a channel unsubscribe."""

from destinations.iterable.config import IterableListConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="iterable_list",
    config=IterableListConfig,
    connector="destinations.iterable.connector:IterableListDestination",
    capabilities=lambda config: load_object("destinations.iterable.connector:IterableListDestination").capabilities,
    emulator="destinations.iterable.emulator:IterableEmulator",
    mount="iterable",
    sandbox_secrets={},
    seed_audience=None,
)
