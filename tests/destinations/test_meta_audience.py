"""MetaAudienceDestination through the real facebook-business SDK against the sandbox emulator."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from destinations.base import (
    AudienceRef,
    Destination,
    HasPlatformCounts,
    Member,
    RowOutcome,
    RowStatus,
)
from destinations.meta.config import MetaAudienceConfig
from destinations.meta.connector import (
    DEFAULT_RETRY_AFTER_S,
    MetaAudienceDestination,
    MetaContext,
    classify,
)
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.sandbox import Sandbox

TOKEN = "sandbox-test-token"
AUDIENCE = AudienceRef(sync="vip_sync", audience_id="1001")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def member(i: int, **kinds: str) -> Member:
    return Member(member_key=f"k{i}", identifiers=kinds or {"email": sha(f"person{i}@example.com")})


@pytest.fixture
def sandbox():
    sb = Sandbox(port=0, meta_token=TOKEN).start()
    sb.meta.create_audience(AUDIENCE.audience_id, name="vip", ad_account_id="act_77")
    yield sb
    sb.stop()


def config(url: str, **overrides) -> MetaAudienceConfig:
    fields = {"type": "meta_audience", "ad_account_id": "act_77", "access_token_env": "META_TOKEN", "endpoint": url} | overrides
    return MetaAudienceConfig(**fields)


@pytest.fixture
def dest(sandbox, monkeypatch):
    monkeypatch.setenv("META_TOKEN", TOKEN)
    destination = MetaAudienceDestination(config(sandbox.url), name="meta_vip")
    yield destination
    destination.close()


def held(sandbox, key: str = "EMAIL") -> set[str]:
    return {m[key] for m in sandbox.meta.members(AUDIENCE.audience_id)}


def test_is_a_destination_with_declared_limits():
    assert issubclass(MetaAudienceDestination, Destination)
    assert issubclass(MetaAudienceDestination, HasPlatformCounts)
    assert MetaAudienceDestination.kind == "meta_audience"
    assert MetaAudienceDestination.capabilities.max_batch == 10_000
    assert "date_of_birth" not in MetaAudienceDestination.capabilities.identifiers  # a hashed full date cannot be split


def test_adds_and_removes_land(sandbox, dest):
    members = [member(i) for i in range(3)]
    result = dest.add(AUDIENCE, members)
    assert result.op == "add" and result.requests == 1
    assert result.outcomes == tuple(RowOutcome(f"k{i}", RowStatus.SENT) for i in range(3))
    assert dict(result.platform_counts) == {"num_received": 3, "num_invalid_entries": 0}
    assert held(sandbox) == {m.identifiers["email"] for m in members}

    removed = dest.remove(AUDIENCE, members[:2])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 2
    assert held(sandbox) == {members[2].identifiers["email"]}
    assert sandbox.meta.requests[-1] == ("POST", f"/v26.0/{AUDIENCE.audience_id}/users", 2)  # never a DELETE with rows in the URL


def test_a_large_remove_goes_through_post(sandbox, dest):
    members = [member(i) for i in range(5_000)]
    dest.add(AUDIENCE, members)
    dest.remove(AUDIENCE, members)
    assert held(sandbox) == set()
    assert [r[0] for r in sandbox.meta.requests] == ["POST", "POST"]


def test_single_kind_batches_use_the_single_key_schema(sandbox, dest):
    dest.add(AUDIENCE, [member(1, phone=sha("15551230001")), member(2, phone=sha("15551230002"))])
    dest.add(AUDIENCE, [member(3, madid="6d92078a-8246-4ba4-ae5b-76104861e7dc")])
    assert sorted(sandbox.meta.members(AUDIENCE.audience_id), key=str) == sorted(
        [{"PHONE": sha("15551230001")}, {"PHONE": sha("15551230002")}, {"MADID": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}], key=str)


def test_mixed_batches_use_the_multi_key_schema_with_blanks(sandbox, dest):
    result = dest.add(AUDIENCE, [
        member(1, email=sha("a@x.com"), phone=sha("15551230001"), first_name=sha("ann"), country=sha("us")),
        member(2, email=sha("b@x.com")),
        member(3, date_of_birth=sha("19800101")),  # nothing Meta can take
    ])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT, RowStatus.REJECTED]
    assert result.outcomes[2].reason == "no_supported_identifier"
    assert result.platform_counts["num_received"] == 2
    assert sorted(sandbox.meta.members(AUDIENCE.audience_id), key=len) == [
        {"EMAIL": sha("b@x.com")},
        {"EMAIL": sha("a@x.com"), "PHONE": sha("15551230001"), "FN": sha("ann"), "COUNTRY": sha("us")},
    ]


def test_empty_batch_makes_no_request(sandbox, dest):
    assert dest.add(AUDIENCE, []).requests == 0
    assert dest.remove(AUDIENCE, []).outcomes == ()
    only_unsupported = dest.add(AUDIENCE, [member(1, date_of_birth=sha("19800101"))])
    assert only_unsupported.requests == 0
    assert sandbox.meta.request_count == 0


def test_refuses_more_than_max_batch_without_sending(sandbox, dest):
    with pytest.raises(PermanentError, match="10000"):
        dest.add(AUDIENCE, [member(i) for i in range(10_001)])
    assert sandbox.meta.request_count == 0


def test_invalid_hash_is_counted_and_its_row_rejected(sandbox, dest):
    bad = member(2, email=sha("b@x.com").upper())
    result = dest.add(AUDIENCE, [member(1), bad, member(3)])
    assert result.platform_counts["num_invalid_entries"] == 1
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("k1", RowStatus.SENT, None), ("k2", RowStatus.REJECTED, "meta_invalid_entry"), ("k3", RowStatus.SENT, None)]
    assert len(held(sandbox)) == 2


def test_wrong_token_says_which_variable_to_fix(sandbox, monkeypatch):
    monkeypatch.setenv("META_TOKEN", "expired-token")
    dest = MetaAudienceDestination(config(sandbox.url), name="meta_vip")
    with pytest.raises(ConfigError) as info:
        dest.add(AUDIENCE, [member(1)])
    message = str(info.value)
    assert "META_TOKEN" in message and "meta_vip" in message and "ads_management" in message
    assert "expired-token" not in message + (info.value.detail or "")
    with pytest.raises(ConfigError, match="META_TOKEN"):
        dest.check()


def test_missing_token_variable_fails_at_construction(sandbox, monkeypatch):
    monkeypatch.delenv("META_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="META_TOKEN"):
        MetaAudienceDestination(config(sandbox.url))


def test_app_secret_proof_is_sent_when_configured(monkeypatch):
    monkeypatch.setenv("META_TOKEN", TOKEN)
    with Sandbox(port=0, meta_token=TOKEN, meta_app_secret="app-s3cret") as sb:
        sb.meta.create_audience(AUDIENCE.audience_id, ad_account_id="act_77")
        without = MetaAudienceDestination(config(sb.url))
        with pytest.raises(ConfigError, match="appsecret_proof"):
            without.add(AUDIENCE, [member(1)])
        monkeypatch.setenv("META_APP_SECRET", "wrong")
        with pytest.raises(ConfigError, match="META_APP_SECRET"):
            MetaAudienceDestination(config(sb.url, app_secret_env="META_APP_SECRET")).add(AUDIENCE, [member(1)])
        monkeypatch.setenv("META_APP_SECRET", "app-s3cret")
        MetaAudienceDestination(config(sb.url, app_secret_env="META_APP_SECRET")).add(AUDIENCE, [member(1)])
        assert len(sb.meta.members(AUDIENCE.audience_id)) == 1


@pytest.mark.parametrize("eta_minutes, expected_wait", [(5, 300.0), (0, DEFAULT_RETRY_AFTER_S)])
def test_throttle_is_rate_limited_with_the_wait_meta_asked_for(sandbox, dest, eta_minutes, expected_wait):
    sandbox.meta.inject(code=80003, times=1, eta_minutes=eta_minutes)
    with pytest.raises(RateLimited) as info:
        dest.add(AUDIENCE, [member(1)])
    assert info.value.retry_after == expected_wait
    assert dest.add(AUDIENCE, [member(1)]).outcomes[0].status is RowStatus.SENT  # the next call goes through


@pytest.mark.parametrize("status", [502, 503])
def test_html_5xx_page_is_transient_not_success(sandbox, dest, status):
    sandbox.meta.inject_http(status=status, times=1)
    with pytest.raises(TransientError) as info:
        dest.add(AUDIENCE, [member(1)])
    assert not isinstance(info.value, RateLimited) and str(status) in str(info.value)
    assert held(sandbox) == set()


def test_unknown_audience_is_a_config_error_naming_it(dest):
    with pytest.raises(ConfigError) as info:
        dest.add(AudienceRef("s", "424242"), [member(1)])
    assert "424242" in str(info.value) and "act_77" in str(info.value)
    with pytest.raises(ConfigError, match="424242"):
        dest.check(AudienceRef("s", "424242"))


def test_check_and_audience_counts(sandbox, dest):
    dest.check()
    dest.check(AUDIENCE)
    dest.add(AUDIENCE, [member(i) for i in range(4)])
    assert dict(dest.audience_counts(AUDIENCE)) == {"approximate_count_lower_bound": 4, "approximate_count_upper_bound": 4}


def test_check_refuses_an_audience_of_another_account(sandbox, dest):
    sandbox.meta.create_audience("2002", ad_account_id="act_99")
    with pytest.raises(ConfigError, match="act_99"):
        dest.check(AudienceRef("s", "2002"))


def test_connection_refused_is_transient_and_names_the_endpoint(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("META_TOKEN", TOKEN)
    dest = MetaAudienceDestination(config(f"http://127.0.0.1:{port}"))
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}"):
        dest.add(AUDIENCE, [member(1)])


def test_replace_swaps_the_membership_in_one_session(sandbox, dest):
    dest.add(AUDIENCE, [member(i) for i in range(3)])
    new = [member(i) for i in range(2, 22_002)]
    result = dest.replace(AUDIENCE, iter(new))
    assert result.requests == 3
    assert len(result.outcomes) == len(new) and {o.status for o in result.outcomes} == {RowStatus.SENT}
    assert result.platform_counts["num_received"] == len(new)
    assert held(sandbox) == {m.identifiers["email"] for m in new}
    assert [r[1].rsplit("/", 1)[-1] for r in sandbox.meta.requests[-3:]] == ["usersreplace"] * 3
    with pytest.raises(PermanentError):
        dest.replace(AUDIENCE, iter([]))


def test_create_audience_then_add(sandbox, dest):
    audience_id = dest.create_audience("win-back", "people who left")
    dest.add(AudienceRef("s", audience_id), [member(1)])
    assert len(sandbox.meta.members(audience_id)) == 1
    dest.check(AudienceRef("s", audience_id))


def test_permanent_errors_carry_no_pii(sandbox, dest):
    sandbox.meta.inject(code=100, times=1, is_transient=False, message=f"Invalid value {sha('a@x.com')} for a@x.com")
    with pytest.raises(PermanentError) as info:
        dest.add(AUDIENCE, [member(1, email=sha("a@x.com"))])
    text = str(info.value) + (info.value.detail or "")
    assert sha("a@x.com") not in text and "a@x.com" not in text and "code 100" in str(info.value)


CTX = MetaContext(destination="meta_vip", token_env="META_TOKEN", ad_account_id="act_77", audience_id="1001")
BUC = {"X-Business-Use-Case-Usage": json.dumps({"77": [{"type": "custom_audience", "call_count": 100, "estimated_time_to_regain_access": 3}]})}


def err(code, subcode=None, transient=False, message="m"):
    error = {"message": message, "type": "OAuthException", "code": code, "is_transient": transient, "fbtrace_id": "x"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.parametrize("status, body, headers, expected, retry_after", [
    (200, {"audience_id": "1", "num_received": 1}, {}, None, None),
    (200, {"id": "1"}, {}, None, None),
    (200, {"success": False}, {}, TransientError, None),
    (503, "<html><h1>503 Service Temporarily Unavailable</h1></html>", {}, TransientError, None),
    (200, "<html>oops</html>", {}, TransientError, None),
    (502, "", {}, TransientError, None),
    (429, "", {"Retry-After": "7"}, RateLimited, 7.0),
    (404, "<html>Not Found</html>", {}, ConfigError, None),
    (414, "<html>Request-URI Too Large</html>", {}, PermanentError, None),
    (400, err(80003, 2446289, True), BUC, RateLimited, 180.0),
    (400, err(80003, 2446289, True), {}, RateLimited, DEFAULT_RETRY_AFTER_S),
    (400, err(80014), {}, RateLimited, DEFAULT_RETRY_AFTER_S),
    (400, err(4), {}, RateLimited, DEFAULT_RETRY_AFTER_S),
    (400, err(17, 2446079), {}, RateLimited, DEFAULT_RETRY_AFTER_S),
    (400, err(32), {}, RateLimited, DEFAULT_RETRY_AFTER_S),
    (400, err(613, 1487742), BUC, RateLimited, 180.0),
    (500, err(1), {}, TransientError, None),
    (500, err(2, transient=True), {}, TransientError, None),
    (400, err(341), {}, TransientError, None),
    (400, err(2650, 1870145), {}, TransientError, None),
    (400, err(12345, transient=True), {}, TransientError, None),
    (400, err(99999), {}, TransientError, None),  # unknown: adds/removes are idempotent
    (400, err(190), {}, ConfigError, None),
    (401, err(190, 463), {}, ConfigError, None),
    (403, err(10), {}, ConfigError, None),
    (400, err(200), {}, ConfigError, None),
    (400, err(200, 1870090), {}, ConfigError, None),
    (400, err(294), {}, ConfigError, None),
    (400, err(100, 33), {}, ConfigError, None),
    (400, err(100, 1713230), {}, ConfigError, None),
    (400, err(100, message="Invalid appsecret_proof provided in the API argument"), {}, ConfigError, None),
    (400, err(100), {}, PermanentError, None),
    (400, err(105), {}, PermanentError, None),
    (400, err(368), {}, PermanentError, None),
    (400, err(2650, 1870147), {}, PermanentError, None),
    (400, err(2650, 1870158), {}, PermanentError, None),
])
def test_classify_table(status, body, headers, expected, retry_after):
    failure = classify(status, body, headers, CTX)
    if expected is None:
        assert failure is None
        return
    assert type(failure) is expected
    if retry_after is not None:
        assert failure.retry_after == retry_after


def test_classify_messages_tell_the_operator_what_to_fix():
    assert "export it as META_TOKEN" in str(classify(400, err(190), {}, CTX))
    assert "business.facebook.com/ads/manage/customaudiences/tos/?act=77" in str(classify(400, err(200, 1870090), {}, CTX))
    assert "audience 1001 does not exist in ad account act_77" in str(classify(400, err(100, 33), {}, CTX))
    assert "190" not in str(classify(400, err(190), {}, CTX))
