"""The data_manager transport through ``requests`` against the sandbox's Data Manager emulator: request
bodies, consent per member, fast-fail rejects, credentials and terms, and its ``classify`` where it differs
from the shared status table (which the contract suite covers)."""

from __future__ import annotations

import pytest

from destinations.base import RowStatus
from destinations.google_customer_match.data_manager import PER_MINUTE_WAIT_S
from destinations.responses import PlatformResponse
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from tests.destinations.google_customer_match.helpers import AUDIENCE, CID, DM_TOKEN, MADID, member, sha, statuses

# ----- request bodies -----------------------------------------------------------------------------

def test_data_manager_sends_contact_info_and_mobile_ids_in_separate_requests(dm, opened):
    destination = opened(dm.config())
    result = destination.add(AUDIENCE, [member(1, email=sha("a@x.com"), madid=MADID), member(2, madid=MADID.replace("6d", "7e"))])
    # the list matches by contact info: a member with only a mobile id is refused on its own
    assert result.requests == 2 and statuses(result) == {"k1": ("sent", None), "k2": ("rejected", "INVALID_USER_LIST_TYPE")}
    contact, mobile = dm.emulator.bodies[-2:]
    assert contact["audienceMembers"] == [{"userData": {"userIdentifiers": [{"emailAddress": sha("a@x.com")}]}}]
    assert contact["encoding"] == "HEX" and contact["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    assert mobile["audienceMembers"] == [{"mobileData": {"mobileIds": [MADID.replace("6d", "7e")]}}]
    assert contact["destinations"] == [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID}, "productDestinationId": "555"}]


def test_data_manager_puts_consent_on_each_granted_member(dm, opened):
    destination = opened(dm.config())
    destination.add(AUDIENCE, [member(1, "granted"), member(2, "unknown"), member(3)])
    destination.remove(AUDIENCE, [member(1, "granted")])
    ingest, remove = dm.emulator.bodies[-2:]
    assert [m.get("consent") for m in ingest["audienceMembers"]] == [
        {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}, None, None]
    assert "consent" not in remove["audienceMembers"][0] and "termsOfService" not in remove


# ----- row failures -------------------------------------------------------------------------------

def test_data_manager_fast_fail_rejects_the_named_members_and_sends_the_rest(dm, opened):
    destination = opened(dm.config())
    members = [member(i) for i in range(6)]
    members[1] = member(1, email="ab" * 16)  # hex, but not 32 bytes
    members[4] = member(4, email="not hex!")
    result = destination.add(AUDIENCE, members)
    assert {k: v for k, v in statuses(result).items() if v[0] != "sent"} == {
        "k1": ("rejected", "INVALID_SHA256_FORMAT"), "k4": ("rejected", "INVALID_HEX_ENCODING")}
    assert result.requests == 2 and result.platform_counts["rejected_members"] == 2
    assert sorted(m["hashed_email"] for m in dm.members()) == sorted(sha(f"person{i}@example.com") for i in (0, 2, 3, 5))


# ----- call failures ------------------------------------------------------------------------------

def test_data_manager_throttling_without_a_wait_waits_out_the_minute(dm, opened):
    destination = opened(dm.config())
    dm.throttle(None)
    with pytest.raises(RateLimited) as caught:
        destination.add(AUDIENCE, [member(1)])
    assert caught.value.retry_after == PER_MINUTE_WAIT_S == 60.0


def test_data_manager_auth_errors_say_what_to_fix(dm, opened, monkeypatch):
    monkeypatch.setenv("DM_TOKEN", "expired")
    with pytest.raises(ConfigError) as caught:
        opened(dm.config()).add(AUDIENCE, [member(1)])
    assert str(caught.value) == ("Google Data Manager rejected the access token of destination 'google_vip': export a fresh"
                                 " OAuth token with the https://www.googleapis.com/auth/datamanager scope as DM_TOKEN")
    monkeypatch.setenv("DM_TOKEN", DM_TOKEN)
    dm.emulator.link_manager("9999999999", CID)
    with pytest.raises(ConfigError, match="if access goes through a manager account, set login_customer_id"):
        opened(dm.config()).add(AUDIENCE, [member(1)])
    assert statuses(opened(dm.config(login_customer_id="9999999999")).add(AUDIENCE, [member(1)])) == {"k1": ("sent", None)}


def test_data_manager_needs_the_customer_match_terms(dm, opened):
    with pytest.raises(ConfigError, match="set customer_match_terms_accepted: true in destination 'google_vip'"):
        opened(dm.config(customer_match_terms_accepted=False)).add(AUDIENCE, [member(1)])
    assert dm.members() == []


# ----- classification -----------------------------------------------------------------------------

def dm_error(status: int, state: str, reasons: list[str] = (), violations: list[dict] = (), metadata: dict | None = None) -> dict:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": r, "domain": "datamanager.googleapis.com",
                **({"metadata": metadata} if metadata else {})} for r in reasons]
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": list(violations)})
    return {"error": {"code": status, "message": "m", "status": state, "details": details}}


@pytest.mark.parametrize("status, body, headers, expected, wait", [
    (200, {"requestId": "r"}, {}, None, None),
    (200, {"name": "accountTypes/GOOGLE_ADS/accounts/1234567890/userLists/555", "sizeInfo": {}}, {}, None, None),  # userLists.get
    (200, "<html>ok</html>", {}, TransientError, None),  # a proxy's page is no answer of Google's
    (429, dm_error(429, "RESOURCE_EXHAUSTED"), {}, RateLimited, 60.0),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"}]}}, {}, RateLimited, 33.0),
    (400, dm_error(400, "INVALID_ARGUMENT", ["TERMS_AND_CONDITIONS_NOT_SIGNED"]), {}, ConfigError, None),
    (400, dm_error(400, "INVALID_ARGUMENT", ["INVALID_ARGUMENT"], [{"field": "destinations[0].product_destination_id",
                                                                     "reason": "INVALID_USER_LIST_ID"}]), {}, ConfigError, None),
    (400, dm_error(400, "INVALID_ARGUMENT", ["INVALID_ARGUMENT"], [{"field": "audience_members", "reason": "TOO_MANY_AUDIENCE_MEMBERS"}]),
     {}, PermanentError, None),
    (404, "<html>Not Found</html>", {}, ConfigError, None),
    (404, dm_error(404, "NOT_FOUND", ["NOT_FOUND"]), {}, ConfigError, None),
    (418, {}, {}, TransientError, None),  # unknown: adds and removes are idempotent
])
def test_data_manager_classify_table(dm, opened, status, body, headers, expected, wait):
    failure = opened(dm.config()).classify(PlatformResponse(status, body, headers))
    assert type(failure) is expected if expected else failure is None
    if wait is not None:
        assert failure.retry_after == wait


def test_data_manager_daily_quota_waits_until_pacific_midnight(dm, opened):
    body = dm_error(429, "RESOURCE_EXHAUSTED", ["RESOURCE_EXHAUSTED"], metadata={"quota_limit": "IngestionMutateRequestsPerDayPerProject"})
    failure = opened(dm.config()).classify(PlatformResponse(429, body))
    assert isinstance(failure, RateLimited) and 0 < failure.retry_after <= 24 * 3600 + 3600
