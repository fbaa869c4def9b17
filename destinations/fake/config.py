"""The config model of a fake destination file (``destinations/<name>.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from destinations.config import DestinationConfigBase


class FakeConfig(DestinationConfigBase):
    """An in-process destination for tests and dry runs; it keeps members in memory."""

    type: Literal["fake"]
    max_batch: int = Field(1000, ge=1, description="Largest batch the fake accepts, like a platform's limit.")
