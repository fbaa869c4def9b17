"""Fixtures of the Klaviyo tests: the sandbox with the test list, and connectors pointed at it."""

from __future__ import annotations

import pytest

from destinations.klaviyo.connector import KlaviyoListDestination
from tests.destinations.klaviyo.helpers import LIST, DictCache, config


@pytest.fixture
def sandbox(sandbox):
    sandbox.klaviyo.create_list(LIST, name="vip")
    return sandbox


@pytest.fixture
def make_dest(sandbox, monkeypatch, opened):
    """``make_dest(cache=None, **config)``: a connector on the sandbox; each call is a new process whose
    only memory is ``cache`` (the ledger's id cache)."""
    monkeypatch.setenv("KLAVIYO_KEY", sandbox.klaviyo.key)

    def make(cache: DictCache | None = None, **overrides) -> KlaviyoListDestination:
        destination = opened(KlaviyoListDestination(config(sandbox.url_for("klaviyo"), **overrides), name="klaviyo_vip"))
        destination.id_cache = cache if cache is not None else DictCache()
        return destination

    return make


@pytest.fixture
def dest(make_dest):
    return make_dest()
