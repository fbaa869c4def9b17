"""The connector contract, run against every registered platform's emulator.

Parametrised over ``destinations.registry.SPECS``: a platform registered with a sandbox emulator is
covered here with no new test code. Each test is a promise the engine relies on:

- an empty batch makes no call;
- every member sent gets exactly one outcome, keyed by member;
- a batch over the platform's limit is refused before anything is sent;
- a row the platform refuses never raises (the rest of the batch still lands);
- a throttle becomes a retryable error carrying the platform's wait;
- bad credentials name the variable to fix;
- a membership remove never changes the person's consent;
- ``check()`` passes with good credentials;
- the shared status table holds for every connector's ``classify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from destinations.base import AudienceRef, Destination, Member, RowStatus
from destinations.registry import SPECS, build_destination, capabilities_of
from destinations.responses import PlatformResponse
from destinations.spec import DestinationSpec
from syncer.errors import BatchTooLargeError, ConfigError, PermanentError, RateLimited, SyncError, TransientError
from syncer.identity.rows import identify
from syncer.sandbox import Sandbox

SANDBOXED = [spec for spec in SPECS.values() if spec.emulator and spec.sandbox_destination]


def _capabilities(spec: DestinationSpec):
    return capabilities_of(spec.config.model_validate(spec.sandbox_destination("http://127.0.0.1:9")))


# a text cannot be taken back: platforms that hold no membership (Twilio) have nothing to remove
REMOVABLE = [spec for spec in SANDBOXED if _capabilities(spec).can_remove]
_RAW_KINDS = ("email", "phone", "first_name", "last_name", "country")


@dataclass
class Platform:
    spec: DestinationSpec
    emulator: Any
    destination: Destination
    audience: AudienceRef

    @property
    def requests(self) -> int:
        return self.emulator.request_count

    def members(self, count: int, start: int = 0) -> list[Member]:
        return [member_for(self.spec, self.destination, i) for i in range(start, start + count)]


def member_for(spec: DestinationSpec, destination: Destination, i: int) -> Member:
    """The ``i``-th test member in the platform's format (the engine's identity rules, as in a sync)."""
    if spec.sandbox_member is not None:
        return spec.sandbox_member(i)
    caps = destination.capabilities
    raw = {"email": f"contract.person{i}@example.com", "phone": f"+1 415 734 {i % 10_000:04d}",
           "first_name": "Ann", "last_name": f"Lee{i}", "country": "US"}
    kinds = [kind for kind in _RAW_KINDS if kind in caps.identifiers]
    identifiers = dict(identify(raw, kinds, platform=caps.platform, region="US").identifiers)
    if caps.consent_marker:
        identifiers["_consent"] = "granted"
    return Member(f"m{i:06d}", identifiers)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(port=0) as sb:
        yield sb


def _emulator(sandbox: Sandbox, spec: DestinationSpec) -> Any:
    return sandbox.meta if spec.mount == "" else sandbox.emulators[spec.mount]


def _connect(spec: DestinationSpec, sandbox: Sandbox) -> Destination:
    base = sandbox.url if spec.mount == "" else f"{sandbox.url}/{spec.mount}"
    config = spec.config.model_validate(spec.sandbox_destination(base))
    return build_destination(f"contract_{spec.type}", config)


@pytest.fixture(params=SANDBOXED, ids=lambda spec: spec.type)
def platform(request, sandbox, monkeypatch):
    spec: DestinationSpec = request.param
    sandbox.reset()
    for name, value in spec.sandbox_secrets.items():
        monkeypatch.setenv(name, value)
    destination = _connect(spec, sandbox)
    emulator = _emulator(sandbox, spec)
    if spec.seed_audience is not None:
        spec.seed_audience(emulator, destination.config, spec.sandbox_audience, "contract")
    yield Platform(spec, emulator, destination, AudienceRef("contract_sync", spec.sandbox_audience))
    destination.close()


def test_every_platform_with_an_emulator_is_covered():
    assert {spec.type for spec in SANDBOXED} == {spec.type for spec in SPECS.values() if spec.type != "fake"}


@pytest.mark.parametrize("op", ["add", "remove"])
def test_an_empty_batch_makes_no_call(platform, op):
    before = platform.requests
    result = getattr(platform.destination, op)(platform.audience, [])
    assert (result.op, result.outcomes, result.requests) == (op, (), 0)
    assert platform.requests == before


def test_one_outcome_per_member_in_the_members_order(platform):
    members = platform.members(5)
    added = platform.destination.add(platform.audience, members)
    assert [o.member_key for o in added.outcomes] == [m.member_key for m in members]
    assert all(o.status is RowStatus.SENT for o in added.outcomes), added.outcomes
    if platform.destination.capabilities.can_remove:
        removed = platform.destination.remove(platform.audience, members[:2])
        assert [o.member_key for o in removed.outcomes] == [m.member_key for m in members[:2]]


@pytest.mark.parametrize("op", ["add", "remove"])
def test_an_oversized_batch_is_refused_before_anything_is_sent(platform, op):
    limit = platform.destination.capabilities.max_batch
    before = platform.requests
    members = [Member(f"x{i}", {"email": "0" * 64}) for i in range(limit + 1)]
    with pytest.raises(BatchTooLargeError, match=f"at most {limit}"):
        getattr(platform.destination, op)(platform.audience, members)
    assert platform.requests == before


def test_a_row_without_a_usable_identifier_is_rejected_and_the_rest_lands(platform):
    good = platform.members(2)
    bad = Member("bad_row", {"madid": "not-a-sendable-id"} if "madid" not in platform.destination.capabilities.identifiers else {})
    result = platform.destination.add(platform.audience, [good[0], bad, good[1]])
    by_key = {o.member_key: o for o in result.outcomes}
    assert by_key["bad_row"].status is RowStatus.REJECTED and by_key["bad_row"].reason
    assert by_key[good[0].member_key].status is RowStatus.SENT and by_key[good[1].member_key].status is RowStatus.SENT


def test_a_throttle_is_retryable_with_the_platforms_wait(platform):
    stated = platform.emulator.throttle_next(7.0)
    with pytest.raises(TransientError) as caught:
        platform.destination.add(platform.audience, platform.members(1))
    assert isinstance(caught.value, RateLimited)
    assert caught.value.retry_after == (pytest.approx(stated, abs=1.0) if stated is not None else None)


def test_bad_credentials_name_the_variable_to_fix(platform, sandbox, monkeypatch):
    for name in platform.spec.sandbox_secrets:
        monkeypatch.setenv(name, "wrong-" + name.lower())
    destination = _connect(platform.spec, sandbox)
    try:
        with pytest.raises(ConfigError) as caught:
            destination.check()
    finally:
        destination.close()
    assert any(name in caught.value.message for name in platform.spec.sandbox_secrets), caught.value.message
    assert not any(value in caught.value.message for value in platform.spec.sandbox_secrets.values())


def test_check_passes_with_good_credentials(platform):
    platform.destination.check()


@pytest.mark.parametrize("platform", REMOVABLE, indirect=True, ids=lambda spec: spec.type)
def test_a_membership_remove_never_changes_consent(platform):
    members = platform.members(3)
    platform.destination.add(platform.audience, members)
    before = [platform.emulator.consent_of(platform.audience.audience_id, m.identifiers) for m in members]
    platform.destination.remove(platform.audience, members)
    after = [platform.emulator.consent_of(platform.audience.audience_id, m.identifiers) for m in members]
    assert after == before


SHARED_TABLE = [
    (PlatformResponse(429, {}, {"Retry-After": "12"}), RateLimited, 12.0),
    (PlatformResponse(503, {}), TransientError, None),
    (PlatformResponse(500, {}), TransientError, None),
    (PlatformResponse(401, {}), ConfigError, None),
    (PlatformResponse(403, {}), ConfigError, None),
]


@pytest.mark.parametrize(("response", "expected", "wait"), SHARED_TABLE, ids=lambda v: getattr(v, "status", None) or "")
def test_the_shared_status_table_holds_for_every_connector(platform, response, expected, wait):
    failure = platform.destination.classify(response)
    assert isinstance(failure, expected), failure
    assert isinstance(failure, SyncError)
    if expected is RateLimited:
        assert failure.retry_after == wait
    if expected is ConfigError and response.status == 401:
        assert any(name in failure.message for name in platform.spec.sandbox_secrets), failure.message
    assert not isinstance(failure, PermanentError)
