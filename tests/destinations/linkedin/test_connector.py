"""LinkedInAudienceDestination over real HTTP against the sandbox's strict LinkedIn emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles, bad
credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are LinkedIn's
own: its hashing rule, its headers, its per-element answers, its batch limit, its identity model on remove,
and the emulator's refusals.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from destinations.base import AudienceRef, Member, RowStatus
from destinations.linkedin.config import CAPABILITIES, MAX_BATCH, LinkedInAudienceConfig
from destinations.linkedin.connector import LinkedInAudienceDestination, users_body
from destinations.responses import PlatformResponse
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.identity.rows import identify
from syncer.sandbox import Sandbox
from tests.destinations.helpers import assert_classified, only_emulator, statuses
from tests.syncer.test_engine import FakeClock

TOKEN = "linkedin-test-token"
ACCOUNT = "500000042"
AUDIENCE = AudienceRef(sync="vip_sync", audience_id="8000000000000042")
HEADERS = {"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": "202607", "X-Restli-Protocol-Version": "2.0.0",
           "X-RestLi-Method": "BATCH_CREATE"}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(i: int) -> Member:
    return Member(f"k{i}", {"email": sha(f"person{i}@example.com")})


def held(emulator) -> set[str]:
    return {value for person in emulator.members(AUDIENCE.audience_id) for _, value in person}


@pytest.fixture
def sandbox(monkeypatch):
    monkeypatch.setenv("SANDBOX_LINKEDIN_KEY", TOKEN)
    only_emulator(monkeypatch, "linkedin")
    sb = Sandbox(port=0).start()
    sb.linkedin.create_segment(AUDIENCE.audience_id, "vip", account_id=ACCOUNT)
    yield sb
    sb.stop()


@pytest.fixture
def emulator(sandbox):
    return sandbox.linkedin


@pytest.fixture
def make(sandbox, monkeypatch, opened):
    monkeypatch.setenv("LINKEDIN_TEST_TOKEN", TOKEN)

    def build(**overrides) -> LinkedInAudienceDestination:
        fields = {"type": "linkedin_audience", "ad_account_id": ACCOUNT, "access_token_env": "LINKEDIN_TEST_TOKEN",
                  "endpoint": sandbox.url_for("linkedin")} | overrides
        return opened(LinkedInAudienceDestination(LinkedInAudienceConfig(**fields), name="linkedin_vip"))

    return build


def post_users(sandbox, body, headers=HEADERS, segment=AUDIENCE.audience_id) -> requests.Response:
    return requests.post(f"{sandbox.url_for('linkedin')}/rest/dmpSegments/{segment}/users", json=body,
                         headers=headers, timeout=10)


def element(value: str, action: str = "ADD", id_type: str = "SHA256_EMAIL") -> dict:
    return {"action": action, "userIds": [{"idType": id_type, "idValue": value}]}


# ----- hashing and the request ------------------------------------------------------------------
def test_an_email_is_sent_trimmed_lowercased_and_sha256_hashed_and_nothing_else_is_taken():
    raw = {"email": "  Ann.Lee@Example.COM "}
    sent = identify(raw, ["email"], platform=CAPABILITIES.platform, region="US").identifiers
    assert sent == {"email": sha("ann.lee@example.com")}
    assert CAPABILITIES.identifiers == {"email"}  # no phone: LinkedIn has no phone user id


def test_the_body_holds_one_element_per_member_with_its_action():
    assert users_body("add", [member(1)]) == {"elements": [element(sha("person1@example.com"))]}
    assert users_body("remove", [member(2)])["elements"][0]["action"] == "REMOVE"


def test_added_members_are_held_by_their_hashed_email(make, emulator):
    result = make().add(AUDIENCE, [member(1), member(2)])
    assert [s for _, s, _ in statuses(result)] == [RowStatus.SENT, RowStatus.SENT]
    assert held(emulator) == {sha("person1@example.com"), sha("person2@example.com")}
    assert result.platform_counts == {"rows_sent": 2, "rows_accepted": 2}


def test_a_member_without_an_email_is_rejected_without_a_call(make, emulator):
    before = emulator.request_count
    result = make().add(AUDIENCE, [Member("k9", {"phone": sha("+14157340009")})])
    assert statuses(result) == [("k9", RowStatus.REJECTED, "no_linkedin_identifier")]
    assert (result.requests, emulator.request_count) == (0, before)


def test_each_element_answer_becomes_that_rows_outcome(make, emulator):
    bad = Member("bad", {"email": "person3@example.com"})  # not hashed: LinkedIn refuses this element alone
    result = make().add(AUDIENCE, [member(1), bad, member(2)])
    assert statuses(result) == [("k1", RowStatus.SENT, None), ("bad", RowStatus.REJECTED, "linkedin_invalid_value"),
                                ("k2", RowStatus.SENT, None)]
    assert held(emulator) == {sha("person1@example.com"), sha("person2@example.com")}


# ----- errors, one per class --------------------------------------------------------------------
def error(status: int, code: str) -> dict:
    return {"status": status, "serviceErrorCode": 100, "code": code, "message": "m"}


@pytest.mark.parametrize(("response", "expected", "wait"), [
    (PlatformResponse(200, {"elements": [{"status": 201}]}), None, None),
    (PlatformResponse(429, error(429, "TOO_MANY_REQUESTS")), RateLimited, None),
    (PlatformResponse(429, error(429, "TOO_MANY_REQUESTS"), {"Retry-After": "30"}), RateLimited, 30.0),
    (PlatformResponse(401, error(401, "INVALID_ACCESS_TOKEN")), ConfigError, None),
    (PlatformResponse(403, error(403, "ACCESS_DENIED")), ConfigError, None),
    (PlatformResponse(404, error(404, "NOT_FOUND")), ConfigError, None),
    (PlatformResponse(426, error(426, "NONEXISTENT_VERSION")), ConfigError, None),
    (PlatformResponse(400, error(400, "INVALID_VALUE")), PermanentError, None),
    (PlatformResponse(500, error(500, "INTERNAL_SERVER_ERROR")), TransientError, None),
    (PlatformResponse(502, "<html>Bad Gateway</html>"), TransientError, None),
])
def test_classify_follows_linkedins_http_statuses(make, response, expected, wait):
    assert_classified(make().classify(response), expected, wait)


def test_a_wrong_token_names_the_variable_and_never_the_token(make, monkeypatch):
    monkeypatch.setenv("LINKEDIN_TEST_TOKEN", "not-the-token")
    with pytest.raises(ConfigError) as caught:
        make().add(AUDIENCE, [member(1)])
    assert "LINKEDIN_TEST_TOKEN" in caught.value.message and "not-the-token" not in caught.value.message
    assert "INVALID_ACCESS_TOKEN" in caught.value.detail


def test_an_unknown_segment_is_a_config_error_naming_the_audience_id(make, emulator):
    with pytest.raises(ConfigError, match="DMP segment 999"):
        make().add(AudienceRef("vip_sync", "999"), [member(1)])
    assert held(emulator) == set()


def test_an_ad_account_the_member_may_not_use_fails_check(make):
    make().check()
    with pytest.raises(ConfigError, match="lack a permission"):
        make(ad_account_id="123").check()


def test_a_sunset_version_is_a_config_error_naming_the_setting(make, emulator):
    emulator.versions = frozenset({"202607"})
    with pytest.raises(ConfigError, match="linkedin_version"):
        make(linkedin_version="202401").check()


def test_a_malformed_request_is_permanent_and_applies_nothing(make, emulator):
    emulator.inject_http(400, body=error(400, "INVALID_VALUE"))
    with pytest.raises(PermanentError):
        make().add(AUDIENCE, [member(1)])
    assert held(emulator) == set()


def test_a_server_error_is_retried(make, emulator):
    emulator.inject_http(503)
    with pytest.raises(TransientError) as caught:
        make().add(AUDIENCE, [member(1)])
    assert not isinstance(caught.value, RateLimited)


def test_calls_over_the_per_minute_limit_are_throttled_with_429(make, emulator):
    clock = FakeClock(6000.0)
    emulator.per_minute, emulator.clock = 2, clock
    destination = make()
    destination.add(AUDIENCE, [member(1)])
    destination.add(AUDIENCE, [member(2)])
    with pytest.raises(RateLimited) as caught:
        destination.add(AUDIENCE, [member(3)])
    assert caught.value.retry_after is None and "TOO_MANY_REQUESTS" in caught.value.detail
    clock.now += 60  # the next minute
    assert statuses(destination.add(AUDIENCE, [member(3)]))[0][1] is RowStatus.SENT


# ----- batch limit ------------------------------------------------------------------------------
def test_a_full_batch_at_the_limit_lands_in_one_request(make, emulator):
    before = emulator.request_count
    result = make().add(AUDIENCE, [member(i) for i in range(MAX_BATCH)])
    assert len(result.outcomes) == MAX_BATCH and emulator.request_count == before + 1
    assert len(emulator.members(AUDIENCE.audience_id)) == MAX_BATCH


def test_the_emulator_refuses_one_element_over_the_limit_and_applies_nothing(sandbox, emulator):
    answer = post_users(sandbox, {"elements": [element(sha(f"p{i}@example.com")) for i in range(MAX_BATCH + 1)]})
    assert answer.status_code == 400 and str(MAX_BATCH) in answer.json()["message"]
    assert held(emulator) == set()


# ----- remove -----------------------------------------------------------------------------------
def test_remove_takes_the_member_out_and_leaves_the_others(make, emulator):
    destination = make()
    destination.add(AUDIENCE, [member(1), member(2), member(3)])
    result = destination.remove(AUDIENCE, [member(2)])
    assert statuses(result) == [("k2", RowStatus.SENT, None)]
    assert held(emulator) == {sha("person1@example.com"), sha("person3@example.com")}


def test_an_element_linking_two_ids_makes_one_person_and_a_remove_by_either_takes_it(sandbox, emulator):
    gaid = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    post_users(sandbox, {"elements": [element(sha("a@example.com")), element(gaid, id_type="GOOGLE_AID")]})
    linked = {"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": sha("a@example.com")},
                                           {"idType": "GOOGLE_AID", "idValue": gaid}]}
    post_users(sandbox, {"elements": [linked]})
    assert len(emulator.members(AUDIENCE.audience_id)) == 1
    post_users(sandbox, {"elements": [element(gaid, action="REMOVE", id_type="GOOGLE_AID")]})
    assert emulator.members(AUDIENCE.audience_id) == []


# ----- the emulator's strictness ----------------------------------------------------------------
@pytest.mark.parametrize("value", ["ann.lee@example.com", sha("ann.lee@example.com").upper(),
                                   hashlib.md5(b"ann.lee@example.com").hexdigest()],
                         ids=["unhashed", "uppercase-hex", "md5"])
def test_the_emulator_refuses_an_email_that_is_not_a_lowercase_sha256(sandbox, emulator, value):
    answer = post_users(sandbox, {"elements": [element(sha("person1@example.com")), element(value)]})
    assert answer.status_code == 200
    first, second = answer.json()["elements"]
    assert first == {"status": 201} and second["status"] == 400
    assert "ann.lee" not in answer.text  # the answer never echoes the value
    assert held(emulator) == {sha("person1@example.com")}


@pytest.mark.parametrize(("missing", "status", "code"), [
    ("Authorization", 401, "EMPTY_ACCESS_TOKEN"),
    ("LinkedIn-Version", 400, "VERSION_MISSING"),
    ("X-Restli-Protocol-Version", 400, "BAD_REQUEST"),
    ("X-RestLi-Method", 400, "UNSUPPORTED_METHOD"),
])
def test_the_emulator_refuses_a_request_missing_a_header(sandbox, emulator, missing, status, code):
    headers = {k: v for k, v in HEADERS.items() if k != missing}
    answer = post_users(sandbox, {"elements": [element(sha("person1@example.com"))]}, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert held(emulator) == set()


@pytest.mark.parametrize("body", [
    {"elements": [{"action": "REPLACE", "userIds": [{"idType": "SHA256_EMAIL", "idValue": "0" * 64}]}]},
    {"elements": [{"action": "ADD", "userIds": [{"idType": "PHONE", "idValue": "0" * 64}]}]},
    {"elements": [{"action": "ADD", "userIds": []}]},
    {"elements": [{"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": "0" * 64}], "phone": "1"}]},
], ids=["action", "id-type", "no-id", "unknown-key"])
def test_the_emulator_refuses_a_malformed_element_alone(sandbox, body):
    answer = post_users(sandbox, body)
    assert answer.status_code == 200 and answer.json()["elements"][0]["status"] == 400


def test_the_emulator_wants_a_bearer_token(sandbox):
    body = {"elements": [element(sha("person1@example.com"))]}
    assert post_users(sandbox, body, headers=HEADERS | {"Authorization": TOKEN}).status_code == 401
    assert post_users(sandbox, body, headers=HEADERS | {"Authorization": "Bearer wrong"}).json()["code"] == \
        "INVALID_ACCESS_TOKEN"
