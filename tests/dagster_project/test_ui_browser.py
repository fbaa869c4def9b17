"""As a person uses it: the Dagster UI in a real browser materializes, shows a gate hold a sync, and approves it.

`dagster dev` (webserver and daemon, whose run queue launches the UI's runs) runs headless on free loopback
ports over a small project and the Sandbox emulator; Debian's chromium, driven by playwright, clicks what a
person clicks. Every action is a click in the UI; a run's status, job and tags are read back through
GraphQL once its page shows it finished.

The click path (Dagster 1.13):
1. **Lineage** (left nav) -> **Materialize all**; the notice "Launched run ..." -> **View** opens the run.
2. The sync asset's page (Assets > dest > buyers_sync) lists the figures in its Metadata table.
3. After a hold: **Jobs** (left nav) -> **approve_buyers_sync** -> **Materialize all**. Dagster asks for no
   confirmation; the run carries the job's tag ``syncer/approve=buyers_sync``.
On a fresh DAGSTER_HOME the UI opens a "Join the Dagster community" dialog once; a person clicks **Skip**.

Screenshots of the held and approved states (and of the page when the test fails) go to pytest's tmp_path
and, when ``$SYNCER_UI_SCREENSHOTS`` names a folder, there too. Without /usr/bin/chromium the test is
skipped, except under ``.ci/run`` (``SYNCER_REQUIRE_BROWSER=1``), which installs it.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project
from tests.dagster_project.test_dagster_dev import _default_signals, free_port

TOKEN = "dagster-ui-token"
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium dials out as it starts, and a closed network refuses it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
UP, RUN, SHOW = 180_000, 240_000, 60_000  # ms: dagster dev starting, a run finishing, a page showing its data
RUN_QUERY = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName tags { key value } } } }"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("SYNCER_REQUIRE_BROWSER"),
                                reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)")


def emails(ids) -> list[tuple]:
    return [(i, f"m{i}@example.com", None, "US", None, None, True, True) for i in ids]


@contextmanager
def dagster_dev(project: Path, home: Path, log_path: Path) -> Iterator[str]:
    """`dagster dev` in a process group of its own, stopped with all it started however the test ends;
    yields the UI's address."""
    home.mkdir()
    shutil.copy(ROOT / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "SYNCER_PROJECT": str(project), "DAGSTER_HOME": str(home), "SANDBOX_META_TOKEN": TOKEN}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "dagster_project.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True, preexec_fn=_default_signals)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def browser_page(base_url: str, on_failure: Callable[[Page], object]) -> Iterator[Page]:
    with sync_playwright() as p:
        # Debian's chromium: playwright never downloads a browser here
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            # tall enough that a sync's whole Metadata table (status first, note and approve last) is in one shot
            page = browser.new_page(base_url=base_url, viewport={"width": 1440, "height": 2400})
            page.set_default_timeout(SHOW)
            expect.set_options(timeout=SHOW)  # playwright's default of 5 s is short for a loaded CI machine
            # shown once per fresh instance, at a moment of its own choosing: a person clicks Skip
            page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True),
                                     lambda skip: skip.click(), no_wait_after=True)
            try:
                yield page
            except BaseException:
                on_failure(page)
                raise
        finally:
            browser.close()


def wait_for_server(page: Page, base_url: str, log_path: Path) -> None:
    """Wait until `dagster dev` serves the UI: the browser probes it (a refused connection rejects the fetch).
    The predicate must be synchronous (a promise counts as true), so each poll starts one probe at a time."""
    try:
        page.wait_for_function("""url => {
            if (!window.probing) {
                window.probing = true;
                fetch(url, {mode: 'no-cors'}).then(() => { window.up = true }, () => {}).finally(() => { window.probing = false });
            }
            return window.up === true }""", arg=f"{base_url}/server_info", timeout=UP, polling=500)
    except PlaywrightTimeout:
        raise AssertionError("dagster dev did not come up:\n" + log_path.read_text()[-3000:]) from None
    page.goto("/")


