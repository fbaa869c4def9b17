"""BrazeDestination over real HTTP against the sandbox's strict Braze emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles,
bad credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are Braze's own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.braze.config import BURST, RATE_PER_SECOND, WINDOW_LIMIT, WINDOW_S, BrazeConfig
from destinations.braze.connector import BrazeDestination
from destinations.registry import capabilities_of
from destinations.responses import PlatformResponse
from syncer.delivery.engine import Engine
from syncer.errors import BatchTooLargeError, ConfigError, PermanentError, RateLimited, TransientError
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import assert_classified, by_email, statuses

KEY = "sandbox-braze-key"
AUDIENCE = AudienceRef(sync="vip_sync", audience_id="in_vip_audience")
GROUP = "5c4a2b7e-0000-4000-8000-00000000beef"


def config(url: str, **overrides) -> BrazeConfig:
    return BrazeConfig(**({"type": "braze", "api_key_env": "BRAZE_TEST_KEY", "endpoint": url} | overrides))


@pytest.fixture
def make(sandbox, monkeypatch, opened):
    monkeypatch.setenv("BRAZE_TEST_KEY", KEY)

    def build(**overrides) -> BrazeDestination:
        return opened(BrazeDestination(config(sandbox.url_for("braze"), **overrides), name="braze_main"))

    return build


@pytest.fixture
def dest(make):
    return make()


@pytest.fixture
def offline(monkeypatch, opened) -> BrazeDestination:
    """A connector that is never called: for ``classify``."""
    monkeypatch.setenv("BRAZE_TEST_KEY", KEY)
    return opened(BrazeDestination(config("https://rest.iad-01.braze.com"), name="braze_main"))


def seed_consent(braze) -> None:
    """Profiles with every kind of consent state, to prove syncs never change them."""
    braze.create_subscription_group(GROUP)
    braze.add_user(email="person1@example.com", email_subscribe="opted_in", subscription_groups={GROUP: "subscribed"})
    braze.add_user(email="person2@example.com", email_subscribe="unsubscribed", subscription_groups={GROUP: "unsubscribed"})
    braze.add_user(external_id="u-3", email="person3@example.com", email_subscribe="subscribed")


def test_is_a_destination_with_declared_limits():
    caps = BrazeDestination.capabilities
    assert issubclass(BrazeDestination, Destination) and BrazeDestination.kind == "braze"
    assert (caps.platform, caps.channel, caps.max_batch, caps.can_remove) == ("plain", "email", 75, True)
    assert caps.identifiers == {"external_id", "email", "phone"} and caps.consent_marker  # _consent drives group subscribes
    assert BURST + RATE_PER_SECOND * WINDOW_S <= WINDOW_LIMIT  # no 3-second window can exceed 3,000 requests


def test_adds_and_removes_land_and_consent_never_changes(sandbox, dest):
    braze = sandbox.braze
    seed_consent(braze)
    before = braze.subscription_states()
    members = [by_email(1), by_email(2), Member("k3", {"external_id": "u-3", "email": "other@example.com"}),
               Member("k4", {"phone": "+14155550104"})]
    added = dest.add(AUDIENCE, members)
    assert added.outcomes == tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members) and added.requests == 1
    assert braze.attribute_members("in_vip_audience") == {"person1@example.com", "person2@example.com", "u-3", "+14155550104"}
    assert braze.user(external_id="u-3")["email"] == "person3@example.com"  # one identifier per object: email untouched

    removed = dest.remove(AUDIENCE, members[:3])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 3
    assert braze.attribute_members("in_vip_audience") == {"+14155550104"}
    assert braze.attribute_values("in_vip_audience") == {
        "person1@example.com": False, "person2@example.com": False, "u-3": False, "+14155550104": True}
    after = braze.subscription_states()
    assert {k: after[k] for k in before} == before  # opted_in stays opted_in, unsubscribed stays unsubscribed
    assert after["+14155550104"] == {"email_subscribe": "subscribed", "subscription_groups": {}}  # Braze's default, untouched
    for payload in braze.payloads:
        for obj in payload["attributes"]:
            assert "email_subscribe" not in obj and "subscription_groups" not in obj
    assert all(obj["_update_existing_only"] is True for obj in braze.payloads[-1]["attributes"])


def test_a_remove_never_creates_a_profile(sandbox, dest):
    result = dest.remove(AUDIENCE, [by_email(9), Member("k10", {"external_id": "nobody"})])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT] * 2
    assert sandbox.braze.users == {}


def test_update_existing_only_never_creates_a_profile_on_add(sandbox, make):
    sandbox.braze.add_user(email="person1@example.com")
    make(update_existing_only=True).add(AUDIENCE, [by_email(1), by_email(2)])
    assert sandbox.braze.attribute_members("in_vip_audience") == {"person1@example.com"}
    assert len(sandbox.braze.users) == 1


def test_subscription_group_subscribes_on_add_with_granted_consent_only_and_never_unsubscribes(sandbox, make):
    braze = sandbox.braze
    seed_consent(braze)
    dest = make(subscription_groups={"in_vip_audience": GROUP})
    granted = by_email(3, _consent="granted")
    dest.add(AUDIENCE, [by_email(2), granted, by_email(5, _consent="granted"), by_email(6)])
    assert braze.subscription_state(email="person2@example.com")["subscription_groups"] == {GROUP: "unsubscribed"}
    assert braze.subscription_state(email="person3@example.com")["subscription_groups"] == {GROUP: "subscribed"}
    assert braze.subscription_state(email="person5@example.com")["subscription_groups"] == {GROUP: "subscribed"}
    assert braze.subscription_state(email="person6@example.com")["subscription_groups"] == {}
    before = braze.subscription_states()
    dest.remove(AUDIENCE, [by_email(2), granted, by_email(5, _consent="granted"), by_email(6)])
    assert braze.subscription_states() == before
    assert braze.attribute_members("in_vip_audience") == set()
    dest.add(AudienceRef("other_sync", "in_other_audience"), [by_email(6, _consent="granted")])  # no group mapped
    assert braze.subscription_state(email="person6@example.com")["subscription_groups"] == {}


def test_the_configured_object_limit_is_the_batch_limit_and_a_batch_is_one_request(sandbox, make):
    braze = sandbox.braze
    assert capabilities_of(config("http://unused", max_objects_per_request=50)).max_batch == 50  # without the connector
    small = make(max_objects_per_request=50)
    assert small.capabilities.max_batch == 50 and BrazeDestination.capabilities.max_batch == 75
    with pytest.raises(BatchTooLargeError, match="at most 50"):
        small.add(AUDIENCE, [by_email(i) for i in range(51)])
    assert braze.request_count == 0
    result = make().add(AUDIENCE, [by_email(i) for i in range(75)])
    assert result.requests == 1 and {o.status for o in result.outcomes} == {RowStatus.SENT}
    assert small.remove(AUDIENCE, [by_email(i) for i in range(50)]).requests == 1
    assert [rows for _, _, rows in braze.requests] == [75, 50]
    assert len(braze.attribute_members("in_vip_audience")) == 25


def test_429_without_retry_after_waits_for_the_rate_limit_reset(sandbox, dest):
    sandbox.braze.rate_limit = (2, 30.0)
    dest.add(AUDIENCE, [by_email(1)])
    dest.add(AUDIENCE, [by_email(2)])
    with pytest.raises(RateLimited) as info:
        dest.add(AUDIENCE, [by_email(3)])
    assert 25.0 <= info.value.retry_after <= 31.0


def test_client_side_pacing_keeps_under_the_platform_window(sandbox, make):
    sandbox.braze.rate_limit = (30, 0.5)  # burst 20 + 20/s x 0.5 s = 30: the emulator must never say 429
    dest = make(requests_per_second=20)
    started = time.monotonic()
    for i in range(35):
        dest.add(AUDIENCE, [by_email(i)])
    assert time.monotonic() - started >= 0.7  # (35 - 20 burst) / 20 per s
    assert len(sandbox.braze.attribute_members("in_vip_audience")) == 35


def test_per_row_rejections_carry_braze_reasons(sandbox, make):
    sandbox.braze.create_subscription_group(GROUP)
    dest = make(subscription_groups={"in_vip_audience": "no-such-group"})
    members = [by_email(1), Member("bad_email", {"email": "not-an-email"}), Member("bad_phone", {"phone": "+1555"}),
               by_email(4, _consent="granted"), Member("no_id", {"first_name": "Ann"})]
    result = dest.add(AUDIENCE, members)
    assert statuses(result) == [
        ("k1", RowStatus.SENT, None),
        ("bad_email", RowStatus.REJECTED, "braze: Invalid email address"),
        ("bad_phone", RowStatus.REJECTED, "braze: Invalid phone number; expected E.164"),
        ("k4", RowStatus.REJECTED, "braze: Invalid subscription_group_id"),
        ("no_id", RowStatus.REJECTED, "no_supported_identifier"),
    ]
    assert result.platform_counts == {"attributes_processed": 1, "unmapped_errors": 0}
    assert sandbox.braze.attribute_members("in_vip_audience") == {"person1@example.com"}


def test_an_error_without_index_is_counted_not_guessed(sandbox, dest):
    body = {"message": "success", "errors": [{"type": "something odd about person9@example.com"}]}
    sandbox.braze.inject_http(status=201, times=1, body=body)
    result = dest.add(AUDIENCE, [by_email(1), by_email(2)])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT] * 2
    assert result.platform_counts["unmapped_errors"] == 1


def test_queued_is_accepted(sandbox, dest):
    sandbox.braze.queued = True
    assert dest.add(AUDIENCE, [by_email(1)]).outcomes[0].status is RowStatus.SENT
    assert sandbox.braze.attribute_members("in_vip_audience") == {"person1@example.com"}


def test_key_without_permission_is_a_config_error(sandbox, dest):
    sandbox.braze.permissions.clear()
    with pytest.raises(ConfigError, match="users.track") as info:
        dest.remove(AUDIENCE, [by_email(1)])
    assert "BRAZE_TEST_KEY" in str(info.value)
    with pytest.raises(ConfigError, match="users.track"):
        dest.check()


def test_missing_key_variable_fails_at_construction(sandbox, monkeypatch):
    monkeypatch.delenv("BRAZE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="BRAZE_TEST_KEY"):
        BrazeDestination(config(sandbox.url_for("braze")))


def test_check_accepts_a_valid_key_and_attribute(sandbox, dest):
    dest.check(AUDIENCE)


def test_a_batch_of_unsendable_members_makes_no_request(sandbox, dest):
    only_names = dest.add(AUDIENCE, [Member("k1", {"first_name": "Ann"})])
    assert only_names.requests == 0 and only_names.outcomes[0].reason == "no_supported_identifier"
    assert sandbox.braze.request_count == 0


@pytest.mark.parametrize("audience_id", ["email_subscribe", "subscription_groups", "email", "$revenue", "x" * 256])
def test_an_audience_id_that_is_not_a_custom_attribute_is_refused_before_sending(sandbox, dest, audience_id):
    with pytest.raises(ConfigError, match="custom attribute"):
        dest.add(AudienceRef("s", audience_id), [by_email(1)])
    with pytest.raises(ConfigError):
        dest.check(AudienceRef("s", audience_id))
    assert sandbox.braze.request_count == 0


def test_unreachable_endpoint_is_transient_and_names_it(monkeypatch):
    monkeypatch.setenv("BRAZE_TEST_KEY", KEY)
    dest = BrazeDestination(config("http://127.0.0.1:9/braze"))
    with pytest.raises(TransientError, match="127.0.0.1:9"):
        dest.add(AUDIENCE, [by_email(1)])


@pytest.mark.parametrize("status, body, expected", [
    (201, {"message": "success"}, None),
    (201, {"message": "success", "errors": [{"type": "x", "input_array": "attributes", "index": 0}]}, None),
    (202, {"message": "queued"}, None),
    (200, "<html>proxy</html>", TransientError),
    (200, {"message": "something else"}, TransientError),
    (400, {"message": "Max Input Length Exceeded"}, PermanentError),
    (404, {"message": "Unknown REST API Key"}, ConfigError),
])
def test_classify_reads_braze_answers_first(offline, status, body, expected):
    assert_classified(offline.classify(PlatformResponse(status, body)), expected)


def test_classify_reads_the_rate_limit_reset_and_tells_the_operator_what_to_fix(offline):
    reset = str(int(time.time()) + 20)
    assert 18.0 <= offline.classify(PlatformResponse(429, {}, {"x-ratelimit-reset": reset})).retry_after <= 21.0
    assert offline.classify(PlatformResponse(429, {}, {"Retry-After": "12", "x-ratelimit-reset": reset})).retry_after == 12.0
    unknown_here = str(offline.classify(PlatformResponse(404, {"message": "Unknown REST API Key"})))
    assert "BRAZE_TEST_KEY" in unknown_here and "rest.iad-01.braze.com" in unknown_here
    refused = offline.classify(PlatformResponse(400, {"message": "bad person1@example.com"}))
    assert "person1@example.com" not in str(refused) + (refused.detail or "")


def test_engine_run_mirrors_the_segment_into_the_attribute(tmp_path: Path, sandbox, monkeypatch):
    monkeypatch.setenv("BRAZE_TEST_KEY", KEY)
    braze = sandbox.braze
    braze.add_user(email="person2@example.com", email_subscribe="opted_in")
    braze.add_user(email="person3@example.com", email_subscribe="unsubscribed")
    before = braze.subscription_states()
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)] + [person(6, in_segment=False)])
    destination = f"type: braze\napi_key_env: BRAZE_TEST_KEY\nendpoint: {sandbox.url_for('braze')}\n"
    root = write_project(tmp_path, destination=destination, sync_extra="send_unknown_consent: true\n")
    [report] = Engine(load_project(root)).run()
    assert (report.status, report.added, report.removed, report.rejected) == ("ok", 5, 0, 0)
    assert braze.attribute_members("1001") == {f"person{i}@example.com" for i in range(1, 6)}

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in (1, 3, 4, 5, 6)])  # 2 leaves, 6 joins
    [again] = Engine(load_project(root)).run()
    assert (again.status, again.added, again.removed) == ("ok", 1, 1)
    assert braze.attribute_members("1001") == {f"person{i}@example.com" for i in (1, 3, 4, 5, 6)}
    assert braze.attribute_values("1001")["person2@example.com"] is False
    after = braze.subscription_states()
    assert {k: after[k] for k in before} == before


def test_engine_subscribes_granted_members_to_the_group_and_a_remove_leaves_it(tmp_path: Path, sandbox, monkeypatch):
    monkeypatch.setenv("BRAZE_TEST_KEY", KEY)
    braze = sandbox.braze
    braze.create_subscription_group(GROUP)
    braze.add_user(email="person3@example.com", subscription_groups={GROUP: "unsubscribed"})
    rows = [person(1), person(2, ads_consent=None), person(3, ads_consent=None), person(4, ads_consent=False)]
    write_customers(tmp_path / "warehouse.duckdb", rows)
    destination = (f"type: braze\napi_key_env: BRAZE_TEST_KEY\nendpoint: {sandbox.url_for('braze')}\n"
                   f"subscription_groups: {{'1001': '{GROUP}'}}\n")
    root = write_project(tmp_path, destination=destination, sync_extra="channel: ads\n")  # NULL consent sent, FALSE not
    [report] = Engine(load_project(root)).run()
    assert (report.status, report.added) == ("ok", 3)
    assert braze.attribute_members("1001") == {"person1@example.com", "person2@example.com", "person3@example.com"}
    groups = {k: v["subscription_groups"] for k, v in braze.subscription_states().items()}
    assert groups == {"person1@example.com": {GROUP: "subscribed"}, "person2@example.com": {},
                      "person3@example.com": {GROUP: "unsubscribed"}}  # unknown consent never subscribes

    write_customers(tmp_path / "warehouse.duckdb", [person(1, in_segment=False), person(3, ads_consent=None)])
    [again] = Engine(load_project(root)).run()
    assert (again.status, again.removed) == ("ok", 2)
    assert braze.attribute_members("1001") == {"person3@example.com"}
    assert {k: v["subscription_groups"] for k, v in braze.subscription_states().items()} == groups
