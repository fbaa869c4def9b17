"""`syncer reconcile` against the strict emulators: zero drift after a sync, then drift made by hand in the
emulator (a member deleted, one added by hand, one whose email changed), found and repaired as the sync's
``extras`` setting and gates say; a size-only platform (Meta) flagged beyond its approximation. The CLI on
the demo project is at the end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.delivery.engine import Engine
from syncer.delivery.reconcile import Reconciler, ReconcileReport
from syncer.delivery.reconcile_records import last_reconcile
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project

ROOT = Path(__file__).resolve().parents[2]
LIST = "a1b2c3d4e5"
KLAVIYO_LIST = "Y6nRLr"
PLATFORMS = {
    "mailchimp": ("type: mailchimp_audience\napi_key_env: SANDBOX_MAILCHIMP_KEY\nendpoint: {url}\n", f"{LIST}:tag:Buyers"),
    "iterable": ("type: iterable_list\napi_key_env: SANDBOX_ITERABLE_KEY\nendpoint: {url}\n", "1001"),
    "klaviyo": ("type: klaviyo_list\napi_key_env: SANDBOX_KLAVIYO_KEY\nendpoint: {url}\nimport_poll_interval_s: 0.01\n",
                KLAVIYO_LIST),
}


def people(ids) -> list[tuple]:
    return [(i, f"Person{i}@Example.com", None, "US", None, None, True, True) for i in ids]


def email(i: int) -> str:
    return f"person{i}@example.com"


@pytest.fixture
def sandbox(monkeypatch):
    sb = Sandbox(port=0).start()
    sb.mailchimp.create_list(LIST, name="Customers")
    sb.iterable.create_list(1001, "buyers")
    sb.klaviyo.create_list(KLAVIYO_LIST, "buyers")
    for name in ("mailchimp", "iterable", "klaviyo"):
        monkeypatch.setenv(f"SANDBOX_{name.upper()}_KEY", sb.emulators[name].key)
    monkeypatch.setenv("SANDBOX_META_TOKEN", sb.meta.token)
    yield sb
    sb.stop()


class Platform:
    """One listing platform's project, synced once, and the emulator's view of its audience."""

    def __init__(self, root: Path, sandbox: Sandbox, name: str, sync_extra: str = "") -> None:
        body, self.audience = PLATFORMS[name]
        self.name, self.sandbox, self.root = name, sandbox, root
        write_customers(root / "warehouse.duckdb", people(range(1, 21)))
        write_project(root, destination=body.format(url=sandbox.url_for(name)), sync_extra=sync_extra + "send_unknown_consent: true\n")
        sync = root / "syncs" / "buyers_sync.yml"
        sync.write_text(sync.read_text().replace('audience_id: "1001"', f'audience_id: "{self.audience}"'))
        with self.engine() as engine:
            assert [r.status for r in engine.run()] == ["ok"]

    def engine(self) -> Engine:
        return Engine(load_project(self.root))

    def reconcile(self, **kwargs) -> ReconcileReport:
        with self.engine() as engine:
            [report] = Reconciler(engine, **kwargs).run()
        return report

    @property
    def emulator(self):
        return self.sandbox.emulators[self.name]

    def members(self) -> set[str]:
        if self.name == "mailchimp":
            return self.emulator.tag_members(LIST, "Buyers")
        return self.emulator.list_members(1001 if self.name == "iterable" else KLAVIYO_LIST)

    def edit_by_hand(self) -> None:
        """Person 1 taken off the list, a walk-in added, person 3's email changed."""
        self.emulator.remove_from_list(self.audience, email(1))
        self.emulator.add_to_list(self.audience, email="walk-in@example.com")
        self.emulator.change_email(email(3), "person3.new@example.com")


@pytest.fixture(params=sorted(PLATFORMS))
def platform(request, tmp_path, sandbox) -> Platform:
    return Platform(tmp_path, sandbox, request.param)


def figures(report: ReconcileReport) -> tuple:
    return report.status, report.listed, report.missing, report.extra, report.changed, report.readded, report.removed


def test_after_a_sync_reconcile_finds_no_drift_and_sends_nothing(platform):
    writes = platform.emulator.request_count
    report = platform.reconcile()
    assert figures(report) == ("in_sync", 20, 0, 0, 0, 0, 0)
    assert (report.method, report.held, report.requests) == ("listed", 20, 0)
    assert platform.emulator.request_count - writes <= 2  # reads only: the tag's id and one page, or one list
    row = last_reconcile(platform.engine().ledger, "buyers_sync")
    assert (row["command"], row["status"], row["members"]) == ("reconcile", "in_sync", 20)
    assert row["details"]["reconcile"]["listed"] == 20


