"""The Data Manager emulator driven over plain HTTP through the shared sandbox server, and the membership
model both Google emulators share."""

from __future__ import annotations

import uuid

import pytest
import requests

from destinations.google_customer_match.data_manager_emulator import Membership, match_rate_bucket
from syncer.sandbox import Sandbox
from tests.destinations.google_customer_match.helpers import CID, sha

DM_KEY = "test-dm-key"


@pytest.fixture
def dm(sandbox):
    emulator = sandbox.datamanager
    emulator.reset()
    emulator.key = DM_KEY
    emulator.create_user_list(CID, "555")
    return emulator


@pytest.fixture
def http(sandbox):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DM_KEY}"
    base = sandbox.url_for("datamanager")

    def call(method: str, path: str, **kwargs):
        return session.request(method, base + path, timeout=10, **kwargs)

    yield call
    session.close()


def body(members: list[dict], **extra) -> dict:
    found = {"destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID}, "productDestinationId": "555"}],
             "audienceMembers": members, "encoding": "HEX", "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"}}
    found.update(extra)
    return found


def email_member(value: str, **extra) -> dict:
    return {"userData": {"userIdentifiers": [{"emailAddress": sha(value)}]}, **extra}


def reasons(response) -> list[str]:
    details = response.json()["error"].get("details", [])
    return [d.get("reason") for d in details if "reason" in d] + [
        v["reason"] for d in details for v in d.get("fieldViolations", [])]


def test_dm_ingest_and_remove_land(dm, http):
    address = {"address": {"givenName": sha("ann"), "familyName": sha("lee"), "regionCode": "US", "postalCode": "94045"}}
    answer = http("POST", "/v1/audienceMembers:ingest", json=body([
        email_member("a@x.com"), {"userData": {"userIdentifiers": [{"phoneNumber": sha("+14155550100")}, address]}}]))
    assert answer.status_code == 200 and uuid.UUID(answer.json()["requestId"])
    assert len(dm.members("555")) == 2
    removed = http("POST", "/v1/audienceMembers:remove", json={k: v for k, v in body([email_member("a@x.com")]).items()
                                                                  if k != "termsOfService"})
    assert removed.status_code == 200
    assert dm.members("555") == [{"hashed_phone_number": sha("+14155550100"), "address": {
        "hashed_first_name": sha("ann"), "hashed_last_name": sha("lee"), "country_code": "US", "postal_code": "94045"}}]


def test_dm_needs_the_bearer_token(dm, http, sandbox):
    answer = requests.post(sandbox.url_for("datamanager") + "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")]), timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["status"] == "UNAUTHENTICATED"
    assert dm.members("555") == []


@pytest.mark.parametrize("members, extra, status, reason", [
    ([email_member(f"p{i}@x.com") for i in range(10_001)], {}, 400, "TOO_MANY_AUDIENCE_MEMBERS"),
    ([{"userData": {"userIdentifiers": [{"emailAddress": sha(f"e{i}@x.com")} for i in range(11)]}}], {}, 400, "TOO_MANY_USER_IDENTIFIERS"),
    ([email_member("a@x.com"), {"mobileData": {"mobileIds": ["6d92078a-8246-4ba4-ae5b-76104861e7dc"]}}], {}, 400,
     "MULTIPLE_DATA_TYPES_NOT_ALLOWED"),
    ([email_member("a@x.com")], {"termsOfService": None}, 400, "TERMS_AND_CONDITIONS_NOT_SIGNED"),
    ([email_member("a@x.com")], {"encoding": None}, 400, "REQUIRED_FIELD_MISSING"),
    ([{"userData": {"userIdentifiers": [{"emailAddress": "zz"}]}}], {}, 400, "INVALID_HEX_ENCODING"),
    ([{"mobileData": {"mobileIds": ["not-a-uuid"]}}], {}, 400, "INVALID_MOBILE_ID_FORMAT"),
])
def test_dm_limits_and_formats_fail_the_request(dm, http, members, extra, status, reason):
    payload = body(members, **extra)
    payload = {k: v for k, v in payload.items() if v is not None}
    answer = http("POST", "/v1/audienceMembers:ingest", json=payload)
    assert answer.status_code == status
    assert reason in reasons(answer)
    assert dm.members("555") == []


