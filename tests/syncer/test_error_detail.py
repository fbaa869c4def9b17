"""Errors that keep their detail: the platform's own words of the error that failed a sync reach the ledger,
the log and the report, scrubbed of PII and secrets; an old ledger gains the columns when it opens."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import syncer.errors as errors
from destinations.fake.connector import FakeDestination
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.engine import Engine
from syncer.errors import ConfigError, PermanentError, RateLimited, SyncError
from syncer.ledger import tables
from syncer.ledger.failures import DETAIL_LIMIT, scrub_detail, secret_env_names
from syncer.ledger.store import Ledger
from syncer.ledger.tables import SCHEMA_VERSION
from syncer.project.project import load_project
from tests.conftest import FAKE, person, write_customers, write_project
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (fixture: a real server for this module)

EMAIL = "Person1@Example.com"
DETAIL = f'HTTP 400 code 100 fbtrace_id AbC123xyz: {{"error": "invalid member {EMAIL}"}}'
NEW_COLUMNS = ("error_class", "error_fault", "error_detail")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 26)])
    return write_project(tmp_path, destination=FAKE)


def run(root: Path) -> tuple:
    with Engine(load_project(root), policy=RetryPolicy(attempts=3, base_wait=0.0, jitter=0.0), sleep=lambda s: None) as engine:
        [report] = engine.run()
        [row] = engine.ledger.history(limit=1)
    return report, row


def test_the_detail_of_a_failed_sync_is_stored_redacted_with_its_class_and_fault(project: Path, caplog) -> None:
    FakeDestination.fail_calls = {1: PermanentError("Meta refused the batch for audience 1001", detail=DETAIL)}
    with caplog.at_level(logging.INFO, logger="syncer"):
        report, row = run(project)
    assert report.status == row["status"] == "failed"
    assert (row["error_class"], row["error_fault"]) == ("PermanentError", "platform")
    assert row["error_detail"] == 'HTTP 400 code 100 fbtrace_id AbC123xyz: {"error": "invalid member <redacted>"}'
    assert report.error_detail == row["error_detail"] and row["reason"] == "Meta refused the batch for audience 1001"
    [record] = [r for r in caplog.records if r.name == "syncer.delivery.engine"]
    assert record.levelno == logging.WARNING
    assert "PermanentError" in record.getMessage() and "fbtrace_id AbC123xyz" in record.getMessage()
    assert EMAIL not in caplog.text and EMAIL.lower() not in caplog.text


def test_a_sync_cut_short_by_throttling_keeps_the_detail_as_transient(project: Path) -> None:
    FakeDestination.fail_calls = {2: RateLimited("hourly limit", retry_after=3600, detail="HTTP 429 x-app-usage call_count=100")}
    report, row = run(project)
    assert report.status == row["status"] == "partial"
    assert (row["error_class"], row["error_fault"], row["error_detail"]) == ("RateLimited", "transient",
                                                                             "HTTP 429 x-app-usage call_count=100")


def test_an_error_before_any_send_is_stored_too_and_a_clean_run_stores_none(project: Path) -> None:
    FakeDestination.fail_calls = {1: ConfigError("token expired: export a new one in META_TOKEN")}
    _, row = run(project)
    assert (row["error_class"], row["error_fault"], row["error_detail"]) == ("ConfigError", "operator", None)
    _, clean = run(project)
    assert clean["status"] == "ok" and all(clean[c] is None for c in NEW_COLUMNS)


def test_a_secret_from_the_environment_never_lands_in_the_ledger(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ACCESS_TOKEN", "EAAB-sekrit-0123")
    FakeDestination.fail_calls = {1: PermanentError("refused", detail="echoed header Authorization: OAuth EAAB-sekrit-0123")}
    _, row = run(project)
    assert row["error_detail"] == "echoed header Authorization: OAuth <secret>"


def test_scrubbing_masks_named_secrets_credentials_and_pii_then_caps_the_length(monkeypatch) -> None:
    monkeypatch.setenv("ODDLY_NAMED", "hunter2hunter2")
    text = ("hunter2hunter2 ?access_token=abc123&x=1 Bearer eyJ0.abc.def {\"password\": \"pw12345\"} "
            f"+1 415 555 0101 {EMAIL}\n\x1b[31mred")
    assert scrub_detail(text, env_names=["ODDLY_NAMED"]) == (
        '<secret> ?access_token=<secret>&x=1 Bearer <secret> {"password": "<secret>"} <redacted> <redacted> [31mred')
    assert "hunter2hunter2" in scrub_detail(text)  # a name that does not look secret is masked only when named
    assert scrub_detail("Error validating access token: Session has expired") == (
        "Error validating access token: Session has expired")
    long = scrub_detail("x" * 5000)
    assert len(long) == DETAIL_LIMIT and long.endswith("…")
    assert scrub_detail("") is None and scrub_detail(None) is None


def test_the_engine_masks_the_variables_its_destinations_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("META_CREDS_FOR_VIP", "zz-top-secret-99")
    write_project(tmp_path, destination="""\
        type: meta_audience
        ad_account_id: act_1
        access_token_env: META_CREDS_FOR_VIP
        """)
    project = load_project(tmp_path)
    assert secret_env_names(project.destinations.values()) == ["META_CREDS_FOR_VIP"]
    with Engine(project) as engine:
        assert engine.scrub("got zz-top-secret-99 back") == "got <secret> back"


def test_every_error_class_has_a_fault_a_docstring_and_a_row_in_the_module_table() -> None:
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert {c.__name__ for c in classes} >= {"SyncError", "ConfigError", "PermanentError", "BatchTooLargeError",
                                             "TransientError", "RateLimited", "GateHeld", "StalePlanError"}
    for cls in classes:
        assert issubclass(cls, SyncError) and cls.fault in ("operator", "platform", "transient", "caller")
        assert cls.__doc__ and cls.__doc__.strip()
        assert re.search(rf"^{cls.__name__}\s+{cls.fault}\s+\S", errors.__doc__, re.MULTILINE), cls.__name__
        assert f"── {cls.__name__}" in errors.__doc__ or cls is SyncError


# --- an old ledger ---------------------------------------------------------------------------


def _make_old_ledger(url: str) -> None:
    """A ledger as version 1 wrote it: no error columns on sync_runs, schema version 1, one finished sync run."""
    Ledger(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for column in NEW_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE sync_runs DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE sync_state DROP COLUMN batch_version"))  # version 3's
        conn.execute(sa.text("ALTER TABLE sync_state DROP COLUMN log_rows"))  # version 5's
        conn.execute(sa.text("DELETE FROM schema_version"))
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (1, 1)"))
        conn.execute(sa.text("INSERT INTO runs (command, started_at, finished_at, status) VALUES ('run', 1, 2, 'failed')"))
        conn.execute(sa.text("INSERT INTO sync_runs (run_id, sync, status, reason, started_at, finished_at)"
                             " SELECT max(id), 'old_sync', 'failed', 'refused', 1, 2 FROM runs"))
    engine.dispose()


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("sync_runs")}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def old_ledger_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
    else:  # a database of its own, so the other tests' ledger keeps its shape
        server = request.getfixturevalue("postgres_url")
        name = f"old_{request.node.name}".lower().replace("[", "_").replace("]", "")
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = server.rsplit("/", 1)[0] + f"/{name}"
    _make_old_ledger(url)
    return url


def test_an_old_ledger_gains_the_error_columns_when_it_opens(old_ledger_url: str) -> None:
    assert not set(NEW_COLUMNS) & _columns(old_ledger_url)
    ledger = Ledger(old_ledger_url)
    assert set(NEW_COLUMNS) <= _columns(old_ledger_url)
    [old] = ledger.history()
    assert (old["sync"], old["reason"], old["error_detail"]) == ("old_sync", "refused", None)
    sync_run = ledger.start_sync_run(ledger.start_run("run"), "new_sync", plan_hash=None, members=None)
    ledger.finish_sync_run(sync_run, status="failed", reason="refused", error_class="PermanentError",
                           error_fault="platform", error_detail=f"HTTP 400 for {EMAIL}")
    assert ledger.history("new_sync")[0]["error_detail"] == "HTTP 400 for <redacted>"  # the ledger scrubs again
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() == SCHEMA_VERSION == 5
        assert {"batch_version", "log_rows"} <= {c["name"] for c in sa.inspect(conn).get_columns("sync_state")}
        assert "poll_error" in {c["name"] for c in sa.inspect(conn).get_columns("platform_jobs")}
    ledger.close()
    Ledger(old_ledger_url).close()  # opening again migrates nothing


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_ledger_migrated_by_another_process_at_the_same_moment_still_opens(backend: str, tmp_path: Path, request,
                                                                             monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    Ledger(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the columns were added by the other process, which has not recorded the version yet
        conn.execute(sa.text("DELETE FROM schema_version"))
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (1, 1)"))
    engine.dispose()
    seen: list[str] = []
    real = tables._stored_columns

    def stale_once(conn, table):  # our first look predates the other process's ALTER
        seen.append(table.name)
        return set() if len(seen) == 1 else real(conn, table)

    monkeypatch.setattr(tables, "_stored_columns", stale_once)
    ledger = Ledger(url)
    assert len(seen) > 1 and set(NEW_COLUMNS) <= _columns(url)
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() == SCHEMA_VERSION
    ledger.close()
