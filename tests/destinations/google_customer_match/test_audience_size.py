"""The size of a Customer Match list read back (``HasPlatformCounts``) for ``syncer reconcile``: over the google-ads
SDK against the Google Ads emulator and over the Data Manager API against its emulator, what Google's estimate says
after members land, how its failures read, and reconcile comparing it with the ledger within Google's size ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.base import AudienceRef, HasPlatformCounts
from destinations.google_customer_match.ads_api_emulator import GoogleAdsEmulator
from destinations.google_customer_match.config import GoogleCustomerMatchConfig
from destinations.google_customer_match.data_manager import PER_MINUTE_WAIT_S
from destinations.google_customer_match.data_manager_emulator import DataManagerEmulator
from syncer.delivery.engine import Engine
from syncer.delivery.reconcile import Reconciler, ReconcileReport
from syncer.errors import ConfigError, RateLimited
from syncer.project.project import load_project
from tests.conftest import person, write_customers, write_project
from tests.destinations.google_customer_match.helpers import AUDIENCE, CID, DmTarget, member


def sizes(n: int | None) -> dict[str, int]:
    return {} if n is None else {"size_for_search": n, "size_for_display": n}


# ----- the connector over the SDK -------------------------------------------------------------------

def test_the_size_is_what_google_counts_once_the_jobs_ran(ads, opened):
    destination = opened(ads.config())
    assert isinstance(destination, HasPlatformCounts)
    assert destination.audience_counts(AUDIENCE) == {}  # a new list: Google has not determined a size
    destination.add(AUDIENCE, [member(i) for i in range(1, 1201)])
    assert destination.audience_counts(AUDIENCE) == {}  # the job has not run yet (hours on Google)
    ads.emulator.finish_jobs()
    matched = ads.emulator.user_list_size("555")
    assert destination.audience_counts(AUDIENCE) == sizes(matched)
    assert 600 < matched < 1200  # people Google matched (65% in the emulator), not rows sent; reported exact


def test_every_member_matched_is_counted_exactly(ads, opened, monkeypatch):
    monkeypatch.setattr(ads.emulator, "match_rate", 1.0)  # lists created from now on match everyone
    ads.emulator.create_user_list(CID, "556")
    destination = opened(ads.config())
    audience = AudienceRef("vip_google", "556")
    destination.add(audience, [member(i) for i in range(1, 1001)])
    destination.remove(audience, [member(i) for i in range(1, 11)])
    ads.emulator.finish_jobs()
    assert destination.audience_counts(audience) == sizes(990)


def test_the_size_read_is_one_search(ads, opened):
    destination = opened(ads.config())
    before = ads.calls
    destination.audience_counts(AUDIENCE)
    assert [method for method, _ in ads.emulator.requests[before:]] == ["Search"]


def test_a_missing_user_list_is_a_config_error(ads, opened):
    destination = opened(ads.config())
    with pytest.raises(ConfigError, match="user list 999 does not exist in customer 1234567890"):
        destination.audience_counts(AudienceRef("vip_google", "999"))
    with pytest.raises(ConfigError, match="is not a Google Ads user list id"):
        destination.audience_counts(AudienceRef("vip_google", "vip-list"))


def test_a_throttled_size_read_is_rate_limited(ads, opened):
    destination = opened(ads.config())
    ads.emulator.inject("RESOURCE_EXHAUSTED", retry_delay=12, method="Search")
    with pytest.raises(RateLimited) as caught:
        destination.audience_counts(AUDIENCE)
    assert caught.value.retry_after == 12
    assert destination.audience_counts(AUDIENCE) == {}  # the next read goes through


def test_refused_credentials_are_a_config_error(ads, opened, monkeypatch):
    monkeypatch.setenv("GADS_TOKEN", "expired")
    destination = opened(ads.config())
    with pytest.raises(ConfigError, match="GADS_TOKEN"):
        destination.audience_counts(AUDIENCE)


# ----- the connector over the Data Manager API ----------------------------------------------------

def test_data_manager_the_size_is_what_google_counts_after_ingesting(dm, opened):
    destination = opened(dm.config())
    assert isinstance(destination, HasPlatformCounts)
    assert destination.audience_counts(AUDIENCE) == {}  # a new list: Google reports no size
    destination.add(AUDIENCE, [member(i) for i in range(1, 1201)])
    matched = dm.emulator.user_list_size("555")
    assert destination.audience_counts(AUDIENCE) == sizes(matched)
    assert 600 < matched < 1200  # people Google matched (65% in the emulator), not rows sent


def test_data_manager_every_member_matched_is_counted_exactly(dm, opened, monkeypatch):
    monkeypatch.setattr(dm.emulator, "match_rate", 1.0)  # lists created from now on match everyone
    dm.emulator.create_user_list(CID, "556")
    destination = opened(dm.config())
    audience = AudienceRef("vip_google", "556")
    destination.add(audience, [member(i) for i in range(1, 1001)])
    destination.remove(audience, [member(i) for i in range(1, 11)])
    assert destination.audience_counts(audience) == sizes(990)
    destination.remove(audience, [member(i) for i in range(11, 1001)])
    assert destination.audience_counts(audience) == {}  # Google leaves a zero out: read as no size, never as 0


def test_data_manager_the_size_read_is_one_get_of_the_user_list(dm, opened):
    destination = opened(dm.config())
    before = dm.calls
    destination.audience_counts(AUDIENCE)
    assert dm.emulator.requests[before:] == [("GET", "/v1/accountTypes/GOOGLE_ADS/accounts/1234567890/userLists/555", 0)]


def test_data_manager_a_missing_user_list_is_a_config_error(dm, opened):
    dm.emulator.create_user_list("5555555555", "777")  # another customer's list
    destination = opened(dm.config())
    for missing in ("999", "777"):
        with pytest.raises(ConfigError, match=f"has no user list {missing} of customer 1234567890 of destination 'google_vip'"):
            destination.audience_counts(AudienceRef("vip_google", missing))
    with pytest.raises(ConfigError, match="is not a Google Ads user list id"):
        destination.audience_counts(AudienceRef("vip_google", "vip-list"))


def test_data_manager_a_customer_out_of_reach_is_a_config_error(dm, opened):
    with pytest.raises(ConfigError, match="may not read user list 555 of Google Ads customer 2222222222"):
        opened(dm.config(customer_id="222-222-2222")).audience_counts(AUDIENCE)
    dm.emulator.link_manager("9999999999", CID)
    with pytest.raises(ConfigError, match="if access goes through a manager account, set login_customer_id"):
        opened(dm.config()).audience_counts(AUDIENCE)
    assert opened(dm.config(login_customer_id="999-999-9999")).audience_counts(AUDIENCE) == {}  # sent as login-account


def test_data_manager_a_throttled_size_read_is_rate_limited(dm, opened):
    destination = opened(dm.config())
    dm.throttle(12)
    with pytest.raises(RateLimited) as caught:
        destination.audience_counts(AUDIENCE)
    assert caught.value.retry_after == 12
    dm.throttle(None)  # ManagementReadRequestsPerMinutePerProject: the minute's quota
    with pytest.raises(RateLimited) as caught:
        destination.audience_counts(AUDIENCE)
    assert caught.value.retry_after == PER_MINUTE_WAIT_S
    assert destination.audience_counts(AUDIENCE) == {}  # the next read goes through


def test_data_manager_refused_credentials_are_a_config_error(dm, opened, monkeypatch):
    monkeypatch.setenv("DM_TOKEN", "expired")
    with pytest.raises(ConfigError, match="DM_TOKEN"):
        opened(dm.config()).audience_counts(AUDIENCE)


# ----- through syncer reconcile -------------------------------------------------------------------

MEMBERS = 2_000


def ads_project(root: Path, emulator: GoogleAdsEmulator) -> Path:
    emulator.reset()
    emulator.latency = 0.0
    emulator.create_user_list(CID, "1001")
    write_customers(root / "warehouse.duckdb", [person(i) for i in range(1, MEMBERS + 1)])
    return write_project(root, destination=f"""\
        type: google_customer_match
        customer_id: "{CID}"
        transport: google_ads_api
        access_token_env: GADS_TOKEN
        developer_token_env: GADS_DEV
        endpoint: {emulator.endpoint}
        """)


def remove_by_hand(emulator: GoogleAdsEmulator, opened, people: range) -> None:
    """People taken off the list by another tool (the ledger never hears of it); hours pass."""
    config = GoogleCustomerMatchConfig(type="google_customer_match", customer_id=CID, transport="google_ads_api",
                                       access_token_env="GADS_TOKEN", developer_token_env="GADS_DEV", endpoint=emulator.endpoint)
    opened(config, name="another_tool").remove(AudienceRef("by_hand", "1001"), [member(i) for i in people])
    emulator.finish_jobs()


def reconcile(engine: Engine) -> ReconcileReport:
    [report] = Reconciler(engine).run()
    return report


def test_reconcile_compares_the_google_size_with_the_ledger(ads_server, tmp_path, opened):
    root = ads_project(tmp_path, ads_server)
    with Engine(load_project(root)) as engine:
        [run] = engine.run()
        assert (run.status, run.added) == ("ok", MEMBERS)
        early = reconcile(engine)  # the jobs have not run: Google has no size yet
        assert (early.method, early.status, early.size["verdict"]) == ("size", "skipped", "unreadable")

        ads_server.finish_jobs()
        matched = ads_server.user_list_size("1001")
        assert 1_000 <= matched < MEMBERS  # ONE_THOUSAND_TO_TEN_THOUSAND: a normal match rate, not drift
        first = reconcile(engine)
        assert (first.status, first.size["verdict"], first.size["counts"]) == ("in_sync", "ok", sizes(matched))
        assert first.size["platform"] == {"low": 1_000, "high": 10_000} and first.requests == 0

        remove_by_hand(ads_server, opened, range(1, 2))  # one person: within Google's size ranges
        within = reconcile(engine)
        assert (within.status, within.size["verdict"], within.held) == ("in_sync", "ok", MEMBERS)

        remove_by_hand(ads_server, opened, range(2, 1_601))  # 1,600 people: LESS_THAN_FIVE_HUNDRED left
        assert ads_server.user_list_size("1001") < 500
        below = reconcile(engine)
    assert (below.status, below.size["verdict"]) == ("drift", "below")
    assert below.size["platform"] == {"low": 0, "high": 500} and "members dropped outside the syncer" in below.reason
    assert below.requests == 0 and below.readded == 0  # a flag, never a repair


def dm_project(root: Path, emulator: DataManagerEmulator, url: str) -> Path:
    emulator.create_user_list(CID, "1001")
    write_customers(root / "warehouse.duckdb", [person(i) for i in range(1, MEMBERS + 1)])
    return write_project(root, destination=f"""\
        type: google_customer_match
        customer_id: "{CID}"
        transport: data_manager
        access_token_env: DM_TOKEN
        customer_match_terms_accepted: true
        endpoint: {url}
        """)


def remove_from_data_manager_by_hand(dm: DmTarget, opened, people: range) -> None:
    """People taken off the list by another tool (the ledger never hears of it)."""
    opened(dm.config(), name="another_tool").remove(AudienceRef("by_hand", "1001"), [member(i) for i in people])


def test_reconcile_compares_the_data_manager_size_with_the_ledger(dm, tmp_path, opened):
    root = dm_project(tmp_path, dm.emulator, dm.url)
    with Engine(load_project(root)) as engine:
        [run] = engine.run()
        assert (run.status, run.added) == ("ok", MEMBERS)
        matched = dm.emulator.user_list_size("1001")
        assert 1_000 <= matched < MEMBERS  # ONE_THOUSAND_TO_TEN_THOUSAND: a normal match rate, not drift
        calls = dm.calls
        first = reconcile(engine)
        assert (first.method, first.status, first.size["verdict"], first.size["counts"]) == ("size", "in_sync", "ok", sizes(matched))
        assert first.size["platform"] == {"low": 1_000, "high": 10_000} and first.requests == 0
        assert dm.calls == calls + 1  # one userLists.get

        remove_from_data_manager_by_hand(dm, opened, range(1, 2))  # one person: within Google's size ranges
        within = reconcile(engine)
        assert (within.status, within.size["verdict"], within.held) == ("in_sync", "ok", MEMBERS)

        remove_from_data_manager_by_hand(dm, opened, range(2, 1_601))  # 1,600 people: under 500 left
        assert dm.emulator.user_list_size("1001") < 500
        below = reconcile(engine)
    assert (below.status, below.size["verdict"]) == ("drift", "below")
    assert below.size["platform"] == {"low": 0, "high": 500} and "members dropped outside the syncer" in below.reason
    assert below.requests == 0 and below.readded == 0  # a flag, never a repair
