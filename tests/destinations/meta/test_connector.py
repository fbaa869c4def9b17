"""MetaAudienceDestination through the real facebook-business SDK against the sandbox emulator.

The contract suite (``tests/destinations/test_contract.py``) holds the promises every connector keeps
(empty batch, one outcome per member, max_batch, the shared status table); these are Meta's own: its
schemas, its throttling on HTTP 400, its error codes, its replace sessions, and what goes on the wire.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, HasPlatformCounts, Member, ReplacesAudiences, RowOutcome, RowStatus
from destinations.meta import SPEC
from destinations.meta.config import MetaAudienceConfig
from destinations.meta.connector import DEFAULT_RETRY_AFTER_S, MetaAudienceDestination
from destinations.responses import PlatformResponse
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.sandbox import Sandbox
from tests.destinations.helpers import assert_classified

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
    assert issubclass(MetaAudienceDestination, HasPlatformCounts) and issubclass(MetaAudienceDestination, ReplacesAudiences)
    assert MetaAudienceDestination.kind == SPEC.type == "meta_audience"
    assert MetaAudienceDestination.capabilities is SPEC.capabilities
    assert MetaAudienceDestination.capabilities.max_batch == 10_000
    assert "date_of_birth" not in MetaAudienceDestination.capabilities.identifiers  # a hashed full date cannot be split


def test_capabilities_are_read_without_importing_the_sdk():
    code = ("import sys; from destinations.meta import SPEC; assert SPEC.capabilities.max_batch == 10_000;"
            " assert 'facebook_business' not in sys.modules, 'the SDK was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


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


def test_a_batch_of_only_unsupported_rows_makes_no_request(sandbox, dest):
    result = dest.add(AUDIENCE, [member(1, date_of_birth=sha("19800101"))])
    assert result.requests == 0 and result.outcomes == (RowOutcome("k1", RowStatus.REJECTED, "no_supported_identifier"),)
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


# ----- classify: Meta's own answers (the shared status table is in the contract suite) -----------------
BUC = {"X-Business-Use-Case-Usage": json.dumps({"77": [{"type": "custom_audience", "call_count": 100, "estimated_time_to_regain_access": 3}]})}


@pytest.fixture
def offline(monkeypatch):
    """A destination for classify alone: building it opens no connection."""
    monkeypatch.setenv("META_TOKEN", TOKEN)
    destination = MetaAudienceDestination(config("http://127.0.0.1:9"), name="meta_vip")
    yield destination
    destination.close()


def err(code, subcode=None, transient=False, message="m"):
    error = {"message": message, "type": "OAuthException", "code": code, "is_transient": transient, "fbtrace_id": "x"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.parametrize("status, body, headers, expected, retry_after", [
    (200, {"audience_id": "1", "num_received": 1}, {}, None, None),
    (200, {"id": "1"}, {}, None, None),
    (200, {"success": False}, {}, TransientError, None),
    (200, "<html>oops</html>", {}, TransientError, None),
    (429, "", BUC, RateLimited, 180.0),  # Meta's wait, from its usage header
    (404, "<html>Not Found</html>", {}, ConfigError, None),
    (414, "<html>Request-URI Too Large</html>", {}, PermanentError, None),
    (400, "<html>Bad Request</html>", {}, TransientError, None),  # no Graph error: retried (adds/removes are idempotent)
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
def test_classify_table(offline, status, body, headers, expected, retry_after):
    assert_classified(offline.classify(PlatformResponse(status, body, headers), audience_id="1001"), expected, retry_after)


def test_classify_messages_tell_the_operator_what_to_fix(offline):
    def message(status, body):
        return str(offline.classify(PlatformResponse(status, body), audience_id="1001"))

    assert "export it as META_TOKEN" in message(400, err(190))
    assert "business.facebook.com/ads/manage/customaudiences/tos/?act=77" in message(400, err(200, 1870090))
    assert "audience 1001 does not exist in ad account act_77" in message(400, err(100, 33))
    assert "190" not in message(400, err(190))
    assert "http://127.0.0.1:9/v26.0" in message(404, "<html>Not Found</html>")  # a wrong endpoint, not a missing audience
    assert "ad account act_77" in str(offline.classify(PlatformResponse(400, err(100))))  # a call about no audience


# ----- on the wire -----------------------------------------------------------------------------------------
# The payload goes as one multipart form field (as Meta's ``curl -F payload=...`` examples send it) so
# requests does not percent-encode a megabyte byte by byte; these tests pin that the platform still
# receives exactly the payload and session the SDK would have sent.
@pytest.fixture
def bodies(sandbox, monkeypatch):
    """(content type, params) of each Graph request the emulator parsed."""
    from destinations.meta import emulator

    seen: list[tuple[str, dict]] = []
    parse = emulator._parse_params

    def spy(query, body, content_type):
        params = parse(query, body, content_type)
        seen.append((content_type.split(";")[0], {k: v for k, v in params.items() if k not in ("access_token", "appsecret_proof")}))
        return params

    monkeypatch.setattr(emulator, "_parse_params", spy)
    return seen


def full_batch(n: int = 10_000) -> list[Member]:
    return [Member(f"k{i}", {"email": sha(f"p{i}@example.com"), "phone": sha(f"1415555{i:04d}")}) for i in range(n)]


def test_a_full_multi_key_batch_arrives_as_the_sdk_would_encode_it(dest, sandbox, bodies):
    members = full_batch()
    result = dest.add(AUDIENCE, members)
    assert [o.member_key for o in result.outcomes] == [m.member_key for m in members]
    assert {o.status for o in result.outcomes} == {RowStatus.SENT}
    [(content_type, params)] = bodies
    assert content_type == "multipart/form-data"
    expected = {"schema": ["EMAIL", "PHONE"], "data": [[m.identifiers["email"], m.identifiers["phone"]] for m in members]}
    assert params["payload"] == json.dumps(expected, sort_keys=True, separators=(",", ":"))  # byte for byte
    session = json.loads(params["session"])
    assert session["batch_seq"] == 1 and session["last_batch_flag"] is True and session["estimated_num_total"] == 10_000
    assert len(sandbox.meta.members(AUDIENCE.audience_id)) == 10_000


def test_a_remove_is_a_post_with_the_method_override_and_the_same_payload(dest, sandbox, bodies):
    members = full_batch(50)
    dest.add(AUDIENCE, members)
    result = dest.remove(AUDIENCE, members[:20])
    assert len(result.outcomes) == 20 and result.requests == 1
    content_type, params = bodies[-1]
    assert content_type == "multipart/form-data" and params["method"] == "DELETE"
    assert json.loads(params["payload"])["data"][0] == [members[0].identifiers["email"], members[0].identifiers["phone"]]
    assert sandbox.meta.requests[-1][0] == "POST"
    assert len(sandbox.meta.members(AUDIENCE.audience_id)) == 30


def test_invalid_samples_and_skipped_members_keep_their_outcomes_in_input_order(dest):
    members = [Member("a", {"email": sha("a@example.com")}), Member("none", {"gender": ""}),
               Member("bad", {"email": "NOT-A-HASH"}), Member("b", {"email": sha("b@example.com")})]
    result = dest.add(AUDIENCE, members)
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("a", RowStatus.SENT, None), ("none", RowStatus.REJECTED, "no_supported_identifier"),
        ("bad", RowStatus.REJECTED, "meta_invalid_entry"), ("b", RowStatus.SENT, None)]
    assert dict(result.platform_counts) == {"num_received": 3, "num_invalid_entries": 1}


def test_a_replace_sends_every_batch_as_multipart(dest, sandbox, bodies, monkeypatch):
    monkeypatch.setattr(MetaAudienceDestination, "capabilities", dataclasses.replace(MetaAudienceDestination.capabilities, max_batch=4))
    members = full_batch(10)
    result = dest.replace(AUDIENCE, members)
    assert result.requests == 3 and len(result.outcomes) == 10
    assert [c for c, _ in bodies] == ["multipart/form-data"] * 3
    assert [json.loads(p["session"])["batch_seq"] for _, p in bodies] == [1, 2, 3]
    assert {m["EMAIL"] for m in sandbox.meta.members(AUDIENCE.audience_id)} == {m.identifiers["email"] for m in members}