def test_hand_edits_are_found_and_what_is_missing_is_added_again(platform):
    platform.edit_by_hand()
    report = platform.reconcile()
    everyone = {email(i) for i in range(1, 21)}
    if platform.name == "klaviyo":  # the profile id we cached ties person 3 to the profile whose email changed
        assert figures(report) == ("repaired", 20, 1, 1, 1, 2, 0)  # 1 added again, 3 sent again as the warehouse has it
        assert report.samples == {"missing": ["1"], "changed": ["3"]} and report.left == {"extras_kept": 1}
        # person 3 joins as a profile with the email we sent; the edited profile, tied to nobody now, is an extra
        assert platform.members() == everyone | {"walk-in@example.com", "person3.new@example.com"}
        assert figures(platform.reconcile()) == ("in_sync", 22, 0, 2, 0, 0, 0)
    else:  # Mailchimp and Iterable list emails only: a changed email is the old one missing and the new one extra
        assert figures(report) == ("repaired", 20, 2, 2, 0, 2, 0)
        assert report.samples == {"missing": ["1", "3"]} and report.left == {"extras_kept": 2}
        assert platform.members() == everyone | {"walk-in@example.com", "person3.new@example.com"}
        assert figures(platform.reconcile()) == ("in_sync", 22, 0, 2, 0, 0, 0)  # people added by hand stay, not drift
    ledger = platform.engine().ledger
    assert ledger.held_count("buyers_sync") == 20 and ledger.pending_keys("buyers_sync") == {}


def test_extras_remove_takes_off_whoever_the_sync_never_sent(tmp_path, sandbox):
    platform = Platform(tmp_path, sandbox, "mailchimp", sync_extra="extras: remove\n")
    platform.edit_by_hand()
    report = platform.reconcile()
    assert figures(report) == ("repaired", 20, 2, 2, 0, 2, 2)
    assert platform.members() == {email(i) for i in range(1, 21)}
    assert sandbox.mailchimp.list_members(LIST)["walk-in@example.com"] == "subscribed"  # off the tag, never unsubscribed
    assert figures(platform.reconcile()) == ("in_sync", 20, 0, 0, 0, 0, 0)


def test_a_removal_beyond_the_gates_is_held_until_approved(tmp_path, sandbox):
    platform = Platform(tmp_path, sandbox, "iterable", sync_extra="extras: remove\ngates: {max_removals: 1}\n")
    platform.edit_by_hand()
    held = platform.reconcile()
    assert figures(held) == ("held", 20, 2, 2, 0, 2, 0)  # the missing are added again; the removal waits
    assert "max_removals: 2 removals exceed the limit of 1" in held.reason
    assert "walk-in@example.com" in platform.members()
    approved = platform.reconcile(approve=True)
    assert figures(approved) == ("repaired", 22, 0, 2, 0, 0, 2)
    assert platform.members() == {email(i) for i in range(1, 21)}


def test_members_the_batch_path_is_handling_are_left_to_it(platform):
    ledger = platform.engine().ledger
    for i in (1, 2, 3):
        platform.emulator.remove_from_list(platform.audience, email(i))
    ledger.record_deferred(sync="buyers_sync", op="remove", member_keys=["1"], reason="deferred: throttled")
    ledger.suppress("2", ["buyers"], "purchase", None)
    report = platform.reconcile()
    assert figures(report) == ("repaired", 17, 3, 0, 0, 1, 0)
    assert report.left == {"pending_retry": 1, "suppressed": 1}
    assert platform.members() == {email(i) for i in range(3, 21)}  # only person 3 came back


def test_extras_stay_while_adds_wait_for_a_retry(tmp_path, sandbox):
    platform = Platform(tmp_path, sandbox, "mailchimp", sync_extra="extras: remove\n")
    platform.emulator.add_to_list(platform.audience, email="walk-in@example.com")
    platform.engine().ledger.record_deferred(sync="buyers_sync", op="add", member_keys=["99"], reason="deferred: throttled")
    report = platform.reconcile()
    assert figures(report) == ("drift", 21, 0, 1, 0, 0, 0)
    assert report.left == {"extras_not_removed": 1} and "adds are waiting for a retry" in report.reason
    assert "walk-in@example.com" in platform.members()


