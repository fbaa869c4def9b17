"""IterableListDestination over real HTTP against the sandbox's strict Iterable emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles,
bad credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are Iterable's own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.iterable.config import MAX_SUBSCRIBERS, IterableListConfig
from destinations.iterable.connector import IterableListDestination
from destinations.responses import PlatformResponse
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import assert_classified, by_email, statuses

KEY = "sandbox-iterable-key"
LIST_ID = 1001
AUDIENCE = AudienceRef(sync="vip_sync", audience_id=str(LIST_ID))
NEWSLETTER = 42  # a message type id


@pytest.fixture
def sandbox(sandbox):
    sandbox.iterable.create_list(LIST_ID, "vip")
    return sandbox


def config(url: str, **overrides) -> IterableListConfig:
    return IterableListConfig(**({"type": "iterable_list", "api_key_env": "ITERABLE_TEST_KEY", "endpoint": url} | overrides))


@pytest.fixture
def make(sandbox, monkeypatch, opened):
    monkeypatch.setenv("ITERABLE_TEST_KEY", KEY)

    def build(**overrides) -> IterableListDestination:
        return opened(IterableListDestination(config(sandbox.url_for("iterable"), **overrides), name="iterable_main"))

    return build


@pytest.fixture
def dest(make):
    return make()


@pytest.fixture
def offline(monkeypatch, opened) -> IterableListDestination:
    """A connector that is never called: for ``classify``."""
    monkeypatch.setenv("ITERABLE_TEST_KEY", KEY)
    return opened(IterableListDestination(config("https://api.iterable.com"), name="iterable_main"))


def seed_consent(iterable) -> None:
    iterable.add_user(email="person1@example.com", subscribed_message_type_ids=[NEWSLETTER])
    iterable.add_user(email="person2@example.com", unsubscribed_channel_ids=[7], unsubscribed_message_type_ids=[NEWSLETTER])
    iterable.add_user(email="person3@example.com", user_id="u-3")


def test_is_a_destination_with_declared_limits():
    caps = IterableListDestination.capabilities
    assert issubclass(IterableListDestination, Destination) and IterableListDestination.kind == "iterable_list"
    assert (caps.platform, caps.channel, caps.max_batch, caps.can_remove) == ("plain", "email", 1000, True)
    assert caps.identifiers == {"email", "external_id"} and not caps.consent_marker


def test_adds_and_removes_land_and_consent_never_changes(sandbox, dest):
    iterable = sandbox.iterable
    seed_consent(iterable)
    before = iterable.subscription_states()
    members = [by_email(1), by_email(2), Member("k3", {"external_id": "u-3"}), by_email(4)]
    added = dest.add(AUDIENCE, members)
    assert added.outcomes == tuple(RowOutcome(m.member_key, RowStatus.SENT) for m in members) and added.requests == 1
    assert iterable.list_members(LIST_ID) == {f"person{i}@example.com" for i in (1, 2, 3, 4)}

    removed = dest.remove(AUDIENCE, members[:3])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 3
    assert iterable.list_members(LIST_ID) == {"person4@example.com"}
    after = iterable.subscription_states()
    assert {k: after[k] for k in before} == before
    assert after["person4@example.com"] == {"unsubscribedChannelIds": [], "unsubscribedMessageTypeIds": [], "subscribedMessageTypeIds": []}
    unsubscribe = iterable.payloads[-1]
    assert unsubscribe["channelUnsubscribe"] is False and "campaignId" not in unsubscribe
    assert unsubscribe["subscribers"] == [{"email": "person1@example.com"}, {"email": "person2@example.com"}, {"userId": "u-3"}]


def test_user_ids_are_sent_when_preferred_or_when_there_is_no_email(sandbox, make):
    iterable = sandbox.iterable
    make().add(AUDIENCE, [Member("k1", {"external_id": "u-1"})])
    assert iterable.payloads[-1]["subscribers"] == [{"userId": "u-1", "preferUserId": True}]
    make(prefer_user_id=True).add(AUDIENCE, [Member("k2", {"external_id": "u-2", "email": "person2@example.com"})])
    assert iterable.payloads[-1]["subscribers"] == [{"userId": "u-2", "preferUserId": True}]
    assert iterable.list_members(LIST_ID) == {"u-1", "u-2"}
    make().remove(AUDIENCE, [Member("k1", {"external_id": "u-1"})])
    assert iterable.payloads[-1]["subscribers"] == [{"userId": "u-1"}]
    assert iterable.list_members(LIST_ID) == {"u-2"}


def test_a_full_batch_is_one_request(sandbox, dest):
    result = dest.add(AUDIENCE, [by_email(i) for i in range(MAX_SUBSCRIBERS)])
    assert result.requests == 1 and {o.status for o in result.outcomes} == {RowStatus.SENT}
    assert [rows for _, _, rows in sandbox.iterable.requests] == [1000]
    assert result.platform_counts == {"successCount": 1000, "failCount": 0, "unmapped_failures": 0}


def test_client_side_pacing_keeps_under_the_platform_window(sandbox, make):
    sandbox.iterable.rate_limit = (15, 0.5)  # burst 10 + 10/s x 0.5 s = 15: the emulator must never say 429
    dest = make()
    started = time.monotonic()
    for i in range(18):
        dest.add(AUDIENCE, [by_email(i)])
    assert time.monotonic() - started >= 0.7  # (18 - 10 burst) / 10 per s
    assert len(sandbox.iterable.list_members(LIST_ID)) == 18


def test_per_row_rejections_carry_iterable_reasons(sandbox, dest):
    iterable = sandbox.iterable
    iterable.add_user(email="person5@example.com", user_id="u-5")
    iterable.forget(email="gone@example.com")
    members = [by_email(1), Member("bad", {"email": "not-an-email"}), Member("forgotten", {"email": "gone@example.com"}),
               Member("padded", {"external_id": " u-9"}), Member("known_id", {"external_id": "u-5"}),
               Member("unknown_user", {"external_id": "u-new"}), Member("none", {"first_name": "Ann"})]
    dest.add(AUDIENCE, [by_email(5)])
    result = dest.add(AUDIENCE, members)
    assert statuses(result) == [
        ("k1", RowStatus.SENT, None),
        ("bad", RowStatus.REJECTED, "iterable: invalidEmails"),
        ("forgotten", RowStatus.REJECTED, "iterable: forgottenEmails"),
        ("padded", RowStatus.REJECTED, "iterable: invalidUserIds"),
        ("known_id", RowStatus.SENT, None),  # u-5 belongs to person5: a plain subscribe
        ("unknown_user", RowStatus.SENT, None),  # preferUserId creates the user
        ("none", RowStatus.REJECTED, "no_supported_identifier"),
    ]
    assert result.platform_counts == {"successCount": 3, "failCount": 3, "unmapped_failures": 0}


def test_update_existing_users_only_rejects_unknown_users_as_not_found(sandbox, make):
    sandbox.iterable.add_user(email="person1@example.com")
    result = make(update_existing_users_only=True).add(AUDIENCE, [by_email(1), by_email(2), Member("u", {"external_id": "u-2"})])
    assert statuses(result) == [("k1", RowStatus.SENT, None), ("k2", RowStatus.REJECTED, "iterable: notFoundEmails"),
                                ("u", RowStatus.REJECTED, "iterable: notFoundUserIds")]
    assert sandbox.iterable.payloads[-1]["updateExistingUsersOnly"] is True
    assert sandbox.iterable.list_members(LIST_ID) == {"person1@example.com"}


def test_removing_someone_iterable_does_not_know_is_done_not_rejected(sandbox, dest):
    sandbox.iterable.forget(email="gone@example.com")
    result = dest.remove(AUDIENCE, [by_email(8), Member("gone", {"email": "gone@example.com"}), Member("bad", {"email": "x@"})])
    assert statuses(result) == [("k8", RowStatus.SENT, None), ("gone", RowStatus.SENT, None),
                                ("bad", RowStatus.REJECTED, "iterable: invalidEmails")]
    assert result.platform_counts["unmapped_failures"] == 0


def test_mixed_case_echoes_still_map_to_their_rows(sandbox, dest):
    body = {"successCount": 1, "failCount": 1, "failedUpdates": {"invalidUserIds": ["user_999"]}}
    sandbox.iterable.inject_http(status=200, times=1, body=body)
    result = dest.add(AUDIENCE, [Member("a", {"external_id": "User_999"}), by_email(1)])
    assert statuses(result) == [("a", RowStatus.REJECTED, "iterable: invalidUserIds"), ("k1", RowStatus.SENT, None)]


def test_failures_the_lists_do_not_name_are_counted(sandbox, dest):
    sandbox.iterable.inject_http(status=200, times=1, body={"successCount": 1, "failCount": 1, "failedUpdates": {}})
    result = dest.add(AUDIENCE, [by_email(1), by_email(2)])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT] * 2 and result.platform_counts["unmapped_failures"] == 1


def test_missing_key_variable_fails_at_construction(sandbox, monkeypatch):
    monkeypatch.delenv("ITERABLE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="ITERABLE_TEST_KEY"):
        IterableListDestination(config(sandbox.url_for("iterable")))


def test_check_verifies_the_list(sandbox, dest):
    dest.check(AUDIENCE)
    with pytest.raises(ConfigError, match="list 2002"):
        dest.check(AudienceRef("s", "2002"))


def test_unknown_or_malformed_list_is_a_config_error(sandbox, dest):
    with pytest.raises(ConfigError, match="list 2002"):
        dest.add(AudienceRef("s", "2002"), [by_email(1)])
    count = sandbox.iterable.request_count
    with pytest.raises(ConfigError, match="not an Iterable list id"):
        dest.add(AudienceRef("s", "vip-list"), [by_email(1)])
    assert sandbox.iterable.request_count == count


def test_a_batch_of_unsendable_members_makes_no_request(sandbox, dest):
    only_phone = dest.remove(AUDIENCE, [Member("k1", {"phone": "+14155550101"})])
    assert only_phone.requests == 0 and only_phone.outcomes[0].reason == "no_supported_identifier"
    assert sandbox.iterable.request_count == 0


def test_unreachable_endpoint_is_transient_and_names_it(monkeypatch):
    monkeypatch.setenv("ITERABLE_TEST_KEY", KEY)
    dest = IterableListDestination(config("http://127.0.0.1:9/iterable"))
    with pytest.raises(TransientError, match="127.0.0.1:9"):
        dest.add(AUDIENCE, [by_email(1)])


@pytest.mark.parametrize("status, body, expected", [
    (200, {"successCount": 1, "failCount": 0, "failedUpdates": {}}, None),
    (200, {"successCount": 0, "failCount": 1, "failedUpdates": {"invalidEmails": ["x@"]}}, None),
    (200, {"lists": []}, None),
    (200, {"code": "Success", "msg": ""}, None),
    (200, "<html>proxy</html>", TransientError),
    (200, {"code": "GenericError", "msg": "odd"}, PermanentError),
    (400, {"code": "BadApiKey", "msg": "Invalid API key"}, ConfigError),
    (400, {"code": "Forbidden", "msg": "no"}, ConfigError),
    (404, {"code": "NotFound", "msg": "List not found"}, ConfigError),
    (400, {"code": "NotFound", "msg": "List not found"}, ConfigError),
    (400, {"code": "BatchTooLarge", "msg": "too many"}, PermanentError),
    (400, {"code": "RateLimitExceeded", "msg": "Exceeded rate limit"}, RateLimited),
])
def test_classify_reads_iterable_codes_first(offline, status, body, expected):
    assert_classified(offline.classify(PlatformResponse(status, body), list_id=LIST_ID), expected)


def test_classify_messages_tell_the_operator_what_to_fix(offline):
    assert "ITERABLE_TEST_KEY" in str(offline.classify(PlatformResponse(400, {"code": "BadApiKey"})))
    assert "list 1001" in str(offline.classify(PlatformResponse(404, {"code": "NotFound"}), list_id=LIST_ID))
    assert "list 1001" in str(offline.classify(PlatformResponse(404, "Not Found"), list_id=LIST_ID))
    throttled = offline.classify(PlatformResponse(429, {"code": "RateLimitExceeded"}, {"Retry-After": "9"}))
    assert throttled.retry_after == 9.0
    refused = offline.classify(PlatformResponse(400, {"code": "BadParams", "msg": "bad a@example.com"}), list_id=LIST_ID)
    assert "a@example.com" not in str(refused) + (refused.detail or "")


def test_engine_run_mirrors_the_segment_into_the_list(tmp_path: Path, sandbox, monkeypatch):
    monkeypatch.setenv("ITERABLE_TEST_KEY", KEY)
    iterable = sandbox.iterable
    iterable.add_user(email="person2@example.com", unsubscribed_message_type_ids=[NEWSLETTER])
    iterable.add_user(email="person3@example.com", unsubscribed_channel_ids=[1])
    before = iterable.subscription_states()
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)] + [person(6, in_segment=False)])
    destination = f"type: iterable_list\napi_key_env: ITERABLE_TEST_KEY\nendpoint: {sandbox.url_for('iterable')}\n"
    root = write_project(tmp_path, destination=destination, sync_extra="channel: ads\n")
    [report] = Engine(load_project(root)).run()
    assert (report.status, report.added, report.removed, report.rejected) == ("ok", 5, 0, 0)
    assert iterable.list_members(LIST_ID) == {f"person{i}@example.com" for i in range(1, 6)}

    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in (1, 3, 4, 5, 6)])  # 2 leaves, 6 joins
    [again] = Engine(load_project(root)).run()
    assert (again.status, again.added, again.removed) == ("ok", 1, 1)
    assert iterable.list_members(LIST_ID) == {f"person{i}@example.com" for i in (1, 3, 4, 5, 6)}
    after = iterable.subscription_states()
    assert {k: after[k] for k in before} == before
