"""Helpers shared by the Google Customer Match tests: members, outcomes, and one target per transport
(its emulator, a config pointing at it, and its fault knobs). Fixtures are in ``conftest.py``."""

from __future__ import annotations

import hashlib
import json

from destinations.base import AudienceRef, BatchResult, Member
from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from syncer.sandbox import Sandbox

ADS_TOKEN, DEV_TOKEN, DM_TOKEN = "ads-token", "dev-token", "dm-token"
CID = "1234567890"
AUDIENCE = AudienceRef(sync="vip_google", audience_id="555")
MADID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(i: int, consent: str | None = None, **kinds: str) -> Member:
    """Member ``k{i}``: the hashed email ``person{i}@example.com`` unless ``kinds`` are given, plus the consent marker."""
    ids = kinds or {"email": sha(f"person{i}@example.com")}
    if consent is not None:
        ids = {**ids, "_consent": consent}
    return Member(f"k{i}", ids)


def canon(members: list[dict]) -> list[str]:
    return sorted(json.dumps(m, sort_keys=True) for m in members)


def statuses(result: BatchResult) -> dict[str, tuple[str, str | None]]:
    return {o.member_key: (o.status.value, o.reason) for o in result.outcomes}


class MemoryJobBook:
    """A job book in memory (``destinations.base.JobBook``), for tests that call a destination without the
    engine; ``stages`` lists every stage recorded, in order."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict] = {}
        self.stages: list[str] = []

    def get(self, sync: str, step: str) -> dict | None:
        found = self.records.get((sync, step))
        return json.loads(json.dumps(found)) if found else None

    def put(self, sync: str, step: str, *, job: str | None, stage: str, detail: dict) -> None:
        self.records[(sync, step)] = {"job": job, "stage": stage, "detail": json.loads(json.dumps(detail))}
        self.stages.append(stage)

    def drop(self, sync: str, step: str) -> None:
        self.records.pop((sync, step), None)


class AdsTarget:
    """The google_ads_api transport against the gRPC emulator (TLS)."""

    transport = "google_ads_api"

    def __init__(self, emulator: GoogleAdsEmulator) -> None:
        self.emulator = emulator
        emulator.reset()
        emulator.latency = 0.0
        emulator.create_user_list(CID, "555")

    def config(self, **overrides) -> GoogleCustomerMatchConfig:
        fields = {"type": "google_customer_match", "customer_id": "123-456-7890", "transport": self.transport,
                  "access_token_env": "GADS_TOKEN", "developer_token_env": "GADS_DEV", "endpoint": self.emulator.endpoint}
        return GoogleCustomerMatchConfig(**(fields | overrides))

    def members(self) -> list[dict]:
        self.emulator.finish_jobs()  # jobs take hours on Google; the emulator completes them on demand
        return self.emulator.user_list_members("555")

    @property
    def calls(self) -> int:
        return len(self.emulator.requests)

    def throttle(self, seconds: float | None) -> None:
        self.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=seconds)

    def fail_transiently(self) -> None:
        self.emulator.inject("INTERNAL")


class DmTarget:
    """The data_manager transport against the sandbox's Data Manager emulator."""

    transport = "data_manager"

    def __init__(self, sb: Sandbox) -> None:
        self.emulator = sb.datamanager
        self.url = sb.url_for("datamanager")
        self.emulator.reset()
        self.emulator.latency = 0.0
        self.emulator.key = DM_TOKEN
        self.emulator.create_user_list(CID, "555")

    def config(self, **overrides) -> GoogleCustomerMatchConfig:
        fields = {"type": "google_customer_match", "customer_id": "123-456-7890", "transport": self.transport,
                  "access_token_env": "DM_TOKEN", "endpoint": self.url, "customer_match_terms_accepted": True}
        return GoogleCustomerMatchConfig(**(fields | overrides))

    def members(self) -> list[dict]:
        return self.emulator.members("555")

    @property
    def calls(self) -> int:
        return self.emulator.request_count

    def throttle(self, seconds: float | None) -> None:
        self.emulator.inject_http(429, retry_after=seconds)

    def fail_transiently(self) -> None:
        self.emulator.inject_http(503)
