"""Loading a project folder: a valid project, and every kind of broken file reported precisely.

Each broken case starts from the valid project below, changes one file (or a few), and asserts the
exact problems a person would see: file, line, dotted field and the key words of the message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.errors import ConfigError, SyncError
from syncer.project.config import GateConfig
from syncer.project.project import InvalidProjectError, Problem, Project, json_schemas, load_project, write_json_schemas

VALID: dict[str, str] = {
    "syncer.yml": """\
# Shop project
name: shop
warehouse_url: duckdb:///warehouse.duckdb
gates:
  max_removal_pct: 10
  min_audience_size: 100
""",
    "segments/vip.yml": """\
description: Big spenders
sql_file: vip.sql
member_key: customer_id
identifiers:
  email: email
  phone: phone
consent:
  ads: ads_consent
cadence: "@daily"
""",
    "segments/vip.sql": "SELECT customer_id, email, phone, ads_consent\nFROM customers\nWHERE spend > 1000\n",
    "segments/lapsed.yml": """\
sql: SELECT customer_id, email FROM customers WHERE last_order < current_date - 90
member_key: customer_id
identifiers: {email: email}
""",
    "segments/notes.md": "Files other than yml, yaml and sql are ignored.\n",
    "destinations/meta_ads.yml": """\
type: meta_audience
ad_account_id: act_123
access_token_env: META_ACCESS_TOKEN
app_secret_env: META_APP_SECRET
""",
    "destinations/sandbox.yaml": "type: fake\nmax_batch: 50\n",
    "syncs/vip_meta.yml": """\
segment: vip
destination: meta_ads
audience_id: "2385001"
mode: mirror
identifiers: [email, phone]
gates:
  max_removals: 50
""",
    "syncs/lapsed_meta.yml": """\
segment: lapsed
destination: meta_ads
audience_id: "2385002"
mode: add_only
identifiers:
  - email
