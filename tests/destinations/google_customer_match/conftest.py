"""Fixtures of the Google Customer Match tests: one emulator per transport, reset per test."""

from __future__ import annotations

import pytest

from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator, tls_material
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.google_customer_match.connector import GoogleCustomerMatchDestination
from syncer.sandbox import Sandbox
from tests.destinations.google_customer_match.helpers import ADS_TOKEN, DEV_TOKEN, DM_TOKEN, AdsTarget, DmTarget


@pytest.fixture(scope="module")
def ads_server():
    emulator = GoogleAdsEmulator(ADS_TOKEN, DEV_TOKEN, tls=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def sandbox():
    sb = Sandbox(port=0).start()
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("GADS_TOKEN", ADS_TOKEN)
    monkeypatch.setenv("GADS_DEV", DEV_TOKEN)
    monkeypatch.setenv("DM_TOKEN", DM_TOKEN)
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", tls_material()[0])  # gRPC reads it at the first TLS channel


@pytest.fixture
def ads(ads_server) -> AdsTarget:
    return AdsTarget(ads_server)


@pytest.fixture
def dm(sandbox) -> DmTarget:
    return DmTarget(sandbox)


@pytest.fixture(params=["google_ads_api", "data_manager"])
def target(request, ads_server, sandbox):
    return AdsTarget(ads_server) if request.param == "google_ads_api" else DmTarget(sandbox)


@pytest.fixture
def opened():
    """``opened(config, name=...)`` builds a destination and closes it when the test ends."""
    made: list[GoogleCustomerMatchDestination] = []

    def make(config: GoogleCustomerMatchConfig, name: str = "google_vip") -> GoogleCustomerMatchDestination:
        destination = GoogleCustomerMatchDestination(config, name=name)
        made.append(destination)
        return destination

    yield make
    for destination in made:
        destination.close()
