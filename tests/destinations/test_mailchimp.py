"""MailchimpAudienceDestination over real HTTP against the sandbox's strict Mailchimp emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.mailchimp.config import MailchimpAudienceConfig
from destinations.mailchimp.connector import (
    MailchimpAudienceDestination,
    MailchimpContext,
    Membership,
    RowRejected,
    classify,
    parse_audience,
    subscriber_hash,
)
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import assert_classified, by_email

LIST = "a1b2c3d4e5"
SEGMENT = 2001
TAG = AudienceRef("vip_mc", f"{LIST}:tag:VIP buyers")
STATIC = AudienceRef("vip_mc", f"{LIST}:segment:{SEGMENT}")


def config(url: str, **overrides) -> MailchimpAudienceConfig:
    return MailchimpAudienceConfig(**({"type": "mailchimp_audience", "api_key_env": "MAILCHIMP_KEY", "endpoint": url} | overrides))


@pytest.fixture
def sandbox(sandbox):
    sandbox.mailchimp.create_list(LIST, name="Customers")
    sandbox.mailchimp.create_segment(LIST, "vip static", segment_id=SEGMENT)
    return sandbox


@pytest.fixture
def make_dest(sandbox, monkeypatch, opened):
    monkeypatch.setenv("MAILCHIMP_KEY", sandbox.mailchimp.key)

    def make(**overrides) -> MailchimpAudienceDestination:
        return opened(MailchimpAudienceDestination(config(sandbox.url_for("mailchimp"), **overrides), name="mailchimp_main"))

    return make


@pytest.fixture
def dest(make_dest):
    return make_dest()


def writes(sandbox) -> list[tuple[str, str, object]]:
    return list(sandbox.mailchimp.bodies)


def test_is_a_consent_aware_email_destination():
    caps = MailchimpAudienceDestination.capabilities
    assert issubclass(MailchimpAudienceDestination, Destination) and MailchimpAudienceDestination.kind == "mailchimp_audience"
    assert (caps.channel, caps.platform, caps.max_batch, caps.can_remove, caps.consent_marker) == ("email", "plain", 500, True, True)
    assert {"email", "phone", "first_name", "last_name"} <= caps.identifiers


@pytest.mark.parametrize("audience_id, default, expected", [
    ("abc123:tag:VIP buyers", "tag", Membership("abc123", "tag", "VIP buyers")),
    ("abc123:VIP: gold", "tag", Membership("abc123", "tag", "VIP: gold")),
    ("abc123:segment:42", "tag", Membership("abc123", "segment", "42")),
    ("abc123:42", "static_segment", Membership("abc123", "segment", "42")),
    ("abc123:tag:segment", "static_segment", Membership("abc123", "tag", "segment")),
])
def test_audience_id_names_the_list_and_the_tag_or_segment(audience_id, default, expected):
    assert parse_audience(audience_id, default) == expected


@pytest.mark.parametrize("audience_id", ["abc123", "abc123:segment:vip", "abc123:tag:", "ab/c:tag:x", ":tag:x", "abc123:" + "x" * 101])
def test_audience_ids_that_name_no_membership_are_config_errors(audience_id):
    with pytest.raises(ConfigError):
        parse_audience(audience_id)


@pytest.mark.parametrize("audience", [TAG, STATIC], ids=["tag", "segment"])
def test_adds_and_removes_land(sandbox, dest, audience):
    mc = sandbox.mailchimp
    members = [by_email(1, first_name="Ann", _consent="granted"), by_email(2, last_name="Lee", _consent="unknown"), by_email(3)]
    result = dest.add(audience, members)
    assert result.outcomes == tuple(RowOutcome(f"k{i}", RowStatus.SENT) for i in (1, 2, 3))
    assert result.platform_counts == {"contacts_created": 3, "contacts_existing": 0}
    held = (lambda: mc.tag_members(LIST, "VIP buyers")) if audience is TAG else (lambda: mc.segment_members(LIST, SEGMENT))
    assert held() == {"person1@example.com", "person2@example.com", "person3@example.com"}
    assert mc.list_members(LIST) == {"person1@example.com": "subscribed", "person2@example.com": "transactional",
                                     "person3@example.com": "transactional"}
    assert mc.lists[LIST]["members"][subscriber_hash("person1@example.com")]["merge_fields"] == {"FNAME": "Ann"}

    removed = dest.remove(audience, members[:2])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 2
    assert held() == {"person3@example.com"}
    assert mc.list_members(LIST)["person1@example.com"] == "subscribed"  # leaving is not an unsubscribe
    assert removed.requests == (2 if audience is TAG else 1)


@pytest.mark.parametrize("audience", [TAG, STATIC], ids=["tag", "segment"])
def test_no_sync_ever_changes_a_contacts_status(sandbox, dest, audience):
    mc = sandbox.mailchimp
    before = {f"{s}@example.com": s for s in ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")}
    for email, status in before.items():
        mc.seed_member(LIST, email, status)
    members = [Member(f"k{i}", {"email": e, "_consent": "granted"}) for i, e in enumerate(before)]  # even granted
    members.append(Member("new", {"email": "new@example.com"}))

    dest.add(audience, members)
    dest.remove(audience, members)
    dest.add(audience, members)
    dest.remove(audience, members)

    assert mc.list_members(LIST) == before | {"new@example.com": "transactional"}
    assert {method for method, _, _ in writes(sandbox)} == {"POST"}  # no PUT/PATCH/DELETE of a contact
    subscribes = [body for _, path, body in writes(sandbox) if path == f"/3.0/lists/{LIST}"]
    assert len(subscribes) == 2 and all(body["update_existing"] is False for body in subscribes)  # adds only


def test_batches_at_the_limits(sandbox, make_dest):
    mc = sandbox.mailchimp
    mc.latency = 0.002  # let calls overlap, so the connection cap is really exercised
    members = [by_email(i) for i in range(500)]
    result = make_dest().add(TAG, members)
    assert {o.status for o in result.outcomes} == {RowStatus.SENT} and result.requests == 501
    assert mc.requests[0] == ("POST", f"/3.0/lists/{LIST}", 500)
    assert len(mc.requests) == 501 and len(mc.tag_members(LIST, "VIP buyers")) == 500
    assert 2 <= mc.peak_connections <= 10 and mc.throttled == 0

    mc.requests.clear()
    make_dest().add(STATIC, members)
    assert [r for r in mc.requests] == [("POST", f"/3.0/lists/{LIST}", 500), ("POST", f"/3.0/lists/{LIST}/segments/{SEGMENT}", 500)]
    with pytest.raises(PermanentError, match="500"):
        make_dest().add(STATIC, [by_email(i) for i in range(501)])
    assert len(mc.requests) == 2


def test_connection_cap_is_respected_and_excess_is_rate_limited(sandbox, make_dest):
    mc = sandbox.mailchimp
    mc.latency, mc.max_connections = 0.005, 3
    make_dest(max_connections=3).add(TAG, [by_email(i) for i in range(40)])
    assert mc.throttled == 0 and mc.peak_connections <= 3
    with pytest.raises(RateLimited):  # a client opening more than the account allows is told to wait
        make_dest(max_connections=10).remove(TAG, [by_email(i) for i in range(40)])


def test_throttling_raises_rate_limited_with_the_wait_asked_for(sandbox, dest):
    sandbox.mailchimp.inject_http(status=429, times=1, retry_after=5)
    with pytest.raises(RateLimited) as info:
        dest.add(TAG, [by_email(1)])
    assert info.value.retry_after == 5.0
    sandbox.mailchimp.inject_http(status=429, times=1)
    with pytest.raises(RateLimited) as info:
        dest.add(TAG, [by_email(1)])
    assert info.value.retry_after is None  # Mailchimp sends no wait: the engine backs off
    assert dest.add(TAG, [by_email(1)]).outcomes[0].status is RowStatus.SENT


@pytest.mark.parametrize("status, body, expected", [(500, None, TransientError), (503, None, TransientError), (403, b"", RateLimited)])
def test_server_errors_and_edge_throttles_are_transient(sandbox, dest, status, body, expected):
    sandbox.mailchimp.inject_http(status=status, times=1, body=body)
    with pytest.raises(expected) as info:
        dest.add(TAG, [by_email(1)])
    assert str(status) in str(info.value)


def test_rows_mailchimp_rejects_carry_its_reason(sandbox, make_dest):
    dest = make_dest(merge_fields={"phone": "MOBILE"})  # an audience without that merge field
    result = dest.add(TAG, [by_email(1), by_email(2, email="nobody@nowhere"), Member("k3", {"phone": "+14155550103"}),
                            by_email(4, phone="+14155550104")])
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("k1", RowStatus.SENT, None),
        ("k2", RowStatus.REJECTED, "mailchimp_invalid_email"),
        ("k3", RowStatus.REJECTED, "no_email"),
        ("k4", RowStatus.REJECTED, "mailchimp_invalid_merge_fields"),
    ]
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == {"person1@example.com"}


def test_removing_someone_mailchimp_does_not_have_is_a_no_op(sandbox, dest):
    sandbox.mailchimp.seed_member(LIST, "person1@example.com", tags=("VIP buyers",))
    for audience in (TAG, STATIC):
        result = dest.remove(audience, [by_email(1), by_email(2)])
        assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT]
    assert sandbox.mailchimp.list_members(LIST) == {"person1@example.com": "subscribed"}  # nobody created or changed
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == set()


def test_wrong_key_is_a_config_error_naming_the_variable(sandbox, monkeypatch):
    monkeypatch.setenv("MAILCHIMP_KEY", "0123456789abcdef-us9")
    dest = MailchimpAudienceDestination(config(sandbox.url_for("mailchimp")), name="mailchimp_main")
    with pytest.raises(ConfigError) as info:
        dest.add(TAG, [by_email(1)])
    assert "MAILCHIMP_KEY" in str(info.value) and "mailchimp_main" in str(info.value)
    assert "0123456789abcdef" not in str(info.value) + (info.value.detail or "")
    with pytest.raises(ConfigError, match="MAILCHIMP_KEY"):
        dest.check()


def test_key_names_the_data_center_and_must_be_set(monkeypatch):
    monkeypatch.setenv("MAILCHIMP_KEY", "0123456789abcdef-us6")
    assert MailchimpAudienceDestination(config(None))._base == "https://us6.api.mailchimp.com/3.0"
    monkeypatch.setenv("MAILCHIMP_KEY", "0123456789abcdef")
    with pytest.raises(ConfigError, match="data-center suffix"):
        MailchimpAudienceDestination(config(None))
    monkeypatch.delenv("MAILCHIMP_KEY")
    with pytest.raises(ConfigError, match="MAILCHIMP_KEY"):
        MailchimpAudienceDestination(config(None))


def test_unknown_audience_or_segment_is_a_config_error(sandbox, dest):
    with pytest.raises(ConfigError, match="nosuchlist"):
        dest.add(AudienceRef("s", "nosuchlist:tag:vip"), [by_email(1)])
    with pytest.raises(ConfigError, match="nosuchlist"):
        dest.remove(AudienceRef("s", "nosuchlist:tag:vip"), [by_email(1)])
    with pytest.raises(ConfigError):
        dest.add(AudienceRef("s", f"{LIST}:segment:999"), [by_email(1)])
    with pytest.raises(ConfigError, match="LIST_ID:tag:NAME"):
        dest.add(AudienceRef("s", LIST), [by_email(1)])
    dest.check()
    dest.check(STATIC)
    with pytest.raises(ConfigError):
        dest.check(AudienceRef("s", f"{LIST}:segment:999"))


def test_empty_batch_makes_no_request(sandbox, dest):
    assert dest.add(TAG, []).requests == 0
    assert dest.remove(STATIC, []).outcomes == ()
    emailless = dest.add(TAG, [Member("k1", {"phone": "+14155550101"})])
    assert emailless.requests == 0 and emailless.outcomes[0].reason == "no_email"
    assert sandbox.mailchimp.request_count == 0


def test_members_sharing_an_email_get_one_contact_and_both_outcomes(sandbox, dest):
    result = dest.add(TAG, [Member("a", {"email": "Shared@Example.com"}), Member("b", {"email": "shared@example.com"})])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT] and result.requests == 2
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == {"shared@example.com"}


CTX = MailchimpContext(destination="mailchimp_main", key_env="MAILCHIMP_KEY", audience_id=TAG.audience_id)
MEMBER_CTX = MailchimpContext(destination="mailchimp_main", key_env="MAILCHIMP_KEY", audience_id=TAG.audience_id, member_call=True)


def problem(status: int, title: str, detail: str = "d") -> dict:
    return {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title, "status": status, "detail": detail,
            "instance": "i"}


@pytest.mark.parametrize("status, body, headers, ctx, expected, retry_after", [
    (200, {"new_members": [], "errors": [{"email_address": "x", "error_code": "ERROR_GENERIC"}]}, {}, CTX, None, None),
    (204, {}, {}, MEMBER_CTX, None, None),
    (429, problem(429, "Too Many Requests"), {"Retry-After": "4"}, CTX, RateLimited, 4.0),
    (429, problem(429, "Too Many Requests"), {}, CTX, RateLimited, None),
    (403, "", {}, CTX, RateLimited, None),
    (401, problem(401, "API Key Invalid"), {}, CTX, ConfigError, None),
    (403, problem(403, "User Disabled"), {}, CTX, ConfigError, None),
    (404, problem(404, "Resource Not Found"), {}, CTX, ConfigError, None),
    (404, "<html>Not Found</html>", {}, CTX, ConfigError, None),
    (404, problem(404, "Resource Not Found"), {}, MEMBER_CTX, RowRejected, None),
    (400, problem(400, "Member In Compliance State"), {}, MEMBER_CTX, RowRejected, None),
    (400, problem(400, "Invalid Resource"), {}, CTX, PermanentError, None),
    (400, problem(400, "JSON Parse Exception"), {}, CTX, PermanentError, None),
    (405, problem(405, "Method Not Allowed"), {}, CTX, PermanentError, None),
    (500, problem(500, "Internal Server Error"), {}, CTX, TransientError, None),
    (502, "<html>bad gateway</html>", {}, CTX, TransientError, None),
    (302, "", {}, CTX, TransientError, None),
])
def test_classify_table(status, body, headers, ctx, expected, retry_after):
    assert_classified(classify(status, body, headers, ctx), expected, retry_after)


def test_classify_messages_name_the_fix_and_no_pii():
    assert "export a valid key" in str(classify(401, problem(401, "API Key Invalid"), {}, CTX))
    assert "MAILCHIMP_KEY" in str(classify(401, problem(401, "API Key Invalid"), {}, CTX))
    rejected = classify(400, problem(400, "Member In Compliance State", "jane@example.com is in a compliance state"), {}, MEMBER_CTX)
    assert rejected.reason == "mailchimp_member_in_compliance_state"
    assert "jane@example.com" not in str(rejected) + (rejected.detail or "")


def test_engine_keeps_the_tag_equal_to_the_segment(tmp_path: Path, sandbox, monkeypatch):
    mc = sandbox.mailchimp
    monkeypatch.setenv("MAILCHIMP_KEY", mc.key)
    mc.create_list("1001")
    mc.seed_member("1001", "person4@example.com", "unsubscribed")
    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2, ads_consent=None), person(3), person(4)])
    write_project(tmp_path, identifiers="[email, first_name]", sync_extra="channel: ads\nsend_unknown_consent: true\n",
                  destination=f"""\
        type: mailchimp_audience
        api_key_env: MAILCHIMP_KEY
        endpoint: {sandbox.url_for("mailchimp")}
        """)
    sync_file = tmp_path / "syncs" / "buyers_sync.yml"
    sync_file.write_text(sync_file.read_text().replace('audience_id: "1001"', 'audience_id: "1001:tag:buyers"'))

    [report] = Engine(load_project(tmp_path)).run()
    assert (report.status, report.added, report.rejected) == ("ok", 4, 0), report.reason
    assert mc.tag_members("1001", "buyers") == {f"person{i}@example.com" for i in range(1, 5)}
    assert mc.list_members("1001") == {"person1@example.com": "subscribed", "person2@example.com": "transactional",
                                       "person3@example.com": "subscribed", "person4@example.com": "unsubscribed"}

    write_customers(tmp_path / "warehouse.duckdb", [person(1), person(2, ads_consent=None), person(3, in_segment=False), person(4, in_segment=False)])
    [report] = Engine(load_project(tmp_path)).run()
    assert (report.status, report.removed) == ("ok", 2), report.reason
    assert mc.tag_members("1001", "buyers") == {"person1@example.com", "person2@example.com"}
    assert mc.list_members("1001")["person3@example.com"] == "subscribed"
    assert mc.list_members("1001")["person4@example.com"] == "unsubscribed"
