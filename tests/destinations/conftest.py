"""Fixtures shared by the connector tests (plain helpers are in ``helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from syncer.sandbox import Sandbox

D = TypeVar("D")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Every emulator on a free loopback port. A module seeds it by overriding ``sandbox(sandbox)``."""
    sb = Sandbox(port=0).start()
    yield sb
    sb.stop()


@pytest.fixture
def opened() -> Iterator[Callable[[D], D]]:
    """``opened(destination)`` returns the destination and closes it when the test ends."""
    made: list = []

    def register(destination: D) -> D:
        made.append(destination)
        return destination

    yield register
    for destination in made:
        destination.close()
