"""TikTokAudienceDestination over real HTTP against the sandbox's strict TikTok emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles, bad
credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are TikTok's
own: its hashing rules, its codes inside HTTP 200 answers, its batch limit, its identity model on delete,
and the emulator's refusals.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from destinations.base import AudienceRef, Member, RowStatus
from destinations.responses import PlatformResponse
from destinations.tiktok.config import CAPABILITIES, MAX_BATCH, TikTokAudienceConfig
from destinations.tiktok.connector import TikTokAudienceDestination, mapping_body
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.identity.rows import identify
from syncer.sandbox import Sandbox
from tests.destinations.helpers import assert_classified, only_emulator, statuses
from tests.syncer.test_engine import FakeClock

TOKEN = "tiktok-test-token"
ADVERTISER = "7000000000000000042"
AUDIENCE = AudienceRef(sync="vip_sync", audience_id="1790000000000042")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(i: int, *, email: bool = True, phone: bool = True) -> Member:
    ids = {}
    if email:
        ids["email"] = sha(f"person{i}@example.com")
    if phone:
        ids["phone"] = sha(f"+1415734{i:04d}")
    return Member(f"k{i}", ids)


@pytest.fixture
def sandbox(monkeypatch):
    monkeypatch.setenv("SANDBOX_TIKTOK_KEY", TOKEN)
    only_emulator(monkeypatch, "tiktok")
    sb = Sandbox(port=0).start()
    sb.tiktok.create_audience(AUDIENCE.audience_id, "vip", advertiser_id=ADVERTISER)
    yield sb
    sb.stop()


@pytest.fixture
def emulator(sandbox):
    return sandbox.tiktok


@pytest.fixture
def make(sandbox, monkeypatch, opened):
    monkeypatch.setenv("TIKTOK_TEST_TOKEN", TOKEN)

    def build(**overrides) -> TikTokAudienceDestination:
        fields = {"type": "tiktok_audience", "advertiser_id": ADVERTISER, "access_token_env": "TIKTOK_TEST_TOKEN",
                  "endpoint": sandbox.url_for("tiktok")} | overrides
        return opened(TikTokAudienceDestination(TikTokAudienceConfig(**fields), name="tiktok_vip"))

    return build


def post_mapping(sandbox, body, token=TOKEN) -> dict:
    answer = requests.post(sandbox.url_for("tiktok") + "/open_api/v1.3/segment/mapping/", json=body,
                           headers={"Access-Token": token}, timeout=10)
    assert answer.status_code == 200  # TikTok answers failures inside HTTP 200 bodies
    return answer.json()


# ----- hashing and normalisation ---------------------------------------------------------------
def test_identifiers_follow_tiktoks_rules_email_lowercased_and_phone_in_e164_with_plus():
    raw = {"email": "  Ann.Lee@Example.COM ", "phone": "+1 (415) 734-2290"}
    sent = identify(raw, ["email", "phone"], platform=CAPABILITIES.platform, region="US").identifiers
    assert sent == {"email": sha("ann.lee@example.com"), "phone": sha("+14157342290")}


def test_a_batch_names_only_the_kinds_it_carries_and_leaves_a_missing_id_empty():
    body = mapping_body("add", ADVERTISER, "55", [member(1, phone=False), member(2, email=False)])
    assert body["advertiser_ids"] == [ADVERTISER] and body["action"] == "add"
    assert body["id_schema"] == ["EMAIL_SHA256", "PHONE_SHA256"]
    assert body["batch_data"] == [[{"id": sha("person1@example.com"), "audience_ids": ["55"]}, {}],
                                  [{}, {"id": sha("+14157340002"), "audience_ids": ["55"]}]]
    assert mapping_body("remove", ADVERTISER, "55", [member(3, phone=False)])["id_schema"] == ["EMAIL_SHA256"]
    assert mapping_body("remove", ADVERTISER, "55", [member(3)])["action"] == "delete"


def test_added_members_are_held_by_their_hashed_email_and_phone(make, emulator):
    result = make().add(AUDIENCE, [member(1), member(2, email=False)])
    assert [s for _, s, _ in statuses(result)] == [RowStatus.SENT, RowStatus.SENT]
    assert sorted(emulator.members(AUDIENCE.audience_id), key=len) == [
        {"PHONE_SHA256": sha("+14157340002")},
        {"EMAIL_SHA256": sha("person1@example.com"), "PHONE_SHA256": sha("+14157340001")},
    ]


def test_a_member_without_email_or_phone_is_rejected_without_a_call(make, emulator):
    before = emulator.request_count
    result = make().add(AUDIENCE, [Member("k9", {"madid": "6d92078a-8246-4ba4-ae5b-76104861e7dc"})])
    assert statuses(result) == [("k9", RowStatus.REJECTED, "no_tiktok_identifier")]
    assert (result.requests, emulator.request_count) == (0, before)


# ----- error codes, one per class ---------------------------------------------------------------
def envelope(code: int) -> dict:
    return {"code": code, "message": "m", "request_id": "R", "data": {}}


@pytest.mark.parametrize(("response", "expected", "wait"), [
    (PlatformResponse(200, envelope(0)), None, None),
    (PlatformResponse(200, envelope(40100)), RateLimited, None),
    (PlatformResponse(200, envelope(40100), {"Retry-After": "3"}), RateLimited, 3.0),
    (PlatformResponse(200, envelope(40105)), ConfigError, None),
    (PlatformResponse(200, envelope(40104)), ConfigError, None),
    (PlatformResponse(200, envelope(40001)), ConfigError, None),
    (PlatformResponse(200, envelope(40007)), ConfigError, None),
    (PlatformResponse(200, envelope(40002)), PermanentError, None),
    (PlatformResponse(200, envelope(50002)), TransientError, None),
    (PlatformResponse(200, envelope(61234)), TransientError, None),  # unknown: adds and removes are idempotent
    (PlatformResponse(200, "<html>maintenance</html>"), TransientError, None),
    (PlatformResponse(502, "<html>Bad Gateway</html>"), TransientError, None),
])
def test_classify_reads_tiktoks_code_before_the_http_status(make, response, expected, wait):
    assert_classified(make().classify(response), expected, wait)


def test_a_wrong_token_names_the_variable_and_never_the_token(make, monkeypatch):
    monkeypatch.setenv("TIKTOK_TEST_TOKEN", "not-the-token")
    with pytest.raises(ConfigError) as caught:
        make().add(AUDIENCE, [member(1)])
    assert "TIKTOK_TEST_TOKEN" in caught.value.message and "not-the-token" not in caught.value.message
    assert "40105" in caught.value.detail


def test_an_unknown_audience_is_a_config_error_naming_it(make, emulator):
    with pytest.raises(ConfigError, match="audience 999"):
        make().add(AudienceRef("vip_sync", "999"), [member(1)])
    assert emulator.members(AUDIENCE.audience_id) == []


def test_an_advertiser_the_token_may_not_act_for_fails_check(make):
    make().check()
    with pytest.raises(ConfigError, match="lacks permission"):
        make(advertiser_id="123").check()


def test_calls_over_tiktoks_qps_are_throttled_with_code_40100(make, emulator):
    clock = FakeClock(1000.0)
    emulator.qps, emulator.clock = 2, clock
    destination = make()
    destination.add(AUDIENCE, [member(1)])
    destination.add(AUDIENCE, [member(2)])
    with pytest.raises(RateLimited) as caught:
        destination.add(AUDIENCE, [member(3)])
    assert caught.value.retry_after is None and "40100" in caught.value.detail
    clock.now += 1  # the next second
    assert statuses(destination.add(AUDIENCE, [member(3)]))[0][1] is RowStatus.SENT


# ----- batch limit ------------------------------------------------------------------------------
def test_a_full_batch_at_the_limit_lands_in_one_request(make, emulator):
    before = emulator.request_count
    result = make().add(AUDIENCE, [member(i) for i in range(MAX_BATCH)])
    assert len(result.outcomes) == MAX_BATCH and emulator.request_count == before + 1
    assert len(emulator.members(AUDIENCE.audience_id)) == MAX_BATCH


def test_the_emulator_refuses_one_row_over_the_limit_and_applies_nothing(sandbox, emulator):
    rows = [[{"id": sha(f"p{i}@example.com"), "audience_ids": [AUDIENCE.audience_id]}] for i in range(MAX_BATCH + 1)]
    answer = post_mapping(sandbox, {"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"],
                                    "batch_data": rows})
    assert answer["code"] == 40002 and str(MAX_BATCH) in answer["message"]
    assert emulator.members(AUDIENCE.audience_id) == []


# ----- remove -----------------------------------------------------------------------------------
def test_remove_takes_the_member_out_and_leaves_the_others(make, emulator):
    destination = make()
    destination.add(AUDIENCE, [member(1), member(2), member(3)])
    result = destination.remove(AUDIENCE, [member(2)])
    assert statuses(result) == [("k2", RowStatus.SENT, None)]
    held = {person["EMAIL_SHA256"] for person in emulator.members(AUDIENCE.audience_id)}
    assert held == {sha("person1@example.com"), sha("person3@example.com")}


def test_a_delete_removes_every_person_any_id_of_the_row_matches(make, emulator):
    destination = make()
    destination.add(AUDIENCE, [member(1, phone=False), member(2, email=False)])
    destination.remove(AUDIENCE, [Member("k1", {"email": sha("person1@example.com"), "phone": sha("+14157340002")})])
    assert emulator.members(AUDIENCE.audience_id) == []


def test_an_added_row_linking_two_people_makes_them_one(make, emulator):
    destination = make()
    destination.add(AUDIENCE, [member(1, phone=False), member(2, email=False)])
    destination.add(AUDIENCE, [Member("k1", {"email": sha("person1@example.com"), "phone": sha("+14157340002")})])
    assert emulator.members(AUDIENCE.audience_id) == [
        {"EMAIL_SHA256": sha("person1@example.com"), "PHONE_SHA256": sha("+14157340002")}]


# ----- the emulator's strictness ----------------------------------------------------------------
@pytest.mark.parametrize("value", ["ann.lee@example.com", sha("ann.lee@example.com").upper(),
                                   hashlib.md5(b"ann.lee@example.com").hexdigest()],
                         ids=["unhashed", "uppercase-hex", "md5"])
def test_the_emulator_refuses_an_id_that_is_not_a_lowercase_sha256_and_applies_nothing(sandbox, emulator, value):
    good = [{"id": sha("person1@example.com"), "audience_ids": [AUDIENCE.audience_id]}]
    bad = [{"id": value, "audience_ids": [AUDIENCE.audience_id]}]
    answer = post_mapping(sandbox, {"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"],
                                    "batch_data": [good, bad]})
    assert answer["code"] == 40002 and "SHA-256" in answer["message"]
    assert "ann.lee" not in answer["message"]  # the answer never echoes the value
    assert emulator.members(AUDIENCE.audience_id) == []


@pytest.mark.parametrize(("body", "code"), [
    ({"advertiser_ids": [ADVERTISER], "action": "replace", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]]}, 40002),
    ({"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL"], "batch_data": [[{}]]}, 40002),
    ({"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}, {}]]}, 40002),
    ({"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]]}, 40002),
    ({"advertiser_ids": ["1"], "action": "add", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]]}, 40001),
    ({"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]],
      "extra": 1}, 40002),
], ids=["action", "schema-name", "row-width", "row-without-id", "advertiser", "unknown-field"])
def test_the_emulator_refuses_a_malformed_request(sandbox, body, code):
    assert post_mapping(sandbox, body)["code"] == code


def test_the_emulator_wants_the_token_in_the_access_token_header(sandbox):
    body = {"advertiser_ids": [ADVERTISER], "action": "add", "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]]}
    assert post_mapping(sandbox, body, token="")["code"] == 40104
    assert post_mapping(sandbox, body, token="Bearer " + TOKEN)["code"] == 40105
