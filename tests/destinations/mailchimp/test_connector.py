"""MailchimpAudienceDestination over real HTTP against the sandbox's strict Mailchimp emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles,
bad credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are
Mailchimp's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.mailchimp.audience import Membership, parse_audience
from destinations.mailchimp.config import CAPABILITIES, MailchimpAudienceConfig
from destinations.mailchimp.connector import MailchimpAudienceDestination, RowRejected, subscriber_hash
from destinations.registry import SPECS
from destinations.responses import PlatformResponse
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


@pytest.fixture
def offline(monkeypatch, opened) -> MailchimpAudienceDestination:
    """A connector that is never called: for ``classify``."""
    monkeypatch.setenv("MAILCHIMP_KEY", "0123456789abcdef-us6")
    return opened(MailchimpAudienceDestination(config(None), name="mailchimp_main"))


def writes(sandbox) -> list[tuple[str, str, object]]:
    return list(sandbox.mailchimp.bodies)


def test_is_a_consent_aware_email_destination():
    caps = MailchimpAudienceDestination.capabilities
    assert issubclass(MailchimpAudienceDestination, Destination) and MailchimpAudienceDestination.kind == "mailchimp_audience"
    assert (caps.channel, caps.platform, caps.max_batch, caps.can_remove, caps.consent_marker) == ("email", "plain", 500, True, True)
    assert {"email", "phone", "first_name", "last_name"} <= caps.identifiers
    assert SPECS["mailchimp_audience"].capabilities is CAPABILITIES is caps  # readable without importing the connector


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


def test_connection_cap_is_respected_and_excess_is_rate_limited(sandbox, make_dest):
    mc = sandbox.mailchimp
    mc.latency, mc.max_connections = 0.005, 3
    make_dest(max_connections=3).add(TAG, [by_email(i) for i in range(40)])
    assert mc.throttled == 0 and mc.peak_connections <= 3
    with pytest.raises(RateLimited):  # a client opening more than the account allows is told to wait
        make_dest(max_connections=10).remove(TAG, [by_email(i) for i in range(40)])


def test_an_edge_throttle_is_rate_limited(sandbox, dest):
    sandbox.mailchimp.inject_http(status=403, times=1, body=b"")  # Mailchimp's edge answers 403 without its JSON
    with pytest.raises(RateLimited, match="403"):
        dest.add(TAG, [by_email(1)])
    assert dest.add(TAG, [by_email(1)]).outcomes[0].status is RowStatus.SENT


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


def test_an_address_mailchimp_refuses_is_rejected_and_an_international_domain_is_sent(sandbox, dest):
    members = [by_email(1), Member("k2", {"email": "Jörg@Example.com"}), Member("k3", {"email": "ann@пример.рф"})]
    result = dest.add(TAG, members)
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("k1", RowStatus.SENT, None),
        ("k2", RowStatus.REJECTED, "mailchimp_invalid_email"),  # non-ASCII before the @
        ("k3", RowStatus.SENT, None),
    ]
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == {"person1@example.com", "ann@пример.рф"}
    assert "jörg@example.com" not in sandbox.mailchimp.list_members(LIST)


def test_removing_someone_mailchimp_does_not_have_is_a_no_op(sandbox, dest):
    sandbox.mailchimp.seed_member(LIST, "person1@example.com", tags=("VIP buyers",))
    for audience in (TAG, STATIC):
        result = dest.remove(audience, [by_email(1), by_email(2)])
        assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT]
    assert sandbox.mailchimp.list_members(LIST) == {"person1@example.com": "subscribed"}  # nobody created or changed
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == set()


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


def test_members_without_an_email_make_no_call(sandbox, dest):
    emailless = dest.add(TAG, [Member("k1", {"phone": "+14155550101"})])
    assert emailless.requests == 0 and emailless.outcomes[0].reason == "no_email"
    assert sandbox.mailchimp.request_count == 0


def test_members_sharing_an_email_get_one_contact_and_both_outcomes(sandbox, dest):
    result = dest.add(TAG, [Member("a", {"email": "Shared@Example.com"}), Member("b", {"email": "shared@example.com"})])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT] and result.requests == 2
    assert sandbox.mailchimp.tag_members(LIST, "VIP buyers") == {"shared@example.com"}


def problem(status: int, title: str, detail: str = "d") -> dict:
    return {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title, "status": status, "detail": detail,
            "instance": "i"}


@pytest.mark.parametrize("status, body, member_call, expected, retry_after", [
    (200, {"new_members": [], "errors": [{"email_address": "x", "error_code": "ERROR_GENERIC"}]}, False, None, None),  # rows
    (200, "<html>a proxy page</html>", False, TransientError, None),  # a 2xx that is not JSON
    (204, None, True, None, None),
    (403, "", False, RateLimited, None),  # the edge throttle: no JSON body
    (403, "<html>Access Denied</html>", False, RateLimited, None),
    (404, "<html>Not Found</html>", False, ConfigError, None),  # not Mailchimp: the endpoint is wrong
    (404, problem(404, "Resource Not Found"), True, RowRejected, None),  # no such contact
    (400, problem(400, "Member In Compliance State"), True, RowRejected, None),
    (429, problem(429, "Too Many Requests"), True, RateLimited, None),  # a throttle is never a row's fault
    (409, problem(409, "Conflict"), True, TransientError, None),
    (302, "", False, TransientError, None),  # unknown: tag and segment changes are idempotent
])
def test_classify_where_mailchimp_differs_from_the_shared_table(offline, status, body, member_call, expected, retry_after):
    response = PlatformResponse(status, body)
    assert_classified(offline.classify(response, audience_id=TAG.audience_id, member_call=member_call), expected, retry_after)


def test_classify_messages_name_the_fix_and_no_pii(offline):
    refused = offline.classify(PlatformResponse(401, problem(401, "API Key Invalid")))
    assert "export a valid key" in str(refused) and "MAILCHIMP_KEY" in str(refused)
    rejected = offline.classify(PlatformResponse(400, problem(400, "Member In Compliance State", "jane@example.com is in a compliance state")),
                                audience_id=TAG.audience_id, member_call=True)
    assert rejected.reason == "mailchimp_member_in_compliance_state"
    assert "jane@example.com" not in str(rejected) + (rejected.detail or "")
    missing = offline.classify(PlatformResponse(404, problem(404, "Resource Not Found")), audience_id="nosuchlist:tag:vip")
    assert type(missing) is ConfigError and "nosuchlist" in missing.message
    assert type(offline.classify(PlatformResponse(400, problem(400, "Invalid Resource")))) is PermanentError


def test_a_contact_mailchimp_calls_fake_or_invalid_is_an_invalid_email_row(offline):
    detail = "jörg@example.com looks fake or invalid, please enter a real email address."
    rejected = offline.classify(PlatformResponse(400, problem(400, "Invalid Resource", detail)), audience_id=TAG.audience_id,
                                member_call=True)
    assert type(rejected) is RowRejected and rejected.reason == "mailchimp_invalid_email"
    assert "fake or invalid" in str(rejected) and "jörg" not in str(rejected) + (rejected.detail or "")


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