def test_dm_fails_fast_and_names_every_bad_member(dm, http):
    members = [email_member("a@x.com"), {"userData": {"userIdentifiers": [{"emailAddress": "ab" * 16}]}}, email_member("c@x.com"),
               {"userData": {"userIdentifiers": [{"emailAddress": "ab" * 20}]}}]
    answer = http("POST", "/v1/audienceMembers:ingest", json=body(members))
    assert answer.status_code == 400
    violations = answer.json()["error"]["details"][1]["fieldViolations"]
    assert violations == [{"field": "audience_members.audience_members[1]", "reason": "INVALID_SHA256_FORMAT"},
                          {"field": "audience_members.audience_members[3]", "reason": "INVALID_SHA256_FORMAT"}]
    assert dm.members("555") == []  # nothing applied


def test_dm_refuses_unknown_fields_lists_and_accounts(dm, http):
    typo = http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")], audience_members=[]))
    assert typo.status_code == 400 and "Unknown name" in typo.json()["error"]["message"]
    wrong_list = body([email_member("a@x.com")])
    wrong_list["destinations"][0]["productDestinationId"] = "404"
    assert reasons(http("POST", "/v1/audienceMembers:ingest", json=wrong_list)) == ["INVALID_ARGUMENT", "INVALID_USER_LIST_ID"]
    other_account = body([email_member("a@x.com")])
    other_account["destinations"][0]["operatingAccount"]["accountId"] = "5555555555"
    assert http("POST", "/v1/audienceMembers:ingest", json=other_account).status_code == 403


def test_dm_managed_account_needs_its_manager_as_login_account(dm, http):
    dm.link_manager("9999999999", CID)
    assert http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")])).status_code == 403
    managed = body([email_member("a@x.com")])
    managed["destinations"][0]["loginAccount"] = {"accountType": "GOOGLE_ADS", "accountId": "9999999999"}
    assert http("POST", "/v1/audienceMembers:ingest", json=managed).status_code == 200


def test_dm_denied_consent_is_accepted_but_not_added(dm, http):
    denied = {"adUserData": "CONSENT_DENIED", "adPersonalization": "CONSENT_DENIED"}
    answer = http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com", consent=denied), email_member("b@x.com")]))
    assert answer.status_code == 200
    assert dm.members("555") == [{"hashed_email": sha("b@x.com")}]


def test_dm_injected_throttling_looks_like_google(dm, http):
    dm.inject_http(429, retry_after=17)
    answer = http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")]))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "17"
    error = answer.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["metadata"] == {"quota_limit": "IngestionMutateRequestsPerMinutePerProject"}
    dm.inject_http(503)
    assert http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")])).json()["error"]["status"] == "UNAVAILABLE"
    assert http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")])).status_code == 200


def test_dm_request_status_moves_from_processing_to_success(dm, http):
    request_id = http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")])).json()["requestId"]
    first = http("GET", "/v1/requestStatus:retrieve", params={"requestId": request_id}).json()
    assert first["requestStatusPerDestination"][0]["requestStatus"] == "PROCESSING"
    done = http("GET", "/v1/requestStatus:retrieve", params={"requestId": request_id}).json()["requestStatusPerDestination"][0]
    assert done["requestStatus"] == "SUCCESS"
    assert done["audienceMembersIngestionStatus"]["userDataIngestionStatus"]["uploadMatchRateRange"].startswith("MATCH_RATE_RANGE_")
    assert http("GET", "/v1/requestStatus:retrieve", params={"requestId": "nope"}).status_code == 404


