"""The config model of a fake destination file (``destinations/<name>.yml``) and what it accepts."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase

__all__ = ["CAPABILITIES", "FakeConfig", "capabilities_for"]

CAPABILITIES = Capabilities(
    platform="meta",
    identifiers=frozenset({"email", "phone", "first_name", "last_name", "postal_code", "city", "state", "country",
                           "madid", "external_id"}),
    max_batch=1000,
)
"""What the fake accepts with the default ``max_batch``; ``capabilities_for`` gives a config's own."""


class FakeConfig(DestinationConfigBase):
    """An in-process destination for tests and dry runs; it keeps members in memory."""

    type: Literal["fake"]
    max_batch: int = Field(1000, ge=1, description="Largest batch the fake accepts, like a platform's limit.")


def capabilities_for(config: FakeConfig) -> Capabilities:
    """``CAPABILITIES`` with the config's ``max_batch`` (read at call time, so a test may replace ``CAPABILITIES``)."""
    return dataclasses.replace(CAPABILITIES, max_batch=config.max_batch)
