"""The sandbox's Klaviyo emulator on its own, over raw HTTP: what the contract suite asks of it, Klaviyo's
identity model (one profile per email, phone number and external id), and the list read-back."""

from __future__ import annotations

import pytest
import requests

from syncer.sandbox import Sandbox
from tests.destinations.klaviyo.helpers import LIST


def call_headers(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {sandbox.klaviyo.key}", "revision": "2026-07-15",
            "Content-Type": "application/vnd.api+json"}


def call(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, sandbox.url_for("klaviyo") + path, json=body, headers=call_headers(sandbox), timeout=10)


def test_throttle_next_answers_as_klaviyo_throttles_once(sandbox):
    assert sandbox.klaviyo.throttle_next(6.2) == 7.0  # Klaviyo states whole seconds
    throttled = call(sandbox, "GET", "/api/profiles/")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    [error] = throttled.json()["errors"]
    assert error["code"] == "throttled" and error["detail"] == "Request was throttled. Expected available in 7 seconds."
    assert call(sandbox, "GET", "/api/profiles/").status_code == 200


def test_consent_of_reads_the_profile_identifiers_match_whatever_the_list(sandbox):
    klaviyo = sandbox.klaviyo
    klaviyo.seed_profile("person1@example.com", external_id="cust-1", email_consent="SUBSCRIBED")
    klaviyo.seed_profile(phone_number="+14155550102", sms_consent="UNSUBSCRIBED", lists=(LIST,))
    assert klaviyo.consent_of(LIST, {"email": "Person1@Example.com"}) == {"email": "SUBSCRIBED", "sms": "NEVER_SUBSCRIBED"}
    assert klaviyo.consent_of("other", {"external_id": "cust-1"}) == {"email": "SUBSCRIBED", "sms": "NEVER_SUBSCRIBED"}
    assert klaviyo.consent_of(LIST, {"phone": "+14155550102"}) == {"email": "NEVER_SUBSCRIBED", "sms": "UNSUBSCRIBED"}
    assert klaviyo.consent_of(LIST, {"email": "nobody@example.com"}) is None
    body = {"data": {"type": "profile-subscription-bulk-delete-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "person1@example.com"}}]}}}}
    assert call(sandbox, "POST", "/api/profile-subscription-bulk-delete-jobs/", body).status_code == 202
    assert klaviyo.consent_of(LIST, {"email": "person1@example.com"})["email"] == "UNSUBSCRIBED"


# ----- identity: one profile per email, per phone number and per external id ----------------------------
IDENTIFIER_VALUES = {"email": "ann@example.com", "phone_number": "+14155550100", "external_id": "crm-1"}
OTHER_VALUES = {"email": "bob@example.com", "phone_number": "+14155550199", "external_id": "crm-2"}


def create(sandbox: Sandbox, **attributes: str | None) -> requests.Response:
    return call(sandbox, "POST", "/api/profiles/", {"data": {"type": "profile", "attributes": attributes}})


def update(sandbox: Sandbox, profile_id: str, **attributes: str | None) -> requests.Response:
    return call(sandbox, "PATCH", f"/api/profiles/{profile_id}/", {"data": {"type": "profile", "id": profile_id, "attributes": attributes}})


def duplicate_of(response: requests.Response) -> str:
    """The profile a 409 ``duplicate_profile`` names, after checking the envelope is Klaviyo's."""
    assert response.status_code == 409, response.text
    [error] = response.json()["errors"]
    assert (error["code"], error["title"], error["detail"]) == (
        "duplicate_profile", "Conflict.", "A profile already exists with one of these identifiers.")
    return error["meta"]["duplicate_profile_id"]


@pytest.mark.parametrize("field", ["email", "phone_number", "external_id"])
def test_create_profile_refuses_an_identifier_another_profile_holds(sandbox, field):
    first = create(sandbox, **{field: IDENTIFIER_VALUES[field]})
    assert first.status_code == 201
    others = {k: v for k, v in OTHER_VALUES.items() if k != field}
    assert duplicate_of(create(sandbox, **{field: IDENTIFIER_VALUES[field]}, **others)) == first.json()["data"]["id"]
    assert len(sandbox.klaviyo.profiles) == 1  # nothing was created, not even with the free identifiers


def test_emails_are_one_profile_whatever_their_case(sandbox):
    first = create(sandbox, email="Ann@Example.com").json()["data"]["id"]
    assert duplicate_of(create(sandbox, email="ann@example.COM")) == first


@pytest.mark.parametrize("field", ["email", "phone_number", "external_id"])
def test_update_profile_refuses_an_identifier_another_profile_holds(sandbox, field):
    holder = create(sandbox, **IDENTIFIER_VALUES).json()["data"]["id"]
    other = create(sandbox, **OTHER_VALUES).json()["data"]["id"]
    assert duplicate_of(update(sandbox, other, **{field: IDENTIFIER_VALUES[field]})) == holder
    assert sandbox.klaviyo.profiles[other][field] == OTHER_VALUES[field]  # unchanged
    assert update(sandbox, other, **{field: OTHER_VALUES[field]}).status_code == 200  # its own value is no conflict


def test_update_profile_clears_with_null_but_keeps_one_identifier(sandbox):
    profile = create(sandbox, email="ann@example.com", phone_number="+14155550100").json()["data"]["id"]
    cleared = update(sandbox, profile, phone_number=None)
    assert cleared.status_code == 200 and cleared.json()["data"]["attributes"]["phone_number"] is None
    assert create(sandbox, phone_number="+14155550100").status_code == 201  # the phone is free again
    refused = update(sandbox, profile, email=None)
    assert refused.status_code == 400 and sandbox.klaviyo.profiles[profile]["email"] == "ann@example.com"
    assert update(sandbox, "01HZNOSUCHPROFILE000000000").status_code == 404


def test_create_or_update_profile_upserts_and_refuses_identifiers_of_two_profiles(sandbox):
    def upsert(**attributes: str) -> requests.Response:
        return call(sandbox, "POST", "/api/profile-import/", {"data": {"type": "profile", "attributes": attributes}})

    created = upsert(email="ann@example.com")
    assert created.status_code == 201
    ann = created.json()["data"]["id"]
    updated = upsert(email="ann@example.com", phone_number="+14155550100")  # the email's profile takes the new phone
    assert updated.status_code == 200 and updated.json()["data"]["attributes"]["phone_number"] == "+14155550100"
    bob = upsert(external_id="crm-2").json()["data"]["id"]
    assert duplicate_of(upsert(email="ann@example.com", external_id="crm-2")) == bob
    assert sandbox.klaviyo.profiles[ann]["external_id"] is None


def test_an_import_row_naming_two_profiles_is_an_import_error_and_changes_nothing(sandbox):
    klaviyo = sandbox.klaviyo
    ann, bob = klaviyo.seed_profile("ann@example.com"), klaviyo.seed_profile(phone_number="+14155550100")
    rows = [{"type": "profile", "attributes": {"email": "ann@example.com", "phone_number": "+14155550100"}},
            {"type": "profile", "attributes": {"email": "cid@example.com"}}]
    body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": rows}}}}
    job = call(sandbox, "POST", "/api/profile-bulk-import-jobs/", body).json()["data"]["id"]
    polls = [call(sandbox, "GET", f"/api/profile-bulk-import-jobs/{job}/").json()["data"]["attributes"] for _ in range(2)]
    assert [poll["status"] for poll in polls] == ["processing", "complete"] and polls[-1]["failed_count"] == 1
    [error] = call(sandbox, "GET", f"/api/profile-bulk-import-jobs/{job}/import-errors/").json()["data"]
    assert error["attributes"]["code"] == "duplicate_profile"
    assert error["attributes"]["source"]["pointer"] == "/data/attributes/profiles/data/0/attributes/phone_number"
    assert klaviyo.profiles[ann]["phone_number"] is None and klaviyo.profiles[bob]["email"] is None
    assert klaviyo.profile_id("cid@example.com") is not None  # the other row landed


# ----- Get Profiles for List ------------------------------------------------------------------------------
def list_page(sandbox: Sandbox, query: str = "") -> requests.Response:
    return call(sandbox, "GET", f"/api/lists/{LIST}/profiles/" + (f"?{query}" if query else ""))


def test_list_profiles_pages_by_cursor_in_joined_order_unshaken_by_leavers(sandbox):
    klaviyo = sandbox.klaviyo
    ids = [klaviyo.add_to_list(LIST, email=f"person{i}@example.com") for i in range(45)]
    first = list_page(sandbox).json()
    assert [p["id"] for p in first["data"]] == ids[:20]  # Klaviyo's default page size
    klaviyo.remove_from_list(LIST, "person3@example.com")  # a member leaves between pages
    second = requests.get(first["links"]["next"], headers=call_headers(sandbox), timeout=10).json()
    assert [p["id"] for p in second["data"]] == ids[20:40]
    assert second["data"][0]["attributes"]["joined_group_at"]
    newest = list_page(sandbox, "sort=-joined_group_at&page[size]=2").json()
    assert [p["id"] for p in newest["data"]] == [ids[44], ids[43]]


@pytest.mark.parametrize("query", ["page[size]=101", "page[size]=0", "fields[profile]=email,favourite_colour", "page[cursor]=%%%",
                                   "sort=email", "filter=equals(external_id,\"x\")"])
def test_list_profiles_refuses_what_klaviyo_refuses(sandbox, query):
    response = list_page(sandbox, query)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "invalid"


def test_list_profiles_serves_sparse_fieldsets_filters_and_needs_both_read_scopes(sandbox):
    klaviyo = sandbox.klaviyo
    klaviyo.add_to_list(LIST, email="ann@example.com", phone_number="+14155550100")
    klaviyo.add_to_list(LIST, email="bob@example.com")
    [ann] = list_page(sandbox, 'fields[profile]=email,phone_number&filter=equals(email,"ann@example.com")').json()["data"]
    assert ann["attributes"] == {"email": "ann@example.com", "phone_number": "+14155550100"}
    klaviyo.scopes = {"lists:read"}
    refused = list_page(sandbox)
    assert refused.status_code == 403 and "profiles:read" in refused.json()["errors"][0]["detail"]


def test_list_profile_ids_page_at_most_100(sandbox):
    response = call(sandbox, "GET", f"/api/lists/{LIST}/relationships/profiles/?page[size]=1000")
    assert response.status_code == 400


# ----- changes made by hand, for reconciliation tests -------------------------------------------------------
def test_hand_changes_follow_klaviyos_identity_model(sandbox):
    klaviyo = sandbox.klaviyo
    ann = klaviyo.add_to_list(LIST, email="ann@example.com", phone_number="+14155550100")
    bob = klaviyo.add_to_list(LIST, email="bob@example.com")
    assert klaviyo.members(LIST) == [{"id": ann, "email": "ann@example.com", "phone_number": "+14155550100"},
                                     {"id": bob, "email": "bob@example.com"}]
    assert klaviyo.change_email("ann@example.com", "ann.new@example.com") == ann
    with pytest.raises(ValueError, match="duplicate_profile"):
        klaviyo.change_email("bob@example.com", "ANN.NEW@example.com")
    with pytest.raises(ValueError, match="duplicate_profile"):
        klaviyo.add_to_list(LIST, email="bob@example.com", phone_number="+14155550100")
    assert klaviyo.remove_from_list(LIST, "bob@example.com") == bob
    assert klaviyo.members(LIST) == [{"id": ann, "email": "ann.new@example.com", "phone_number": "+14155550100"}]
    assert klaviyo.remove_from_list(LIST, "nobody@example.com") is None


def test_saved_state_keeps_profiles_identity_and_list_order(sandbox):
    klaviyo = sandbox.klaviyo
    ids = [klaviyo.add_to_list(LIST, email=f"person{i}@example.com") for i in range(3)]
    state = klaviyo.to_state()
    klaviyo.load_state(state)
    assert [m["id"] for m in klaviyo.members(LIST)] == ids
    with pytest.raises(ValueError, match="duplicate_profile"):
        klaviyo.change_email("person0@example.com", "person1@example.com")
