"""KlaviyoListDestination over real HTTP against the sandbox's strict Klaviyo emulator.

What every connector promises (empty batches, one outcome per member, oversized batches, throttles,
bad credentials, the shared status table) is in ``tests/destinations/test_contract.py``; these are
Klaviyo's own. The pacing limiter itself is tested in ``tests/destinations/test_pacing.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from destinations.base import AudienceRef, Destination, Member, RowOutcome, RowStatus
from destinations.emulation import Response
from destinations.klaviyo.config import CAPABILITIES
from destinations.klaviyo.connector import ImportJobLost, KlaviyoListDestination, RowErrors
from destinations.registry import SPECS
from destinations.responses import PlatformResponse
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError, PermanentError, RateLimited, TransientError
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.helpers import assert_classified
from tests.destinations.klaviyo.helpers import AUDIENCE, LIST, RELATIONSHIPS, DictCache, calls, config, member


@pytest.fixture
def offline(monkeypatch, opened) -> KlaviyoListDestination:
    """A connector that is never called: for ``classify``."""
    monkeypatch.setenv("KLAVIYO_KEY", "pk_offline")
    return opened(KlaviyoListDestination(config(None), name="klaviyo_vip"))


def test_is_an_email_destination_with_declared_limits():
    caps = KlaviyoListDestination.capabilities
    assert issubclass(KlaviyoListDestination, Destination) and KlaviyoListDestination.kind == "klaviyo_list"
    assert (caps.channel, caps.platform, caps.max_batch, caps.can_remove) == ("email", "plain", 1000, True)
    assert {"email", "phone", "first_name", "last_name", "external_id"} <= caps.identifiers
    assert caps.match_keys == {"email", "phone", "external_id"}  # one profile per each: names never identify
    assert SPECS["klaviyo_list"].capabilities is CAPABILITIES is caps  # readable without importing the connector


def test_adds_and_removes_land(sandbox, dest):
    members = [member(1), member(2, phone="+14155550102"), member(3, external_id="cust-3", first_name="Ann")]
    result = dest.add(AUDIENCE, members)
    assert result.op == "add"
    assert result.outcomes == tuple(RowOutcome(f"k{i}", RowStatus.SENT) for i in (1, 2, 3))
    assert sandbox.klaviyo.list_members(LIST) == {"person1@example.com", "+14155550102", "cust-3"}
    assert calls(sandbox, "POST", RELATIONSHIPS) == [("POST", RELATIONSHIPS, 3)]

    removed = dest.remove(AUDIENCE, members[:2])
    assert [o.status for o in removed.outcomes] == [RowStatus.SENT] * 2
    assert sandbox.klaviyo.list_members(LIST) == {"cust-3"}
    assert calls(sandbox, "DELETE") == [("DELETE", RELATIONSHIPS, 2)]


def test_membership_never_changes_anyones_subscription(sandbox, dest, make_dest):
    k = sandbox.klaviyo
    k.seed_profile("subscribed@example.com", email_consent="SUBSCRIBED")
    k.seed_profile("unsubscribed@example.com", email_consent="UNSUBSCRIBED")
    k.seed_profile("never@example.com", lists=(LIST,))
    emails = ["subscribed@example.com", "unsubscribed@example.com", "never@example.com", "brandnew@example.com"]
    members = [Member(f"k{i}", {"email": e}) for i, e in enumerate(emails)]
    before = {"subscribed@example.com": "SUBSCRIBED", "unsubscribed@example.com": "UNSUBSCRIBED", "never@example.com": "NEVER_SUBSCRIBED"}

    dest.add(AUDIENCE, members)
    assert k.list_members(LIST) == set(emails)
    dest.remove(AUDIENCE, members)
    assert k.list_members(LIST) == set()
    make_dest(DictCache()).remove(AUDIENCE, members)  # the lookup path (no cached ids) changes nothing either

    assert {e: k.subscription_status(e) for e in emails} == before | {"brandnew@example.com": "NEVER_SUBSCRIBED"}
    assert not calls(sandbox, fragment="profile-subscription-bulk")  # never the (un)subscribe jobs


def test_batches_at_the_limits(sandbox, dest):
    members = [member(i) for i in range(1000)]
    result = dest.add(AUDIENCE, members)
    assert {o.status for o in result.outcomes} == {RowStatus.SENT}
    assert calls(sandbox, "POST", "profile-bulk-import-jobs") == [("POST", "/api/profile-bulk-import-jobs/", 1000)]
    assert calls(sandbox, "POST", RELATIONSHIPS) == [("POST", RELATIONSHIPS, 1000)]
    assert len(calls(sandbox, "GET", "/profiles/")) == 10  # 1000 job profiles, 100 a page
    assert len(sandbox.klaviyo.list_members(LIST)) == 1000
    assert result.requests == len(sandbox.klaviyo.requests)

    dest.remove(AUDIENCE, members)
    assert calls(sandbox, "DELETE") == [("DELETE", RELATIONSHIPS, 1000)]
    assert sandbox.klaviyo.throttled == 0  # the client kept under the import endpoints' 10/s


def test_profile_ids_are_cached_and_reused(sandbox, make_dest):
    cache = DictCache()
    dest = make_dest(cache)
    first = dest.add(AUDIENCE, [member(1)])
    assert first.platform_counts["profiles_imported"] == 1
    assert set(cache.ids) == {"k1"} and cache.profile_of("k1") == sandbox.klaviyo.profile_id("person1@example.com")
    dest.remove(AUDIENCE, [member(1)])
    seen = len(sandbox.klaviyo.requests)

    again = make_dest(cache).add(AUDIENCE, [member(1)])  # a new process: only the ledger remembers
    assert again.requests == 1 and again.platform_counts["ids_cached"] == 1
    assert [r[:2] for r in sandbox.klaviyo.requests[seen:]] == [("POST", RELATIONSHIPS)]  # no import, no lookup
    assert sandbox.klaviyo.list_members(LIST) == {"person1@example.com"}


def test_remove_looks_profiles_up_and_never_creates_one(sandbox, make_dest):
    known = sandbox.klaviyo.seed_profile("known@example.com", lists=(LIST,))
    cache = DictCache()
    result = make_dest(cache).remove(AUDIENCE, [Member("a", {"email": "known@example.com"}), Member("b", {"email": "stranger@example.com"})])
    assert [o.status for o in result.outcomes] == [RowStatus.SENT, RowStatus.SENT]
    assert sandbox.klaviyo.list_members(LIST) == set() and sandbox.klaviyo.profile_id("stranger@example.com") is None
    assert set(cache.ids) == {"a"} and cache.profile_of("a") == known
    assert not calls(sandbox, fragment="profile-bulk-import-jobs")
    assert calls(sandbox, "GET", "/api/profiles")


def test_rows_klaviyo_rejects_carry_its_reason(sandbox, dest):
    result = dest.add(AUDIENCE, [member(1), member(2, email="no-tld@example"), member(3, phone="+1555"),
                                 member(4, first_name="Only a name")])
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("k1", RowStatus.SENT, None),
        ("k2", RowStatus.REJECTED, "klaviyo_invalid_email"),
        ("k3", RowStatus.REJECTED, "klaviyo_invalid_phone"),
        ("k4", RowStatus.REJECTED, "no_supported_identifier"),
    ]
    assert sandbox.klaviyo.list_members(LIST) == {"person1@example.com"}
    assert set(dest.id_cache.ids) == {"k1"}


def test_client_paces_calls_under_the_burst_limit(sandbox, make_dest):
    cache = DictCache()
    dest = make_dest(cache)
    dest.add(AUDIENCE, [member(1)])
    started = time.monotonic()
    for _ in range(11):  # list relationships: 10 a second
        dest.remove(AUDIENCE, [member(1)])
    assert time.monotonic() - started >= 1.0
    assert sandbox.klaviyo.throttled == 0


def test_members_without_an_identifier_make_no_call(sandbox, dest):
    only_names = dest.add(AUDIENCE, [member(1, first_name="Ann")])
    assert only_names.requests == 0 and only_names.outcomes[0].reason == "no_supported_identifier"
    assert sandbox.klaviyo.request_count == 0


def test_a_missing_key_variable_fails_at_construction(monkeypatch):
    monkeypatch.delenv("KLAVIYO_KEY", raising=False)
    with pytest.raises(ConfigError, match="KLAVIYO_KEY"):
        KlaviyoListDestination(config(None))


def test_a_wrong_key_on_a_call_names_the_destination_and_never_the_key(sandbox, monkeypatch):
    monkeypatch.setenv("KLAVIYO_KEY", "pk_not_the_key")
    dest = KlaviyoListDestination(config(sandbox.url_for("klaviyo")), name="klaviyo_vip")
    with pytest.raises(ConfigError) as info:
        dest.add(AUDIENCE, [member(1)])
    assert "KLAVIYO_KEY" in str(info.value) and "klaviyo_vip" in str(info.value) and "profiles:write" in str(info.value)
    assert "pk_not_the_key" not in str(info.value) + (info.value.detail or "")
    dest.close()


def test_missing_scope_is_a_config_error(sandbox, dest):
    sandbox.klaviyo.scopes = {"profiles:read", "profiles:write"}
    with pytest.raises(ConfigError, match="lists:write"):
        dest.add(AUDIENCE, [member(1)])


def test_unknown_list_is_a_config_error_naming_it(sandbox, dest):
    with pytest.raises(ConfigError, match="NoSuch"):
        dest.add(AudienceRef("s", "NoSuch"), [member(1)])
    with pytest.raises(ConfigError, match="NoSuch"):
        dest.check(AudienceRef("s", "NoSuch"))
    with pytest.raises(ConfigError, match="not a Klaviyo list id"):
        dest.add(AudienceRef("s", "../x"), [member(1)])
    dest.check()
    dest.check(AUDIENCE)


def test_a_stale_cached_id_is_resolved_again(sandbox, make_dest):
    cache = DictCache()
    make_dest(cache).add(AUDIENCE, [member(1)])
    profile_id = cache.profile_of("k1")
    cache.ids["k1"] = cache.ids["k1"].replace(profile_id, "01HZSTALE00000000000000000")  # a profile merged away since
    sandbox.klaviyo.remove_from_list(LIST, "person1@example.com")
    result = make_dest(cache).add(AUDIENCE, [member(1)])
    assert result.outcomes[0].status is RowStatus.SENT
    assert (result.platform_counts["ids_cached"], result.platform_counts["profiles_imported"]) == (1, 1)  # refused, resolved again
    assert cache.profile_of("k1") == profile_id == sandbox.klaviyo.profile_id("person1@example.com")
    assert sandbox.klaviyo.list_members(LIST) == {"person1@example.com"}


def test_a_slow_import_job_is_resumed_not_sent_again(sandbox, make_dest):
    dest = make_dest(import_timeout_s=0.05)
    sandbox.klaviyo.job_polls = 10_000
    with pytest.raises(TransientError, match="still processing"):
        dest.add(AUDIENCE, [member(1)])
    for job in sandbox.klaviyo.jobs.values():
        job["polls_left"] = 0
    assert dest.add(AUDIENCE, [member(1)]).outcomes[0].status is RowStatus.SENT
    assert len(calls(sandbox, "POST", "profile-bulk-import-jobs")) == 1


def test_a_throttled_read_of_a_finished_job_resumes_it(sandbox, dest, monkeypatch):
    serve = sandbox.klaviyo.handle
    throttled: list[str] = []

    def throttle_first_page(request):
        if "bulk-import-jobs/" in request.path and request.path.endswith("/profiles/") and not throttled:
            throttled.append(request.path)
            return Response(429, {"errors": [{"status": 429, "code": "throttled", "detail": "Request was throttled."}]},
                            {"Retry-After": "2"})
        return serve(request)

    monkeypatch.setattr(sandbox.klaviyo, "handle", throttle_first_page)
    with pytest.raises(RateLimited) as info:
        dest.add(AUDIENCE, [member(1)])
    assert info.value.retry_after == 2.0 and throttled
    assert dest.add(AUDIENCE, [member(1)]).outcomes[0].status is RowStatus.SENT
    assert len(calls(sandbox, "POST", "profile-bulk-import-jobs")) == 1  # the same job, read again


def test_connection_refused_is_transient(monkeypatch):
    monkeypatch.setenv("KLAVIYO_KEY", "k")
    dest = KlaviyoListDestination(config("http://127.0.0.1:9"))
    with pytest.raises(TransientError, match="127.0.0.1:9"):
        dest.add(AUDIENCE, [member(1)])


def errors(status: int, code: str, pointer: str | None = None, detail: str = "d") -> dict:
    item = {"id": "x", "status": status, "code": code, "title": "t", "detail": detail}
    if pointer:
        item["source"] = {"pointer": pointer}
    return {"errors": [item]}


LIST_CALL, JOB_CALL = f"list {LIST}", "a profile import job"


@pytest.mark.parametrize("status, body, headers, target, expected, retry_after", [
    (200, "<html>a proxy page</html>", {}, LIST_CALL, TransientError, None),  # a 2xx that is not JSON:API
    (429, errors(429, "throttled", detail="Request was throttled. Expected available in 12 seconds."), {}, LIST_CALL, RateLimited, 12.0),
    (404, "<html>nginx</html>", {}, "profiles", ConfigError, None),  # not Klaviyo: the endpoint is wrong
    (405, "<html>nginx</html>", {}, "profiles", ConfigError, None),
    (404, errors(404, "not_found"), {}, JOB_CALL, ImportJobLost, None),
    (400, errors(400, "invalid", "/data/3/id"), {}, LIST_CALL, RowErrors, None),
    (400, errors(400, "invalid", "/data/type"), {}, LIST_CALL, PermanentError, None),  # not a row: the whole call
    (409, errors(409, "conflict"), {}, LIST_CALL, TransientError, None),
    (302, "", {}, LIST_CALL, TransientError, None),  # unknown: list adds and removes are idempotent
])
def test_classify_where_klaviyo_differs_from_the_shared_table(offline, status, body, headers, target, expected, retry_after):
    assert_classified(offline.classify(PlatformResponse(status, body, headers), target=target), expected, retry_after)


def test_classify_keeps_pii_out_and_names_the_fix(offline):
    failure = offline.classify(PlatformResponse(400, errors(400, "invalid", detail="Invalid email address: jane@example.com")),
                               target=LIST_CALL)
    assert "jane@example.com" not in str(failure) + (failure.detail or "")
    rows = offline.classify(PlatformResponse(400, errors(400, "invalid", "/data/3/id")), target=LIST_CALL)
    assert rows.rows == {3: "klaviyo_unknown_profile"} and isinstance(rows, PermanentError)  # uncaught, it still stops
    assert "endpoint" in offline.classify(PlatformResponse(404, "<html>nginx</html>")).message
    missing = offline.classify(PlatformResponse(404, errors(404, "not_found")), target=LIST_CALL)
    assert type(missing) is ConfigError and LIST in missing.message


def test_engine_keeps_the_list_equal_to_the_segment(tmp_path: Path, sandbox, monkeypatch):
    monkeypatch.setenv("KLAVIYO_KEY", sandbox.klaviyo.key)
    sandbox.klaviyo.create_list("1001")
    sandbox.klaviyo.seed_profile("person2@example.com", email_consent="SUBSCRIBED")
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 6)])
    write_project(tmp_path, sync_extra="send_unknown_consent: true\n", destination=f"""\
        type: klaviyo_list
        api_key_env: KLAVIYO_KEY
        endpoint: {sandbox.url_for("klaviyo")}
        import_poll_interval_s: 0.01
        """)
    [report] = Engine(load_project(tmp_path)).run()
    assert (report.status, report.added, report.rejected) == ("ok", 5, 0), report.reason
    assert sandbox.klaviyo.list_members("1001") == {f"person{i}@example.com" for i in range(1, 6)}

    write_customers(tmp_path / "warehouse.duckdb", [person(i, in_segment=i not in (2, 4)) for i in range(1, 6)])
    imports = len(calls(sandbox, "POST", "profile-bulk-import-jobs"))
    [report] = Engine(load_project(tmp_path)).run()
    assert (report.status, report.removed) == ("ok", 2), report.reason
    assert sandbox.klaviyo.list_members("1001") == {"person1@example.com", "person3@example.com", "person5@example.com"}
    assert len(calls(sandbox, "POST", "profile-bulk-import-jobs")) == imports and not calls(sandbox, "GET", "/api/profiles")
    assert sandbox.klaviyo.subscription_status("person2@example.com") == "SUBSCRIBED"