channel: sms
""",
}


def make(root: Path, changes: dict[str, str | None] | None = None) -> Path:
    """Write the valid project into ``root`` with ``changes`` applied (None deletes a file)."""
    files = {**VALID, **(changes or {})}
    for rel, text in files.items():
        if text is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def problems_of(root: Path, changes: dict[str, str | None]) -> list[Problem]:
    make(root, changes)
    with pytest.raises(InvalidProjectError) as caught:
        load_project(root)
    return caught.value.problems


def only_problem(root: Path, changes: dict[str, str | None]) -> Problem:
    found = problems_of(root, changes)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def where(problem: Problem) -> tuple[str, int | None, str]:
    return problem.file, problem.line, problem.field


# ---------------------------------------------------------------------------------------------------
# A valid project


def test_a_valid_project_loads_with_names_from_file_stems(tmp_path: Path) -> None:
    project = load_project(make(tmp_path))
    assert isinstance(project, Project) and project.root == tmp_path.resolve()
    assert project.config.name == "shop"
    assert sorted(project.segments) == ["lapsed", "vip"]
    assert sorted(project.destinations) == ["meta_ads", "sandbox"]
    assert project.destinations["sandbox"].type == "fake"
    assert sorted(project.syncs) == ["lapsed_meta", "vip_meta"]
    assert project.state_dir == tmp_path.resolve() / ".syncer"


def test_load_project_accepts_the_path_of_syncer_yml(tmp_path: Path) -> None:
    make(tmp_path)
    assert sorted(load_project(tmp_path / "syncer.yml").syncs) == ["lapsed_meta", "vip_meta"]


def test_segment_sql_is_inline_or_read_from_the_sql_file(tmp_path: Path) -> None:
    project = load_project(make(tmp_path))
    assert project.segment_sql("vip") == VALID["segments/vip.sql"]
    assert project.segment_sql("lapsed").startswith("SELECT customer_id, email FROM customers")
    with pytest.raises(ConfigError, match="unknown segment 'vipp'; did you mean 'vip'"):
        project.segment_sql("vipp")


def test_relative_file_urls_are_made_absolute_against_the_project_folder(tmp_path: Path) -> None:
    project = load_project(make(tmp_path))
    root = tmp_path.resolve().as_posix()
    assert project.warehouse_url() == f"duckdb:///{root}/warehouse.duckdb"
    assert project.ledger_url() == f"sqlite:///{root}/.syncer/ledger.db"


@pytest.mark.parametrize("url, expected", [
    ("duckdb:///data/wh.duckdb?read_only=true", "duckdb:///{root}/data/wh.duckdb?read_only=true"),
    ("duckdb:////srv/wh.duckdb", "duckdb:////srv/wh.duckdb"),
    ("duckdb:///:memory:", "duckdb:///:memory:"),
    ("sqlite+pysqlite:///state/l.db", "sqlite+pysqlite:///{root}/state/l.db"),
    ("postgresql://etl:${PG_PASSWORD}@db.internal/wh", "postgresql://etl:s3cr3t@db.internal/wh"),
    ("duckdb:///${WH_FILE}", "duckdb:///{root}/from_env.duckdb"),
])
def test_warehouse_url_expands_env_vars_then_resolves_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("PG_PASSWORD", "s3cr3t")
    monkeypatch.setenv("WH_FILE", "from_env.duckdb")
    make(tmp_path, {"syncer.yml": f"warehouse_url: '{url}'\nledger_url: '{url}'\n"})
    project = load_project(tmp_path)
    assert project.warehouse_url() == expected.format(root=tmp_path.resolve().as_posix())
    assert project.ledger_url() == project.warehouse_url()


def test_an_unset_env_var_in_the_url_is_a_config_error_at_use_not_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PG_PASSWORD", raising=False)
    project = load_project(make(tmp_path, {"syncer.yml": "warehouse_url: postgresql://etl:${PG_PASSWORD}@db/wh\n"}))
    with pytest.raises(ConfigError, match="PG_PASSWORD"):
        project.warehouse_url()


def test_gates_for_uses_the_project_gates_overridden_key_by_key_by_the_sync(tmp_path: Path) -> None:
    project = load_project(make(tmp_path))
    assert project.gates_for("lapsed_meta") == GateConfig(max_removal_pct=10, min_audience_size=100)
    assert project.gates_for("vip_meta") == GateConfig(max_removal_pct=10, min_audience_size=100, max_removals=50)
    with pytest.raises(ConfigError, match="unknown sync"):
        project.gates_for("nope")


def test_a_mirror_sync_may_switch_the_removal_gates_off(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("  max_removals: 50\n", "  max_removal_pct: null\n  max_removals: null\n")
    project = load_project(make(tmp_path, {"syncs/vip_meta.yml": sync}))
    gates = project.gates_for("vip_meta")
    assert gates.max_removal_pct is None and gates.max_removals is None and gates.min_audience_size == 100


def test_a_channel_without_a_consent_column_is_not_a_problem(tmp_path: Path) -> None:
    project = load_project(make(tmp_path))  # lapsed has no consent columns; its sync uses channel sms
    assert project.syncs["lapsed_meta"].channel == "sms"


def test_the_fingerprint_ignores_layout_and_follows_content(tmp_path: Path) -> None:
    first = load_project(make(tmp_path)).fingerprint()
    reformatted = "# a comment\n" + VALID["syncs/vip_meta.yml"].replace('"2385001"', "'2385001'") + "owners: []\n"
    crlf_sql = VALID["segments/vip.sql"].replace("\n", "  \r\n")
    assert load_project(make(tmp_path, {"syncs/vip_meta.yml": reformatted, "segments/vip.sql": crlf_sql})).fingerprint() == first
    edited_sql = VALID["segments/vip.sql"].replace("1000", "2000")
    assert load_project(make(tmp_path, {"segments/vip.sql": edited_sql})).fingerprint() != first
    make(tmp_path)
    edited_gate = VALID["syncer.yml"].replace("max_removal_pct: 10", "max_removal_pct: 11")
    assert load_project(make(tmp_path, {"syncer.yml": edited_gate})).fingerprint() != first


def test_a_sync_fingerprint_ignores_unrelated_files(tmp_path: Path) -> None:
    before = load_project(make(tmp_path))
    other = VALID["syncs/lapsed_meta.yml"].replace('"2385002"', '"2385009"')
    after = load_project(make(tmp_path, {"syncs/lapsed_meta.yml": other}))
    assert after.fingerprint("vip_meta") == before.fingerprint("vip_meta")
    assert after.fingerprint("lapsed_meta") != before.fingerprint("lapsed_meta")
    assert after.fingerprint() != before.fingerprint()


def test_loading_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, syncer.project.project\n"
        "heavy = [m for m in ('dagster', 'duckdb', 'sqlalchemy', 'facebook_business', 'google.ads', 'pandas',"
        " 'pyarrow', 'requests') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------------
# Broken files: one precise problem each


def test_typo_in_a_key_suggests_the_right_one(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("audience_id:", "audiance_id:")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 3, "audiance_id")
    assert problem.message.startswith("unknown key 'audiance_id'; did you mean 'audience_id'? (allowed: ")
    assert "mode" in problem.message and "gates" in problem.message
    assert str(problem) == f"syncs/vip_meta.yml:3: audiance_id: {problem.message}"


def test_typo_in_a_nested_key(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("max_removals: 50", "max_removal: 50")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 7, "gates.max_removal")
    assert "did you mean 'max_removals'?" in problem.message


def test_unknown_identifier_kind_in_a_segment(tmp_path: Path) -> None:
    segment = VALID["segments/vip.yml"].replace("  email: email", "  emial: email")
    problem = only_problem(tmp_path, {"segments/vip.yml": segment})
    assert where(problem) == ("segments/vip.yml", 5, "identifiers.emial")
    assert problem.message.startswith("unknown key 'emial'; did you mean 'email'? (allowed: email, phone,")


def test_missing_required_key_points_at_the_parent_mapping(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("segment: vip\n", "")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 1, "segment")
    assert problem.message.startswith("required key 'segment' is missing")


def test_missing_required_key_of_a_destination_type(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("ad_account_id: act_123\n", "")
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 1, "ad_account_id")
    assert problem.message == "required key 'ad_account_id' is missing: Ad account id, with or without act_."


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("max_removals: 50", "max_removals: ten")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 7, "gates.max_removals")
    assert problem.message == "expected an integer, got 'ten'"


def test_a_number_where_text_is_expected_says_to_quote_it(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace('"2385001"', "2385001")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 3, "audience_id")
    assert problem.message == 'expected a string, got the number 2385001; quote it so YAML keeps it as text: "2385001"'


def test_out_of_range_value(tmp_path: Path) -> None:
    config = VALID["syncer.yml"].replace("max_removal_pct: 10", "max_removal_pct: 150")
    problem = only_problem(tmp_path, {"syncer.yml": config})
    assert where(problem) == ("syncer.yml", 5, "gates.max_removal_pct")
    assert problem.message == "expected a value of at most 100, got 150"


def test_bad_mode_lists_the_allowed_values(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("mode: mirror", "mode: mirorr")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 4, "mode")
    assert problem.message == "expected one of 'mirror', 'add_only', 'trigger', got 'mirorr'; did you mean 'mirror'?"


def test_a_yaml_boolean_surprise_is_explained(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("mode: mirror", "mode: no")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert problem.message == "expected one of 'mirror', 'add_only', 'trigger', got 'no' (which YAML reads as false)"


def test_unknown_destination_type_lists_the_known_types(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("type: meta_audience", "type: meta_audiance")
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 1, "type")
    assert problem.message.startswith("unknown destination type 'meta_audiance'; did you mean 'meta_audience'? (known types: ")
    assert "'fake'" in problem.message


def test_missing_destination_type(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"destinations/sandbox.yaml": "max_batch: 50\n"})
    assert where(problem) == ("destinations/sandbox.yaml", 1, "type")
    assert problem.message.startswith("required key 'type' is missing; known destination types: ")


def test_a_literal_access_token_is_refused_and_not_echoed(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("access_token_env: META_ACCESS_TOKEN", "access_token: hunter2")
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 3, "access_token")
    assert problem.message == (
        "literal secret in a config file: write 'access_token_env: SOME_ENV_VAR' and export the token in that variable"
    )
    assert "hunter2" not in problem.message


@pytest.mark.parametrize("key", ["api_key", "password", "client_secret", "developer_token", "credentials"])
def test_any_secret_named_key_without_env_suffix_is_refused(tmp_path: Path, key: str) -> None:
    dest = VALID["destinations/meta_ads.yml"] + f"{key}: abc123\n"
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 5, key)
    assert problem.message.startswith("literal secret in a config file")
    assert "access_token_env, app_secret_env" in problem.message


META_TOKEN = "EAABsbCS1iHgBAKZCZBq7ZBZAn4xZCsZBZCZCw1a2b3c4"


def test_a_token_pasted_into_an_env_field_is_called_out_without_echoing_it(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("META_ACCESS_TOKEN", META_TOKEN)
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 3, "access_token_env")
    assert "must hold the NAME of an environment variable" in problem.message
    assert "looks like the secret itself" in problem.message and "rotate" in problem.message
    assert META_TOKEN not in str(problem)


@pytest.mark.parametrize("value, kind", [
    (META_TOKEN, "a Meta access token"),
    ("sk_live_51HxAbCdEfGhIjKlMnOp", "a Stripe secret key"),
    ("xoxb-123456789012-abcdefghijkl", "a Slack token"),
])
def test_a_credential_anywhere_in_a_file_is_a_problem(tmp_path: Path, value: str, kind: str) -> None:
    dest = VALID["destinations/meta_ads.yml"] + f"description: {value}\n"
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 5, "description")
    assert problem.message.startswith(f"this looks like a real credential ({kind})")
    assert value not in str(problem)


def test_a_hex_blob_in_an_env_field_is_a_problem(tmp_path: Path) -> None:
    blob = "A3F9C2D4E5B6A7980F1E2D3C4B5A69788"  # uppercase hex passes the env-name pattern
    dest = VALID["destinations/meta_ads.yml"].replace("META_APP_SECRET", blob)
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 4, "app_secret_env")
    assert "looks like the secret itself" in problem.message


def test_an_env_field_must_hold_an_env_var_name(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("META_ACCESS_TOKEN", "meta-token")
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 3, "access_token_env")
    assert problem.message.startswith("expected the NAME of an environment variable (like META_ACCESS_TOKEN)")


@pytest.mark.parametrize("value, hint", [
    ("${META_ACCESS_TOKEN}", "write the bare name without $ or braces: META_ACCESS_TOKEN"),
    ("meta_access_token", "names are upper case here: META_ACCESS_TOKEN"),
])
def test_near_miss_env_names_get_a_fix(tmp_path: Path, value: str, hint: str) -> None:
    dest = VALID["destinations/meta_ads.yml"].replace("META_ACCESS_TOKEN", f"'{value}'")
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 3, "access_token_env")
    assert problem.message.endswith(hint)


def test_prose_about_tokens_and_urls_is_not_a_secret(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"] + (
        "description: the token lives in META_ACCESS_TOKEN; see https://example.com/docs?token=how for help\n"
        "endpoint: http://127.0.0.1:8510\n"
    )
    assert load_project(make(tmp_path, {"destinations/meta_ads.yml": dest})).destinations["meta_ads"].endpoint


def test_yaml_anchors_and_merge_keys_work_and_are_not_duplicates(tmp_path: Path) -> None:
    sync = """\