def test_dm_admin_endpoints_and_state_survive_a_restart(dm, http, sandbox, tmp_path):
    created = requests.post(sandbox.url + "/datamanager/_sandbox/userLists", json={"accountId": CID, "userListId": "777"}, timeout=10)
    assert created.json() == {"userListId": "777"}
    http("POST", "/v1/audienceMembers:ingest", json=body([email_member("a@x.com")]))
    listed = requests.get(sandbox.url + "/datamanager/_sandbox/userLists/555", timeout=10).json()
    assert listed["members"] == [{"hashed_email": sha("a@x.com")}]
    assert requests.get(sandbox.url + "/_sandbox/datamanager", timeout=10).json()["user_lists"][0]["count"] == 1
    saved = sandbox.save(tmp_path / "state.json")
    restarted = Sandbox(port=0, state_file=saved)
    assert restarted.datamanager.members("555") == [{"hashed_email": sha("a@x.com")}]
    assert sorted(restarted.datamanager.user_lists) == ["555", "777"]


def test_membership_links_members_sharing_an_identifier():
    members = Membership(match_rate=0.5)
    members.add([("hashed_email", "a"), ("hashed_phone_number", "p")])
    members.add([("hashed_email", "b"), ("hashed_phone_number", "p")])  # same phone: one person
    assert members.members() == [{"hashed_email": ("a", "b"), "hashed_phone_number": "p"}]
    members.add([("mobile_id", "m")])
    assert members.remove([("hashed_email", "b")]) == 1
    assert members.members() == [{"mobile_id": "m"}]
    assert match_rate_bucket(0.65) == "MATCH_RANGE_61_TO_70" and match_rate_bucket(0.1, "MATCH_RATE_RANGE_") == "MATCH_RATE_RANGE_LESS_THAN_20"
    # Google's intervals: [20, 31), [31, 41) ... [61, 71), [71, 81) ... [91, 100]
    assert [match_rate_bucket(r) for r in (0.199, 0.2, 0.305, 0.705, 0.71, 0.95)] == [
        "MATCH_RANGE_LESS_THAN_20", "MATCH_RANGE_20_TO_30", "MATCH_RANGE_20_TO_30", "MATCH_RANGE_61_TO_70",
        "MATCH_RANGE_71_TO_80", "MATCH_RANGE_91_TO_100"]


MOBILE_ID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


@pytest.mark.parametrize("key_type, accepted", [("CONTACT_INFO", "userData"), ("MOBILE_ADVERTISING_ID", "mobileData"), ("CRM_ID", None)])
def test_dm_a_list_takes_members_of_its_upload_key_type_only(dm, http, key_type, accepted):
    dm.create_user_list(CID, "556", upload_key_type=key_type)
    for data_type, member in (("userData", email_member("a@x.com")), ("mobileData", {"mobileData": {"mobileIds": [MOBILE_ID]}})):
        payload = body([member, member])
        payload["destinations"][0]["productDestinationId"] = "556"
        answer = http("POST", "/v1/audienceMembers:ingest", json=payload)
        if data_type == accepted:
            assert answer.status_code == 200
            continue
        assert answer.status_code == 400
        assert answer.json()["error"]["details"][1]["fieldViolations"] == [
            {"field": f"audience_members.audience_members[{i}]", "reason": "INVALID_USER_LIST_TYPE",
             "description": "The user list type isn't applicable for this request."} for i in (0, 1)]
    assert len(dm.members("556")) == (1 if accepted else 0)


