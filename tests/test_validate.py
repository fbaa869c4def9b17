"""`syncer validate` finds before a run what the run would fail on a minute later: the segments' SQL and columns
(probed against the warehouse with no rows), unknown segments anywhere, identifiers a destination cannot take,
and unset environment variables (warnings)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from syncer.project.project import load_project
from tests.conftest import FAKE, person, write_customers, write_project
from tests.syncer.test_postgres_ledger import postgres_url  # noqa: F401  (the fixture)
from tests.test_cli import syncer


def _segment(root: Path, name: str, body: str) -> None:
    (root / "segments" / f"{name}.yml").write_text(textwrap.dedent(body))


def _project(root: Path) -> Path:
    write_customers(root / "warehouse.duckdb", [person(i) for i in range(1, 4)])
    return write_project(root, destination=FAKE)


def test_a_syntax_error_and_columns_the_query_does_not_return_are_problems_with_file_and_line(tmp_path: Path) -> None:
    _project(tmp_path)
    _segment(tmp_path, "buyers", """\
        sql: SELECT * FROM customers WHERE in_segment
        member_key: customer_idd
        identifiers: {email: email, phone: mobile}
        consent: {ads: ads_consent, sms: sms_ok}
        """)
    (tmp_path / "segments" / "broken.sql").write_text("SELECT customer_id, email\nFORM customers\n")
    _segment(tmp_path, "broken", "sql_file: broken.sql\nmember_key: customer_id\nidentifiers: {email: email}\n")
    result = syncer("-p", str(tmp_path), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("  segments/broken.yml:1: sql_file: the warehouse refused the query (in segments/broken.sql):")
               and "syntax error" in line for line in lines), result.stderr
    assert "segments/buyers.yml:2: member_key: the query returns no column 'customer_idd'; did you mean 'customer_id'?" in result.stderr
    assert "segments/buyers.yml:3: identifiers.phone: the query returns no column 'mobile'" in result.stderr
    assert "segments/buyers.yml:4: consent.sms: the query returns no column 'sms_ok'" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_validate_prints_a_document_for_a_broken_project_with_the_same_exit_code(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "syncs" / "buyers_sync.yml").write_text('segment: buyer\ndestination: dest\naudience_id: "1"\nidentifiers: [email]\n')
    result = syncer("-p", str(tmp_path), "--json", "validate")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [problem] = report["problems"]
    assert (problem["file"], problem["line"], problem["field"]) == ("syncs/buyers_sync.yml", 1, "segment")
    assert "did you mean 'buyers'" in problem["message"] and report["warnings"] == []


def test_a_conversion_rule_naming_an_unknown_segment_is_a_problem(tmp_path: Path) -> None:
    _project(tmp_path)
    with (tmp_path / "syncer.yml").open("a") as f:
        f.write("conversions:\n  table: conversions\n  rules:\n    - types: [purchase]\n      segments: ['*', buyer]\n")
    result = syncer("-p", str(tmp_path), "validate")
    assert result.returncode == 2
    assert ("syncer.yml:10: conversions.rules[0].segments[1]: unknown segment 'buyer'; did you mean 'buyers'?"
            in result.stderr), result.stderr


def test_an_identifier_the_destination_cannot_take_is_named_with_what_it_takes(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "destinations" / "dest.yml").write_text("type: iterable_list\napi_key_env: ITERABLE_KEY\n")
    (tmp_path / "syncs" / "buyers_sync.yml").write_text(
        'segment: buyers\ndestination: dest\naudience_id: "1"\nidentifiers: [email, phone]\n')
    result = syncer("-p", str(tmp_path), "validate", env={"ITERABLE_KEY": "k"})
    assert result.returncode == 2
    assert ("syncs/buyers_sync.yml:4: identifiers[1]: destination 'dest' (iterable_list) does not take identifier 'phone':"
            " remove it from 'identifiers' (it takes: email, external_id)") in result.stderr, result.stderr


def test_unset_environment_variables_are_warnings_naming_the_variable_and_the_file(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "syncer.yml").write_text((tmp_path / "syncer.yml").read_text()
                                         + "ledger_url: postgresql://syncer:${SYNCER_TEST_PGPASSWORD}@db.internal/ledger\n")
    (tmp_path / "destinations" / "dest.yml").write_text("type: klaviyo_list\napi_key_env: SYNCER_TEST_KLAVIYO_KEY\n"
                                                        "endpoint: ${SYNCER_TEST_URL:-http://127.0.0.1:9}\n")
    (tmp_path / "syncs" / "buyers_sync.yml").write_text('segment: buyers\ndestination: dest\naudience_id: "L1"\nidentifiers: [email]\n')
    result = syncer("-p", str(tmp_path), "validate")
    assert result.returncode == 0, result.stderr
    assert "valid: 1 segments" in result.stdout
    assert ("syncer.yml:6: ledger_url: environment variable SYNCER_TEST_PGPASSWORD (in ${SYNCER_TEST_PGPASSWORD}) is not set"
            in result.stderr), result.stderr
    assert "destinations/dest.yml:2: api_key_env: environment variable SYNCER_TEST_KLAVIYO_KEY is not set" in result.stderr
    assert "SYNCER_TEST_URL" not in result.stderr  # it has a default
    report = json.loads(syncer("-p", str(tmp_path), "--json", "validate").stdout)
    assert report["valid"] is True and report["problems"] == []
    assert sorted(w["file"] for w in report["warnings"]) == ["destinations/dest.yml", "syncer.yml"]


def test_a_warehouse_that_cannot_be_reached_is_said_once_without_its_password(tmp_path: Path) -> None:
    _project(tmp_path)
    _segment(tmp_path, "other", "sql: SELECT 1 AS customer_id, 'a' AS email\nmember_key: customer_id\nidentifiers: {email: email}\n")
    text = (tmp_path / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb",
                                                         "postgresql://syncer:${SYNCER_TEST_PW}@127.0.0.1:9/warehouse")
    (tmp_path / "syncer.yml").write_text(text)
    result = syncer("-p", str(tmp_path), "--json", "validate", env={"SYNCER_TEST_PW": "hunter2-secret"})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    [warning] = report["warnings"]
    assert (warning["file"], warning["line"], warning["field"]) == ("syncer.yml", 2, "warehouse_url")
    assert "could not reach the warehouse postgresql://syncer:***@127.0.0.1:9/warehouse" in warning["message"]
    assert "hunter2-secret" not in result.stdout + result.stderr


def test_a_missing_warehouse_file_is_not_created_by_the_probe(tmp_path: Path) -> None:
    from syncer.project.probe import probe_segments

    write_project(tmp_path, destination=FAKE)
    result = probe_segments(load_project(tmp_path))
    assert result.problems == [] and len(result.warnings) == 1
    assert "does not exist" in result.warnings[0].message
    assert not (tmp_path / "warehouse.duckdb").exists()


@pytest.mark.usefixtures("postgres_url")
def test_the_probe_reads_no_rows_and_goes_on_after_a_failed_query_in_postgres(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    import sqlalchemy as sa

    from syncer.project.probe import probe_segments

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS probe_customers"))
        conn.execute(sa.text("CREATE TABLE probe_customers (customer_id int, email text)"))
        conn.execute(sa.text("INSERT INTO probe_customers VALUES (1, 'a@example.com')"))
    engine.dispose()
    write_project(tmp_path, destination=FAKE)
    (tmp_path / "syncer.yml").write_text((tmp_path / "syncer.yml").read_text().replace("duckdb:///warehouse.duckdb", postgres_url))
    _segment(tmp_path, "buyers", "sql: SELECT customer_id, email FROM probe_customers;\nmember_key: customer_id\n"
                                 "identifiers: {email: email, phone: phone}\n")
    _segment(tmp_path, "a_broken", "sql: SELECT customer_id FROM no_such_table\nmember_key: customer_id\nidentifiers: {email: email}\n")
    (tmp_path / "syncs" / "buyers_sync.yml").write_text('segment: buyers\ndestination: dest\naudience_id: "1"\nidentifiers: [email]\n')
    result = probe_segments(load_project(tmp_path))
    assert result.warnings == []
    by_file = {p.file: p for p in result.problems}
    assert set(by_file) == {"segments/a_broken.yml", "segments/buyers.yml"}  # the failed query did not stop the next
    assert 'relation "no_such_table" does not exist' in by_file["segments/a_broken.yml"].message
    assert "\n" not in by_file["segments/a_broken.yml"].message
    assert (by_file["segments/buyers.yml"].field, by_file["segments/buyers.yml"].line) == ("identifiers.phone", 3)