<<: {segment: vip, destination: meta_ads, audience_id: "1"}
audience_id: "2385009"
identifiers: [email]
"""
    project = load_project(make(tmp_path, {"syncs/vip_extra.yml": sync}))
    assert project.syncs["vip_extra"].audience_id == "2385009"
    assert project.syncs["vip_extra"].segment == "vip"


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"] + "owners: [!!python/object/apply:os.system [id]]\n"
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 8, "owners[0]")
    assert problem.message.startswith("unsupported YAML tag")


def test_a_url_with_a_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = VALID["syncer.yml"].replace("duckdb:///warehouse.duckdb", "postgresql://etl:hunter2@db.internal/wh")
    problem = only_problem(tmp_path, {"syncer.yml": config})
    assert where(problem) == ("syncer.yml", 3, "warehouse_url")
    assert problem.message.startswith("the URL holds a literal password; write it as ${ENV_VAR}")
    assert "hunter2" not in str(problem)


def test_an_endpoint_with_a_password_is_refused_too(tmp_path: Path) -> None:
    dest = VALID["destinations/meta_ads.yml"] + "endpoint: https://proxy:pa55@proxy.internal:8443\n"
    problem = only_problem(tmp_path, {"destinations/meta_ads.yml": dest})
    assert where(problem) == ("destinations/meta_ads.yml", 5, "endpoint")
    assert "literal password" in problem.message and "pa55" not in str(problem)


def test_unknown_segment_in_a_sync_suggests_the_closest(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("segment: vip", "segment: vipp")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 1, "segment")
    assert problem.message.startswith("unknown segment 'vipp'; did you mean 'vip'? (known: lapsed, vip)")


def test_unknown_destination_in_a_sync(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("destination: meta_ads", "destination: meta")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 2, "destination")
    assert "unknown destination 'meta'; did you mean 'meta_ads'?" in problem.message


def test_an_identifier_the_segment_does_not_map(tmp_path: Path) -> None:
    sync = VALID["syncs/lapsed_meta.yml"].replace("  - email\n", "  - email\n  - phone\n")
    problem = only_problem(tmp_path, {"syncs/lapsed_meta.yml": sync})
    assert where(problem) == ("syncs/lapsed_meta.yml", 7, "identifiers[1]")
    assert problem.message.startswith("identifier 'phone' is not mapped in segment 'lapsed'")
    assert "segments/lapsed.yml (mapped there: email)" in problem.message


def test_a_missing_sql_file(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"segments/vip.sql": None})
    assert where(problem) == ("segments/vip.yml", 2, "sql_file")
    assert problem.message.startswith("sql file 'vip.sql' not found (looked for segments/vip.sql")


def test_both_sql_and_sql_file(tmp_path: Path) -> None:
    segment = VALID["segments/vip.yml"] + "sql: SELECT 1 AS customer_id\n"
    problem = only_problem(tmp_path, {"segments/vip.yml": segment})
    assert where(problem) == ("segments/vip.yml", 10, "sql")
    assert problem.message.startswith("'sql' and 'sql_file' are given; keep exactly one")


def test_neither_sql_nor_sql_file(tmp_path: Path) -> None:
    segment = VALID["segments/lapsed.yml"].split("\n", 1)[1]
    problem = only_problem(tmp_path, {"segments/lapsed.yml": segment})
    assert where(problem) == ("segments/lapsed.yml", 1, "")
    assert problem.message.startswith("give exactly one of 'sql' (inline), 'sql_file'")


def test_bad_cadence(tmp_path: Path) -> None:
    segment = VALID["segments/vip.yml"].replace('"@daily"', "every day")
    problem = only_problem(tmp_path, {"segments/vip.yml": segment})
    assert where(problem) == ("segments/vip.yml", 9, "cadence")
    assert problem.message.startswith("expected @hourly, @daily, @weekly")
    assert problem.message.endswith(", got 'every day'")


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace('audience_id: "2385001"', 'audience_id "2385001"')
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 3, "")
    assert problem.message.startswith("YAML syntax error: ") and "could not find expected ':'" in problem.message


def test_tab_indentation_is_explained(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("  max_removals", "\tmax_removals")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 7, "")
    assert "YAML does not allow tabs" in problem.message


def test_duplicate_key_is_caught(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"] + "mode: add_only\n"
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 8, "mode")
    assert problem.message.startswith("duplicate key 'mode' (first at line 4); YAML keeps only the last one")


def test_duplicate_nested_key_is_caught(tmp_path: Path) -> None:
    segment = VALID["segments/vip.yml"].replace("  phone: phone\n", "  phone: phone\n  email: email_2\n")
    problem = only_problem(tmp_path, {"segments/vip.yml": segment})
    assert where(problem) == ("segments/vip.yml", 7, "identifiers.email")
    assert "duplicate key 'email' (first at line 5)" in problem.message


def test_a_file_name_that_is_not_a_valid_name(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"syncs/VIP-Meta.yml": VALID["syncs/vip_meta.yml"].replace("2385001", "2385003")})
    assert where(problem) == ("syncs/VIP-Meta.yml", None, "")
    assert problem.message.startswith("'VIP-Meta' is not a valid sync name")
    assert "e.g. 'vip_meta.yml'" in problem.message
    assert str(problem).startswith("syncs/VIP-Meta.yml: 'VIP-Meta'")


def test_two_files_with_one_name(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"destinations/sandbox.yml": "type: fake\n"})
    assert where(problem) == ("destinations/sandbox.yml", None, "")
    assert "already defines the destination 'sandbox'" in problem.message


def test_two_syncs_on_one_audience(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"syncs/vip_meta_copy.yml": VALID["syncs/vip_meta.yml"]})
    assert where(problem) == ("syncs/vip_meta_copy.yml", 3, "audience_id")
    assert problem.message.startswith(
        "audience '2385001' of destination 'meta_ads' is already synced by syncs/vip_meta.yml"
    )


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": "# a list by mistake\n- segment: vip\n"})
    assert where(problem) == ("syncs/vip_meta.yml", 2, "")
    assert problem.message == "expected a mapping of 'key: value' lines at the top level, got a list"


def test_empty_file(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": "# nothing yet\n"})
    assert where(problem) == ("syncs/vip_meta.yml", None, "")
    assert problem.message == "the file is empty; expected a mapping with at least: segment, destination, identifiers"


def test_a_mapping_where_a_list_is_expected(tmp_path: Path) -> None:
    sync = VALID["syncs/vip_meta.yml"].replace("identifiers: [email, phone]", "identifiers: email")
    problem = only_problem(tmp_path, {"syncs/vip_meta.yml": sync})
    assert where(problem) == ("syncs/vip_meta.yml", 5, "identifiers")
    assert problem.message == "expected a list, got 'email'; write [email] or one '- email' line per item"


def test_no_syncer_yml(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, {"syncer.yml": None})
    assert where(problem) == ("syncer.yml", None, "")
    assert problem.message.startswith("no syncer.yml in the project folder")


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidProjectError) as caught:
        load_project(tmp_path / "nowhere")
    assert "not a folder" in caught.value.problems[0].message


# ---------------------------------------------------------------------------------------------------
# Many problems at once


def test_every_problem_in_every_file_is_reported_at_once_sorted(tmp_path: Path) -> None:
    found = problems_of(tmp_path, {
        "syncer.yml": VALID["syncer.yml"].replace("max_removal_pct: 10", "max_removal_pct: ten"),
        "syncs/vip_meta.yml": VALID["syncs/vip_meta.yml"]
        .replace("segment: vip", "segment: vipp")
        .replace("mode: mirror", "mode: mirorr")
        .replace("max_removals: 50", "max_removals: -1"),
        "destinations/meta_ads.yml": VALID["destinations/meta_ads.yml"] + "access_token: abc\n",
        "segments/lapsed.yml": VALID["segments/lapsed.yml"] + "cadense: '@daily'\n",
        "syncs/broken.yml": "segment: [\n",
    })
    assert [where(p) for p in found] == [
        ("destinations/meta_ads.yml", 5, "access_token"),
        ("segments/lapsed.yml", 4, "cadense"),
        ("syncer.yml", 5, "gates.max_removal_pct"),
        ("syncs/broken.yml", 2, ""),
        ("syncs/vip_meta.yml", 4, "mode"),
        ("syncs/vip_meta.yml", 7, "gates.max_removals"),
    ]
    assert "did you mean 'cadence'?" in found[1].message
    assert found[2].message == "expected a number, got 'ten'"
    assert found[5].message == "expected a value of at least 0, got -1"


def test_cross_file_checks_run_alongside_file_problems(tmp_path: Path) -> None:
    found = problems_of(tmp_path, {
        "syncer.yml": VALID["syncer.yml"].replace("name: shop", "name: [shop]"),
        "syncs/vip_meta.yml": VALID["syncs/vip_meta.yml"].replace("segment: vip", "segment: vipp"),
    })
    assert [where(p) for p in found] == [("syncer.yml", 2, "name"), ("syncs/vip_meta.yml", 1, "segment")]
    error = InvalidProjectError(found, tmp_path)
    assert isinstance(error, SyncError)
    assert str(error).splitlines() == [
        f"2 problems in the project at {tmp_path}:",
        f"  {found[0]}",
        f"  {found[1]}",
    ]


def test_a_sync_on_a_broken_segment_does_not_cascade(tmp_path: Path) -> None:
    segment = VALID["segments/vip.yml"].replace("member_key: customer_id\n", "")
    found = problems_of(tmp_path, {"segments/vip.yml": segment})
    assert [where(p) for p in found] == [("segments/vip.yml", 1, "member_key")]


# ---------------------------------------------------------------------------------------------------
# JSON Schemas


def _properties(schema: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for model in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in model.get("properties", {}).items():
            found[f"{model.get('title')}.{name}"] = prop
    return found


def test_json_schemas_describe_every_key_and_forbid_unknown_ones() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"syncer.yml", "segment", "destination", "sync"}
    for kind, schema in schemas.items():
        models = [schema, *schema.get("$defs", {}).values()]
        objects = [m for m in models if m.get("type") == "object" and "properties" in m]
        assert objects, kind
        assert all(m.get("additionalProperties") is False for m in objects), kind
        undocumented = [name for name, prop in _properties(schema).items() if not prop.get("description")]
        assert undocumented == [], f"{kind}: add a description to {undocumented}"
    assert "audience_id" in schemas["sync"]["properties"]
    assert schemas["sync"]["properties"]["mode"]["enum"] == ["mirror", "add_only", "trigger"]
    assert {"MetaAudienceConfig", "FakeConfig"} <= set(schemas["destination"]["$defs"])


def test_write_json_schemas(tmp_path: Path) -> None:
    paths = write_json_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in paths) == [
        "destination.schema.json", "segment.schema.json", "sync.schema.json", "syncer.schema.json",
    ]
    sync = json.loads((tmp_path / "schemas" / "sync.schema.json").read_text())
    assert sync["properties"]["segment"]["description"] == "Name of a segment (its file stem)."


def test_twilio_syncs_must_trigger_and_lists_must_not(tmp_path):
    problem = only_problem(tmp_path, {
        "destinations/sms.yml": "type: twilio_sms\naccount_sid_env: SID\nauth_token_env: TOK\n"
                                "from_number: '+14155550100'\nmessages: {cart: hi}\n",
        "syncs/cart_sms.yml": "segment: vip\ndestination: sms\naudience_id: cart\nmode: mirror\nidentifiers: [phone]\n",
    })
    assert where(problem) == ("syncs/cart_sms.yml", 4, "mode") and "expected 'trigger'" in problem.message


def test_an_identifier_the_destination_cannot_take_is_a_problem_at_validate(tmp_path):
    klaviyo = "type: klaviyo_list\napi_key_env: KLAVIYO_KEY\n"
    sync = "segment: vip\ndestination: klaviyo\naudience_id: Ls1\nidentifiers:\n  - email\n  - madid\n"
    segment = VALID["segments/vip.yml"].replace("  phone: phone\n", "  phone: phone\n  madid: device_id\n")
    problem = only_problem(tmp_path, {"destinations/klaviyo.yml": klaviyo, "syncs/vip_klaviyo.yml": sync,
                                      "segments/vip.yml": segment})
    assert where(problem) == ("syncs/vip_klaviyo.yml", 6, "identifiers[1]")
    assert "does not take identifier 'madid'" in problem.message and "email" in problem.message