def test_extras_stay_when_a_sync_commits_while_the_platform_is_read(tmp_path, sandbox, monkeypatch):
    from destinations.mailchimp.connector import MailchimpAudienceDestination
    from syncer.ledger.store import HeldRow

    platform = Platform(tmp_path, sandbox, "mailchimp", sync_extra="extras: remove\n")
    platform.emulator.add_to_list(platform.audience, email="walk-in@example.com")
    ledger = platform.engine().ledger
    [row] = ledger.held_rows("buyers_sync", ["5"]).values()
    listing = MailchimpAudienceDestination.list_members

    def racing(self, audience):  # a sync commits a batch while the audience is being read
        ledger.commit_batch(sync="buyers_sync", sync_run_id=1, op="refresh", rows=0, attempts=0, failed=[],
                            landed=[HeldRow(row.member_key, row.raw_fp, row.identifiers)])
        yield from listing(self, audience)

    monkeypatch.setattr(MailchimpAudienceDestination, "list_members", racing)
    report = platform.reconcile()
    assert figures(report) == ("drift", 21, 0, 1, 0, 0, 0) and report.left == {"extras_not_removed": 1}
    assert "changed while it was read" in report.reason and "walk-in@example.com" in platform.members()
    monkeypatch.setattr(MailchimpAudienceDestination, "list_members", listing)
    assert figures(platform.reconcile()) == ("repaired", 21, 0, 1, 0, 0, 1)


def test_a_dry_run_reads_and_compares_and_sends_nothing(platform):
    platform.edit_by_hand()
    before = platform.members()
    report = platform.reconcile(dry_run=True)
    assert (report.status, report.readded, report.removed) == ("drift", 0, 0)
    assert report.left["dry_run"] == report.missing + report.changed  # what a real reconcile would send again
    assert platform.members() == before


def test_a_destination_that_asked_us_to_wait_is_not_called(platform):
    platform.engine().ledger.set_wait("dest", 300, "throttled: come back in 5 minutes")
    calls = platform.emulator.request_count
    report = platform.reconcile()
    assert report.status == "deferred" and "asked us to wait until" in report.reason
    assert platform.emulator.request_count == calls


def test_a_long_throttle_defers_this_reconcile_and_the_next(tmp_path, sandbox):
    platform = Platform(tmp_path, sandbox, "klaviyo")
    assert sandbox.klaviyo.throttle_next(600) == 600  # longer than a run waits
    report = platform.reconcile()
    assert report.status == "deferred" and "reconcile again later" in report.reason and report.readded == 0
    calls = sandbox.klaviyo.request_count
    again = platform.reconcile()
    assert again.status == "deferred" and "asked us to wait until" in again.reason
    assert sandbox.klaviyo.request_count == calls  # the wait outlives the run: nobody called


def test_a_platform_failure_is_recorded_with_what_to_fix(tmp_path, sandbox, monkeypatch):
    platform = Platform(tmp_path, sandbox, "mailchimp")
    monkeypatch.setenv("SANDBOX_MAILCHIMP_KEY", "wrong-key")
    report = platform.reconcile()
    assert report.status == "failed" and "SANDBOX_MAILCHIMP_KEY" in report.reason and "wrong-key" not in report.reason
    row = last_reconcile(platform.engine().ledger, "buyers_sync")
    assert (row["status"], row["error_class"], row["error_fault"]) == ("failed", "ConfigError", "operator")


# ----- what the comparison and the size check mean ------------------------------------------------------------
def test_missing_extra_and_changed_as_defined():
    from destinations.base import ListedMember
    from syncer.delivery.reconcile_compare import HeldIndex, compare

    index = HeldIndex({"email", "phone"})
    index.add("a", {"email": "a@x.com", "phone": "+1555", "_consent": "granted"})
    index.add("b", {"email": "b@x.com", "phone": "+1555"})  # shares a's phone: one person to the platform
    index.add("c", {"email": "c@x.com"})
    index.add("d", {"email": "d@x.com"})
    index.add_platform_ids({"c": "P-c#digest", "z": "P-z"})  # a cached id may carry a suffix; z is not held
    drift = compare(index, [
        ListedMember({"email": "a@x.com", "phone": "+1555"}, "P-a"),  # a, and b through the shared phone
        ListedMember({"email": "c.new@x.com"}, "P-c"),  # c's profile, its email changed by hand
        ListedMember({"email": "stranger@x.com"}, "P-z"),  # an id we cached for nobody we hold
        ListedMember({"email": "granted"}),  # a marker value is never an identifier
    ])
    assert (drift.held, drift.listed, drift.missing, drift.changed) == (4, 4, ["d"], ["c"])
    assert [m.identifiers["email"] for m in drift.extra] == ["stranger@x.com", "granted"]


