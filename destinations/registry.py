"""Every platform, registered with one spec: a new platform is one folder plus one line in ``SPECS``.

The config union (``syncer.project``), the sandbox server, the demo, ``validate`` and the contract
suite (``tests/destinations/test_contract.py``) are all built from this registry, so nothing else
names a platform. Connectors and emulators are imported on first use: loading a project never pays
for an SDK import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from destinations.base import Capabilities, Destination
from destinations.config import DestinationConfigBase
from destinations.spec import DestinationSpec, load_object
from syncer.environment import expand_env

__all__ = ["DestinationSpec", "SPECS", "load_object", "build_destination", "capabilities_of", "destination_class", "spec_for"]


PLATFORMS = (
    "meta",
    "google_customer_match",
    "klaviyo",
    "mailchimp",
    "braze",
    "iterable",
    "attentive",
    "twilio",
    "tiktok",
    "linkedin",
    "fake",
)
"""The folders under ``destinations/`` that hold a platform, one per line, each exporting ``SPEC``."""


def _specs() -> dict[str, DestinationSpec]:
    specs = (importlib.import_module(f"destinations.{folder}").SPEC for folder in PLATFORMS)
    return {spec.type: spec for spec in specs}


SPECS: Mapping[str, DestinationSpec] = _specs()


def spec_for(type_name: str) -> DestinationSpec:
    return SPECS[type_name]


def destination_class(type_name: str) -> type[Destination]:
    return load_object(SPECS[type_name].connector)


def capabilities_of(config: DestinationConfigBase) -> Capabilities:
    """What the destination ``config`` describes accepts, without importing its connector."""
    capabilities = SPECS[config.type].capabilities
    return capabilities if isinstance(capabilities, Capabilities) else capabilities(config)


def build_destination(name: str, config: DestinationConfigBase) -> Destination:
    """Instantiate the connector for a destination config; secrets are read from the environment now."""
    cls = destination_class(config.type)
    if config.endpoint:
        config = config.model_copy(update={"endpoint": expand_env(config.endpoint)})
    instance = cls(config)
    instance.name = name
    return instance