def test_dm_upload_key_types_are_set_by_the_admin_endpoint_and_survive_a_restart(dm, sandbox, tmp_path):
    created = requests.post(sandbox.url + "/datamanager/_sandbox/userLists",
                            json={"accountId": CID, "userListId": "778", "uploadKeyType": "MOBILE_ADVERTISING_ID"}, timeout=10)
    assert created.json() == {"userListId": "778"}
    assert requests.get(sandbox.url + "/datamanager/_sandbox/userLists/778", timeout=10).json()["uploadKeyType"] == "MOBILE_ADVERTISING_ID"
    assert requests.post(sandbox.url + "/datamanager/_sandbox/userLists", json={"uploadKeyType": "EMAIL"}, timeout=10).status_code == 400
    restarted = Sandbox(port=0, state_file=sandbox.save(tmp_path / "state.json"))
    assert restarted.datamanager.upload_key_types == {"555": "CONTACT_INFO", "778": "MOBILE_ADVERTISING_ID"}


# ----- userLists.get ------------------------------------------------------------------------------

USER_LIST = f"/v1/accountTypes/GOOGLE_ADS/accounts/{CID}/userLists/555"


def test_dm_user_list_get_reports_the_matched_size_as_int64_strings(dm, http):
    empty = http("GET", USER_LIST)
    assert empty.status_code == 200
    assert empty.json()["name"] == f"accountTypes/GOOGLE_ADS/accounts/{CID}/userLists/555"
    assert empty.json()["sizeInfo"] == {}  # proto3 JSON leaves a zero count out
    assert empty.json()["ingestedUserListInfo"] == {"uploadKeyTypes": ["CONTACT_ID"]}
    http("POST", "/v1/audienceMembers:ingest", json=body([email_member(f"p{i}@x.com") for i in range(200)]))
    matched = dm.user_list_size("555")
    assert 0 < matched < 200 and matched == sum(dm.user_lists["555"][1].matches(p) for p in dm.user_lists["555"][1].persons.values())
    assert http("GET", USER_LIST).json()["sizeInfo"] == {"displayNetworkMembersCount": str(matched),
                                                        "searchNetworkMembersCount": str(matched)}


def test_dm_user_list_get_answers_who_may_read_it_as_google_does(dm, http, sandbox):
    dm.create_user_list("5555555555", "777")
    not_found = http("GET", f"/v1/accountTypes/GOOGLE_ADS/accounts/{CID}/userLists/777")  # another account's list
    assert not_found.status_code == 404 and reasons(not_found) == ["NOT_FOUND"]
    assert not_found.json()["error"]["status"] == "NOT_FOUND"
    assert http("GET", f"/v1/accountTypes/GOOGLE_ADS/accounts/{CID}/userLists/999").status_code == 404
    unknown_account = http("GET", "/v1/accountTypes/GOOGLE_ADS/accounts/2222222222/userLists/555")
    assert unknown_account.status_code == 403 and unknown_account.json()["error"]["status"] == "PERMISSION_DENIED"
    assert http("GET", f"/v1/accountTypes/EMAIL/accounts/{CID}/userLists/555").status_code == 400
    assert requests.get(sandbox.url_for("datamanager") + USER_LIST, timeout=10).status_code == 401

    dm.link_manager("9999999999", CID)
    assert http("GET", USER_LIST).status_code == 403
    assert http("GET", USER_LIST, headers={"login-account": "accountTypes/GOOGLE_ADS/accounts/8888888888"}).status_code == 403
    assert http("GET", USER_LIST, headers={"login-account": "accountTypes/GOOGLE_ADS/accounts/9999999999"}).status_code == 200
    assert http("GET", USER_LIST, headers={"login-account": "9999999999"}).status_code == 400


def test_dm_a_throttled_read_names_the_management_read_quota(dm, http):
    dm.inject_http(429)
    error = http("GET", USER_LIST).json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["metadata"] == {"quota_limit": "ManagementReadRequestsPerMinutePerProject"}
    dm.inject_http(429)
    retrieve = http("GET", "/v1/requestStatus:retrieve", params={"requestId": "x"}).json()["error"]
    assert retrieve["details"][0]["metadata"] == {"quota_limit": "IngestionReadRequestsPerMinutePerProject"}