def test_sizes_are_read_as_the_platform_documents_them():
    from syncer.delivery.reconcile_size import SizeRange, check_size, read_range

    assert read_range({"approximate_count_lower_bound": 4900, "approximate_count_upper_bound": 5100}) == SizeRange(4900, 5100)
    assert read_range({"approximate_count_lower_bound": -1, "approximate_count_upper_bound": -1}) is None
    assert read_range({"size_for_search": 7_400}) == SizeRange(1_000, 10_000)  # Google's UserListSizeRange
    assert check_size({}, 10).verdict == "unreadable"
    assert check_size({"size_for_display": 0}, 10).verdict == "ok"  # under 500 covers nobody as well as ten
    assert check_size({"approximate_count_lower_bound": 0, "approximate_count_upper_bound": 0}, 10).verdict == "empty"
    baseline = {"held": 1000, "platform": {"low": 590, "high": 610}}  # a 60% match rate is normal: no flag
    assert check_size({"approximate_count_lower_bound": 1180, "approximate_count_upper_bound": 1220}, 2000, baseline).verdict == "ok"
    assert check_size({"approximate_count_lower_bound": 800, "approximate_count_upper_bound": 820}, 2000, baseline).verdict == "below"


# ----- size only: Meta --------------------------------------------------------------------------------------
def meta_project(root: Path, sandbox: Sandbox, n: int = 100) -> Path:
    sandbox.meta.create_audience("1001", name="buyers")
    write_customers(root / "warehouse.duckdb", people(range(1, n + 1)))
    return write_project(root, destination=meta_on(sandbox.url))


def meta_call(sandbox: Sandbox, method: str, ids) -> None:
    """Add or remove people by hand, as in Ads Manager."""
    from facebook_business.api import FacebookAdsApi, FacebookSession

    session = FacebookSession(access_token=os.environ["SANDBOX_META_TOKEN"])
    session.GRAPH = sandbox.url
    data = [hashlib.sha256(f"person{i}@example.com".encode()).hexdigest() for i in ids]
    params = {"payload": {"schema": "EMAIL_SHA256", "data": data}} | ({"method": "DELETE"} if method == "remove" else {})
    FacebookAdsApi(session, api_version="v26.0").call("POST", ("1001", "users"), params=params)


def test_a_size_only_platform_is_compared_within_its_approximation(tmp_path, sandbox):
    root = meta_project(tmp_path, sandbox)
    with Engine(load_project(root)) as engine:
        engine.run()
        [first] = Reconciler(engine).run()
        assert (first.method, first.status, first.size["verdict"], first.size["platform"]) == ("size", "in_sync", "ok", {"low": 100, "high": 100})
        meta_call(sandbox, "add", [101])  # one more person: 1%, within Meta's approximation
        [within] = Reconciler(engine).run()
        assert (within.status, within.size["verdict"]) == ("in_sync", "ok")
        meta_call(sandbox, "remove", range(1, 41))  # 40 people dropped in Ads Manager
        [below] = Reconciler(engine).run()
        assert (below.status, below.size["verdict"]) == ("drift", "below")
        assert "members dropped outside the syncer" in below.reason and below.requests == 0
        [still] = Reconciler(engine).run()  # a drifted reading never becomes the baseline
        assert still.size["verdict"] == "below"
        meta_call(sandbox, "add", range(1, 41))
        meta_call(sandbox, "add", range(200, 230))  # 30 strangers
        [above] = Reconciler(engine).run()
    assert (above.status, above.size["verdict"]) == ("drift", "above")
    assert above.size["platform"] == {"low": 131, "high": 131}


# ----- the CLI on the demo project ---------------------------------------------------------------------------
def syncer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncer.cli", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ), cwd=ROOT)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    from syncer.demo.setup import fresh_demo_project, start_sandbox

    for name in ("SANDBOX_URL", "SANDBOX_META_TOKEN", "SANDBOX_KLAVIYO_KEY"):
        monkeypatch.delenv(name, raising=False)
    project_dir = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", project_dir, ignore=shutil.ignore_patterns(".syncer", "*.duckdb*"))
    project, _ = fresh_demo_project(project_dir, customers=2_000)
    sandbox = start_sandbox(project, 0)
    with Engine(project) as engine:
        assert {r.status for r in engine.run()} == {"ok"}
    yield project_dir, sandbox
    sandbox.stop()