def materialize_all(page: Page, base_url: str, log_path: Path) -> dict:
    """Click the page's Materialize all, follow the notice to the run, wait until the run page shows it
    finished, and read its status, job and tags through GraphQL."""
    notice = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(notice).to_have_count(0, timeout=RUN)  # the previous run's notice has gone, so this one is ours
    page.get_by_role("button", name="Materialize all").click()
    expect(notice).to_be_visible()
    view = page.get_by_role("link", name="View", exact=True)
    run_id = view.get_attribute("href").rsplit("/", 1)[-1]
    view.click()
    expect(page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first).to_be_visible(timeout=RUN)
    answer = requests.post(f"{base_url}/graphql", timeout=30, json={"query": RUN_QUERY, "variables": {"id": run_id}}).json()
    run = answer["data"]["runOrError"]
    assert run["status"] == "SUCCESS", log_path.read_text()[-3000:]
    return {**run, "tags": {t["key"]: t["value"] for t in run["tags"]}}


def open_sync(page: Page) -> None:
    page.goto("/assets/dest/buyers_sync")
    expect(page.get_by_text("Latest materialization")).to_be_visible()


def figure(page: Page, key: str) -> Locator:
    """The Value cell of one row of the asset's Metadata table, as a person reads it."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    return row.get_by_role("cell").last


def save(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=path)
    if folder := os.environ.get("SYNCER_UI_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
    return path


@pytest.fixture
def sandbox():
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience("1001", name="test")
        yield sb


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    write_customers(root / "warehouse.duckdb", emails(range(1, 101)))
    return write_project(root, destination=meta_on(sandbox.url), sync_extra="gates: {max_removal_pct: 10}\n")


@pytest.mark.slow
def test_a_person_materializes_sees_the_hold_and_approves_it_with_one_click(project: Path, sandbox: Sandbox,
                                                                           tmp_path: Path) -> None:
    log_path = tmp_path / "dagster.log"
    with (dagster_dev(project, tmp_path / "dagster_home", log_path) as base_url,
          browser_page(base_url, lambda page: save(page, tmp_path, "failure.png")) as page):
        wait_for_server(page, base_url, log_path)

        page.get_by_role("link", name=re.compile(r"Lineage$")).click()
        first = materialize_all(page, base_url, log_path)
        open_sync(page)
        expect(figure(page, "status")).to_have_text("ok")
        expect(figure(page, "added")).to_have_text("100")
        assert len(sandbox.meta.members("1001")) == 100 and "syncer/approve" not in first["tags"]

        write_customers(project / "warehouse.duckdb", emails(range(1, 51)))  # half the segment left
        page.get_by_role("link", name=re.compile(r"Lineage$")).click()
        materialize_all(page, base_url, log_path)  # a hold is an answer: the run succeeds
        open_sync(page)
        expect(figure(page, "status")).to_have_text("held")
        expect(figure(page, "removed")).to_have_text("0")
        expect(figure(page, "note")).to_contain_text("50 removals are 50.0% of the 100 members held, above the limit of 10%")
        expect(figure(page, "approve")).to_contain_text("open Jobs → approve_buyers_sync and click Materialize all")
        save(page, tmp_path, "held.png")
        assert len(sandbox.meta.members("1001")) == 100  # nothing was sent

        page.get_by_role("link", name=re.compile(r"Jobs$")).click()
        page.get_by_role("link", name=re.compile(r"approve_buyers_sync$")).click()
        expect(page.get_by_text("Approve sync buyers_sync")).to_be_visible()
        approved = materialize_all(page, base_url, log_path)
        assert (approved["jobName"], approved["tags"]["syncer/approve"]) == ("approve_buyers_sync", "buyers_sync")
        open_sync(page)
        expect(figure(page, "status")).to_have_text("ok")
        expect(figure(page, "removed")).to_have_text("50")
        expect(figure(page, "note")).to_have_text(re.compile(r"^approved\b.*max_removal_pct: 50 removals are 50\.0%"))
        save(page, tmp_path, "approved.png")
        assert len(sandbox.meta.members("1001")) == 50
