"""The Meta emulator, driven through the official SDK over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from syncer.sandbox import Sandbox

TOKEN = "test-token"
ROOT = Path(__file__).resolve().parents[3]


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def sandbox():
    sb = Sandbox(port=0, meta_token=TOKEN).start()
    yield sb
    sb.stop()


@pytest.fixture
def audience(sandbox) -> str:
    return sandbox.meta.create_audience("1001", name="vip", ad_account_id="act_77")


def make_api(url: str, token: str = TOKEN, app_secret: str | None = None) -> FacebookAdsApi:
    session = FacebookSession(access_token=token, app_secret=app_secret)
    session.GRAPH = url
    return FacebookAdsApi(session, api_version="v26.0")


@pytest.fixture
def api(sandbox) -> FacebookAdsApi:
    return make_api(sandbox.url)


def users(api, audience, schema, data, *, method="POST", session=None, edge="users", extra=None):
    params = {"payload": {"schema": schema, "data": data}}
    if session is not False:
        params["session"] = session or {"session_id": 7, "batch_seq": 1, "last_batch_flag": True}
    params.update(extra or {})
    return api.call(method, (audience, edge), params=params).json()


def graph_error(call) -> FacebookRequestError:
    with pytest.raises(FacebookRequestError) as info:
        call()
    return info.value


def emails(sandbox, audience) -> set[str]:
    return {m["EMAIL"] for m in sandbox.meta.members(audience)}


def test_adds_and_both_remove_forms_land(sandbox, api, audience):
    body = users(api, audience, "EMAIL_SHA256", [sha("a"), sha("b"), sha("c"), sha("d")])
    assert body == {"audience_id": audience, "session_id": 7, "num_received": 4, "num_invalid_entries": 0, "invalid_entry_samples": {}}
    users(api, audience, "EMAIL_SHA256", [sha("a")], extra={"method": "DELETE"}, session={"session_id": 8, "batch_seq": 1, "last_batch_flag": True})
    users(api, audience, "EMAIL_SHA256", [sha("b")], method="DELETE", session=False)  # payload in the query string
    assert emails(sandbox, audience) == {sha("c"), sha("d")}
    assert [r[0] for r in sandbox.meta.requests] == ["POST", "POST", "DELETE"]
    assert sandbox.meta.requests[0] == ("POST", f"/v26.0/{audience}/users", 4)


def test_multi_key_rows_identify_a_person_by_strong_identifiers(sandbox, api, audience):
    schema = ["EMAIL", "PHONE", "FN", "COUNTRY"]
    users(api, audience, schema, [[sha("a"), sha("1"), sha("ann"), sha("us")], [sha("b"), "", sha("bob"), sha("us")]])
    # same phone, new email: the first person is updated, not duplicated; a shared country links nobody
    users(api, audience, ["PHONE", "EMAIL"], [[sha("1"), sha("a2")]], session={"session_id": 9, "batch_seq": 1})
    members = sorted(sandbox.meta.members(audience), key=lambda m: m["FN"])
    assert members == [
        {"EMAIL": sha("a2"), "PHONE": sha("1"), "FN": sha("ann"), "COUNTRY": sha("us")},
        {"EMAIL": sha("b"), "FN": sha("bob"), "COUNTRY": sha("us")},
    ]
    # removing by any one identifier removes the person; the other person (same country) stays
    users(api, audience, "PHONE_SHA256", [sha("1")], extra={"method": "DELETE"}, session=False)
    assert emails(sandbox, audience) == {sha("b")}


def test_a_row_linking_two_people_merges_them(sandbox, api, audience):
    users(api, audience, ["EMAIL", "PHONE"], [[sha("a"), ""], ["", sha("1")]], session=False)
    users(api, audience, ["EMAIL", "PHONE"], [[sha("a"), sha("1")]], session=False)
    assert sandbox.meta.members(audience) == [{"EMAIL": sha("a"), "PHONE": sha("1")}]


def test_more_than_10000_rows_is_refused_and_nothing_lands(sandbox, api, audience):
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha(str(i)) for i in range(10_001)]))
    assert (error.http_status(), error.api_error_code()) == (400, 100)
    assert sandbox.meta.members(audience) == []
    users(api, audience, "EMAIL_SHA256", [sha(str(i)) for i in range(10_000)])
    assert len(sandbox.meta.members(audience)) == 10_000


@pytest.mark.parametrize("schema, data", [
    ("EMAIL", [sha("a")]),                       # a multi-key name as a single key
    (["EMAIL", "NOPE"], [[sha("a"), "x"]]),      # unknown key
    (["EMAIL", "PHONE"], [[sha("a")]]),          # row not aligned to the schema
    ("EMAIL_SHA256", sha("a")),                  # data not a list
])
def test_malformed_payloads_are_code_100(api, audience, schema, data):
    error = graph_error(lambda: users(api, audience, schema, data))
    assert (error.http_status(), error.api_error_code()) == (400, 100)


def test_invalid_hashes_are_counted_sampled_and_dropped(sandbox, api, audience):
    upper = sha("a").upper()
    body = users(api, audience, "EMAIL_SHA256", [upper, "not-a-hash", sha("b"), ""])
    assert body["num_received"] == 4
    assert body["num_invalid_entries"] == 3
    assert set(body["invalid_entry_samples"]) == {upper, "not-a-hash", ""}
    assert emails(sandbox, audience) == {sha("b")}
    # multi-key: one bad field makes the row invalid; "" for a missing key is fine
    body = users(api, audience, ["EMAIL", "ZIP"], [[sha("c"), "94107"], [sha("d"), ""]], session=False)
    assert (body["num_invalid_entries"], list(body["invalid_entry_samples"])) == (1, ["94107"])
    assert emails(sandbox, audience) == {sha("b"), sha("d")}


def test_wrong_or_missing_token_is_190(sandbox, audience):
    error = graph_error(lambda: make_api(sandbox.url, token="stolen").call("GET", (audience,)))
    assert (error.http_status(), error.api_error_code(), error.api_error_type()) == (400, 190, "OAuthException")
    response = requests.get(f"{sandbox.url}/v26.0/{audience}", timeout=5)
    assert response.status_code == 400 and response.json()["error"]["code"] == 190


def test_token_is_checked_before_the_payload(sandbox, audience):
    body = {"payload": "{not json", "access_token": "stolen"}
    assert requests.post(f"{sandbox.url}/v26.0/{audience}/users", data=body, timeout=5).json()["error"]["code"] == 190
    body["access_token"] = TOKEN
    assert requests.post(f"{sandbox.url}/v26.0/{audience}/users", data=body, timeout=5).json()["error"]["code"] == 100
    assert sandbox.meta.request_count == 2


def test_token_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SANDBOX_META_TOKEN", "from-env")
    with Sandbox(port=0) as sb:
        audience = sb.meta.create_audience("5")
        assert make_api(sb.url, token="from-env").call("GET", (audience,)).json() == {"id": "5"}


def test_app_secret_proof_is_enforced():
    with Sandbox(port=0, meta_token=TOKEN, meta_app_secret="s3cret") as sb:
        audience = sb.meta.create_audience("5")
        error = graph_error(lambda: make_api(sb.url).call("GET", (audience,)))
        assert error.api_error_code() == 100 and "appsecret_proof" in error.api_error_message()
        error = graph_error(lambda: make_api(sb.url, app_secret="wrong").call("GET", (audience,)))
        assert error.api_error_code() == 100
        assert make_api(sb.url, app_secret="s3cret").call("GET", (audience,)).json() == {"id": "5"}
        proof = hmac.new(b"s3cret", TOKEN.encode(), hashlib.sha256).hexdigest()
        raw = requests.get(f"{sb.url}/v26.0/5", params={"access_token": TOKEN, "appsecret_proof": proof}, timeout=5)
        assert raw.status_code == 200


def test_unknown_audience_is_100_33(api):
    error = graph_error(lambda: users(api, "424242", "EMAIL_SHA256", [sha("a")]))
    assert (error.api_error_code(), error.api_error_subcode()) == (100, 33)


def test_sessions_must_start_at_1_follow_on_and_stop_after_the_last_batch(api, audience):
    first = users(api, audience, "EMAIL_SHA256", [sha("a"), sha("b")], session={"session_id": 11, "batch_seq": 1})
    second = users(api, audience, "EMAIL_SHA256", [sha("c")], session={"session_id": 11, "batch_seq": 2, "last_batch_flag": True})
    assert (first["num_received"], second["num_received"]) == (2, 3)  # cumulative per session
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("d")], session={"session_id": 11, "batch_seq": 3}))
    assert (error.api_error_code(), error.api_error_subcode()) == (2650, 1870159)
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("d")], session={"session_id": 12, "batch_seq": 2}))
    assert (error.api_error_code(), error.api_error_subcode()) == (2650, 1870147)
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("d")], session={"session_id": -1, "batch_seq": 1}))
    assert error.api_error_code() == 100


def test_replace_keeps_only_what_the_session_sent(sandbox, api, audience):
    users(api, audience, "EMAIL_SHA256", [sha("old"), sha("kept")])
    body = users(api, audience, "EMAIL_SHA256", [sha("kept")], edge="usersreplace", session={"session_id": 21, "batch_seq": 1})
    assert body["account_id"] == "77" and body["num_received"] == 1
    assert emails(sandbox, audience) == {sha("old"), sha("kept")}  # nothing changes until the last batch
    status = api.call("GET", (audience,), params={"fields": "operation_status"}).json()["operation_status"]
    assert status["code"] != 200
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("x")], session=False))
    assert (error.api_error_code(), error.api_error_subcode(), error.api_transient_error()) == (2650, 1870145, True)
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("x")], edge="usersreplace", session={"session_id": 22, "batch_seq": 1}))
    assert error.api_error_subcode() == 1870145  # one replace at a time
    users(api, audience, "EMAIL_SHA256", [sha("new")], edge="usersreplace", session={"session_id": 21, "batch_seq": 2, "last_batch_flag": True})
    assert emails(sandbox, audience) == {sha("kept"), sha("new")}
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("y")], edge="usersreplace", session=False))
    assert error.api_error_code() == 100  # usersreplace needs a session


def test_injected_throttle_fails_the_next_n_requests_like_meta(sandbox, api, audience):
    sandbox.meta.inject(code=80003, times=2, eta_minutes=4)
    for _ in range(2):
        error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("a")]))
        assert error.http_status() == 400
        assert {k: error.body()["error"][k] for k in ("type", "code", "error_subcode", "is_transient")} == {
            "type": "OAuthException", "code": 80003, "error_subcode": 2446289, "is_transient": True}
        usage = json.loads(error.http_headers()["X-Business-Use-Case-Usage"])
        assert usage["77"][0]["estimated_time_to_regain_access"] == 4
    users(api, audience, "EMAIL_SHA256", [sha("a")])
    assert emails(sandbox, audience) == {sha("a")}
    assert sandbox.meta.request_count == 3


def test_throttle_next_answers_as_meta_throttles_and_states_its_wait_in_minutes(sandbox, api, audience):
    assert sandbox.meta.throttle_next(7.0) == 60.0  # Meta states whole minutes
    error = graph_error(lambda: users(api, audience, "EMAIL_SHA256", [sha("a")]))
    assert (error.http_status(), error.api_error_code(), error.api_transient_error()) == (400, 80003, True)
    usage = json.loads(error.http_headers()["X-Business-Use-Case-Usage"])
    assert usage["77"][0]["estimated_time_to_regain_access"] == 1
    users(api, audience, "EMAIL_SHA256", [sha("a")])
    assert sandbox.meta.request_count == 2
    assert sandbox.meta.consent_of(audience, {"email": sha("a")}) is None  # an audience holds no consent


def test_usage_header_on_every_response(api, audience):
    response = api.call("GET", (audience,))
    usage = json.loads(response.headers()["X-Business-Use-Case-Usage"])
    assert usage["77"][0]["type"] == "custom_audience" and usage["77"][0]["call_count"] >= 1


def test_html_5xx_reaches_the_sdk_as_a_success(sandbox, api, audience):
    sandbox.meta.inject_http(status=503, times=1)
    response = api.call("GET", (audience,))  # the SDK pitfall the connector must guard against
    assert response.status() == 503 and response.body().startswith("<html>")
    assert api.call("GET", (audience,)).status() == 200


def test_latency_is_added(sandbox, api, audience):
    sandbox.meta.latency = 0.2
    started = time.monotonic()
    api.call("GET", (audience,))
    assert time.monotonic() - started >= 0.2


def test_create_audience_and_read_counts(sandbox, api):
    error = graph_error(lambda: api.call("POST", ("act_77", "customaudiences"), params={"name": "x", "subtype": "CUSTOM"}))
    assert error.api_error_code() == 100  # customer_file_source is required
    created = api.call("POST", ("act_77", "customaudiences"), params={
        "name": "vip", "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY"}).json()
    users(api, created["id"], "EMAIL_SHA256", [sha("a"), sha("b")])
    fields = "name,approximate_count_lower_bound,approximate_count_upper_bound,account_id,subtype"
    assert api.call("GET", (created["id"],), params={"fields": fields}).json() == {
        "id": created["id"], "name": "vip", "approximate_count_lower_bound": 2, "approximate_count_upper_bound": 2,
        "account_id": "77", "subtype": "CUSTOM"}
    listed = api.call("GET", ("act_77", "customaudiences")).json()["data"]
    assert [a["id"] for a in listed] == [created["id"]]
    error = graph_error(lambda: api.call("GET", (created["id"],), params={"fields": "nope"}))
    assert error.api_error_code() == 100


def test_admin_endpoints(sandbox):
    base = f"{sandbox.url}/_sandbox"
    assert requests.post(f"{base}/meta/audiences", json={"id": "9", "name": "x"}, timeout=5).json() == {"id": "9"}
    api = make_api(sandbox.url)
    users(api, "9", "EMAIL_SHA256", [sha("a")])
    assert requests.get(f"{base}/meta/audiences/9", timeout=5).json() == {"id": "9", "count": 1, "members": [{"EMAIL": sha("a")}]}
    assert requests.get(f"{base}/meta/audiences/404", timeout=5).status_code == 404
    assert requests.get(f"{base}/stats", timeout=5).json()["meta"]["requests"] == 1
    assert requests.post(f"{base}/meta/faults", json={"code": 80003, "times": 1, "eta_minutes": 2}, timeout=5).ok
    assert graph_error(lambda: users(api, "9", "EMAIL_SHA256", [sha("b")])).api_error_code() == 80003
    assert requests.post(f"{base}/meta/faults", json={"http_status": 502, "times": 1}, timeout=5).ok
    assert api.call("GET", ("9",)).status() == 502
    assert requests.post(f"{base}/meta/faults", json={"bogus": 1}, timeout=5).status_code == 400
    assert requests.post(f"{base}/reset", timeout=5).ok
    assert requests.get(f"{base}/stats", timeout=5).json()["meta"] == {"requests": 0, "audiences": 0, "members": 0}


def test_membership_survives_a_restart(tmp_path):
    state = tmp_path / "sandbox.json"
    with Sandbox(port=0, meta_token=TOKEN, state_file=state) as sb:
        sb.meta.create_audience("1", ad_account_id="act_2")
        users(make_api(sb.url), "1", ["EMAIL", "PHONE"], [[sha("a"), sha("1")], [sha("b"), ""]])
    with Sandbox(port=0, meta_token=TOKEN, state_file=state) as sb:
        expected = [{"EMAIL": sha("a"), "PHONE": sha("1")}, {"EMAIL": sha("b")}]
        assert sorted(sb.meta.members("1"), key=lambda m: m["EMAIL"]) == sorted(expected, key=lambda m: m["EMAIL"])
        users(make_api(sb.url), "1", "PHONE_SHA256", [sha("1")], method="DELETE", session=False)
    assert [a["members"] for a in json.loads(state.read_text())["meta"]["audiences"]] == [[{"EMAIL": sha("b")}]]


def test_server_main_serves_until_sigterm_then_saves(tmp_path):
    state = tmp_path / "state.json"
    env = {**os.environ, "SANDBOX_META_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "syncer.sandbox.server", "--port", "0", "--state", str(state),
                             "--meta-audience", "act_3:31"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        users(make_api(url), "31", "EMAIL_SHA256", [sha("a")])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = json.loads(state.read_text())["meta"]["audiences"]
    assert [(a["id"], a["account_id"], a["members"]) for a in saved] == [("31", "3", [{"EMAIL": sha("a")}])]


def test_a_10000_row_request_lands_whole(sandbox, api, audience):
    # its speed (~0.07 s, well over 100k identifiers/s) is bench/push_throughput.py's to measure, not a test's
    data = [sha(str(i)) for i in range(10_000)]
    users(api, audience, "EMAIL_SHA256", data)
    assert len(sandbox.meta.members(audience)) == 10_000