def test_the_cli_on_the_demo_finds_no_drift_after_a_sync(demo):
    project_dir, _ = demo
    result = syncer("-p", str(project_dir), "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "reconcile" in out and "Traceback" not in out + result.stderr
    for sync in ("high_value_meta", "churn_risk_meta", "cart_abandoners_sms", "high_value_google"):
        assert sync in out
    assert "which hold no membership: nothing to read back" in out  # Twilio
    report = {r["sync"]: r for r in json.loads(syncer("-p", str(project_dir), "--json", "reconcile").stdout)["syncs"]}
    meta = report["high_value_meta"]
    assert (meta["method"], meta["status"], meta["size"]["verdict"]) == ("size", "in_sync", "ok")
    assert report["cart_abandoners_sms"]["status"] == "skipped"
    google = report["high_value_google"]  # the demo's Google destination uses the Data Manager API
    assert (google["method"], google["status"], google["size"]["verdict"]) == ("size", "in_sync", "ok")
    assert {r["status"] for r in report.values()} <= {"in_sync", "skipped"}
    assert "@" not in json.dumps(report)  # counts and member keys only

    status = syncer("-p", str(project_dir), "status")
    assert status.returncode == 0 and "last reconcile" in status.stdout
    rows = {r["sync"]: r for r in json.loads(syncer("-p", str(project_dir), "--json", "status").stdout)["syncs"]}
    assert rows["high_value_meta"]["last_status"] == "ok"  # the last sync run, not the reconcile
    assert rows["high_value_meta"]["last_reconcile"]["status"] == "in_sync"
    runs = json.loads(syncer("-p", str(project_dir), "--json", "history").stdout)["runs"]
    assert runs[0]["command"] == "reconcile" and runs[0]["reason"].startswith("reconcile: ")
    assert "reconcile: size" in syncer("-p", str(project_dir), "history").stdout


def test_the_cli_names_an_unknown_sync_without_a_traceback(demo):
    project_dir, _ = demo
    result = syncer("-p", str(project_dir), "reconcile", "no_such_sync")
    assert result.returncode == 1 and "unknown sync(s): no_such_sync" in result.stderr
    as_run_takes_it = syncer("-p", str(project_dir), "reconcile", "--sync", "no_such_sync")
    assert as_run_takes_it.returncode == 1 and "unknown sync(s): no_such_sync" in as_run_takes_it.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_on_the_demo_finds_and_repairs_drift_made_by_hand_in_klaviyo(demo):
    from syncer.ledger.store import Ledger

    project_dir, sandbox = demo
    ledger = Ledger(load_project(project_dir).ledger_url())
    keys, _ = ledger.held_fingerprints("churn_risk_klaviyo")
    rows = sorted(ledger.held_rows("churn_risk_klaviyo", keys).values(), key=lambda r: r.member_key)
    deleted, changed = rows[0], rows[1]
    klaviyo = sandbox.klaviyo
    klaviyo.remove_from_list("WINBACK", deleted.identifiers["email"])
    klaviyo.add_to_list("WINBACK", email="walk-in@example.com")
    klaviyo.change_email(changed.identifiers["email"], "changed.by.hand@example.com")
    assert deleted.identifiers["email"] not in klaviyo.list_members("WINBACK")

    result = syncer("-p", str(project_dir), "reconcile", "churn_risk_klaviyo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"changed e.g. member {changed.member_key}" in result.stdout and "extras kept (extras: keep): 1" in result.stdout
    assert "@" not in result.stdout + result.stderr
    assert deleted.identifiers["email"] in klaviyo.list_members("WINBACK")  # added again
    assert changed.identifiers["email"] in klaviyo.list_members("WINBACK")  # sent again as the warehouse has it
    assert "walk-in@example.com" in klaviyo.list_members("WINBACK")  # extras: keep
    [again] = json.loads(syncer("-p", str(project_dir), "--json", "reconcile", "churn_risk_klaviyo").stdout)["syncs"]
    # the demo's members have phones: Klaviyo matched the edited profile by its phone and took our email back,
    # so only the walk-in is extra (without a phone the edited profile would be a second, kept extra)
    assert (again["status"], again["missing"], again["extra"], again["changed"]) == ("in_sync", 0, 1, 0)
    assert "changed.by.hand@example.com" not in klaviyo.list_members("WINBACK")
