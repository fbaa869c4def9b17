"""Segments written as ``dbt: <model>``: resolved from the dbt project's manifest.json, problems with file and line.

The manifests here are written by hand with the fields dbt writes (a real one, from ``dbt parse`` on
``examples/dbt_demo``, is used by ``tests/dagster_project/test_dbt_segments.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from syncer.errors import ConfigError
from syncer.project.project import InvalidProjectError, Problem, inspect_project, load_project

ROOT = Path(__file__).resolve().parents[2]


def node(name: str, package: str = "shop_dbt", *, relation: str | None = "default", materialized: str = "table",
         **extra) -> dict:
    return {"unique_id": f"model.{package}.{name}", "resource_type": "model", "name": name, "package_name": package,
            "database": "warehouse", "schema": "marts", "alias": name, "config": {"materialized": materialized},
            "relation_name": f'"warehouse"."marts"."{name}"' if relation == "default" else relation, **extra}


def manifest(*nodes: dict, disabled: dict | None = None) -> dict:
    seed = {"unique_id": "seed.shop_dbt.country_codes", "resource_type": "seed", "name": "country_codes",
            "package_name": "shop_dbt", "relation_name": '"warehouse"."main"."country_codes"'}
    return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
                         "project_name": "shop_dbt"},
            "nodes": {n["unique_id"]: n for n in (*nodes, seed)}, "sources": {}, "disabled": disabled or {}}


def make(root: Path, model: str = "high_value_customers", *, dbt_block: str | None = "dbt:\n  project_dir: dbt\n",
         nodes: tuple[dict, ...] = (node("high_value_customers"), node("stg_customers")), warehouse: str = "postgresql://analyst@db.internal/shop",
         ) -> Path:
    (root / "segments").mkdir(parents=True)
    (root / "syncer.yml").write_text(f"name: shop\nwarehouse_url: {warehouse}\n" + (dbt_block or ""))
    (root / "segments" / "vip.yml").write_text(textwrap.dedent(f"""\
        description: Big spenders, built in dbt
        dbt: {model}
        member_key: customer_id
        identifiers: {{email: email}}
        """))
    if nodes is not None:
        (root / "dbt" / "target").mkdir(parents=True)
        (root / "dbt" / "target" / "manifest.json").write_text(json.dumps(manifest(*nodes)))
    return root


def only_problem(root: Path) -> Problem:
    with pytest.raises(InvalidProjectError) as caught:
        load_project(root)
    [problem] = caught.value.problems
    return problem


@pytest.mark.parametrize("written", ["high_value_customers", "shop_dbt.high_value_customers",
                                     "model.shop_dbt.high_value_customers"])
def test_a_dbt_segment_reads_the_relation_dbt_builds(tmp_path: Path, written: str) -> None:
    project = load_project(make(tmp_path, written))
    assert project.segment_sql("vip") == 'SELECT * FROM "warehouse"."marts"."high_value_customers"'


def test_an_unknown_model_is_a_problem_on_the_dbt_line_with_close_matches(tmp_path: Path) -> None:
    problem = only_problem(make(tmp_path, "high_value_customer"))
    assert (problem.file, problem.line, problem.field) == ("segments/vip.yml", 2, "dbt")
    assert "no dbt model 'high_value_customer'" in problem.message
    assert "did you mean 'high_value_customers'" in problem.message
    assert "run `dbt parse`" in problem.message and "in dbt/" in problem.message


def test_validate_reports_the_unknown_model_and_probes_nothing_for_it(tmp_path: Path) -> None:
    """``syncer validate`` runs inspect_project, then the warehouse probe over the valid part: the broken
    segment is not part of it, so the probe never asks for its (missing) query."""
    project, problems, _ = inspect_project(make(tmp_path, "nope_model"))
    assert [(p.file, p.line, p.field) for p in problems] == [("segments/vip.yml", 2, "dbt")]
    assert project is not None and "vip" not in project.segments


def test_a_missing_manifest_says_which_dbt_command_writes_it(tmp_path: Path) -> None:
    problem = only_problem(make(tmp_path, nodes=None))
    assert (problem.file, problem.line, problem.field) == ("segments/vip.yml", 2, "dbt")
    assert "dbt manifest dbt/target/manifest.json not found" in problem.message
    assert "run `dbt parse` (or `dbt compile` / `dbt build`) in dbt/" in problem.message


def test_a_manifest_elsewhere_is_named_in_the_dbt_block(tmp_path: Path) -> None:
    root = make(tmp_path, dbt_block="dbt:\n  project_dir: dbt\n  manifest: artifacts/manifest.json\n")
    assert "artifacts/manifest.json not found" in only_problem(root).message
    (root / "artifacts").mkdir()
    (root / "dbt" / "target" / "manifest.json").rename(root / "artifacts" / "manifest.json")
    assert "high_value_customers" in load_project(root).segment_sql("vip")


def test_a_dbt_segment_without_a_dbt_block_says_what_to_add(tmp_path: Path) -> None:
    problem = only_problem(make(tmp_path, dbt_block=None))
    assert problem.field == "dbt" and "syncer.yml has no 'dbt:' block" in problem.message


def test_an_unknown_key_in_the_dbt_block_is_a_problem(tmp_path: Path) -> None:
    problem = only_problem(make(tmp_path, dbt_block="dbt:\n  project_dir: dbt\n  manifest_path: x.json\n"))
    assert (problem.file, problem.line) == ("syncer.yml", 5) and "manifest" in problem.message


def test_an_ephemeral_model_builds_no_relation(tmp_path: Path) -> None:
    problem = only_problem(make(tmp_path, nodes=(node("high_value_customers", relation=None, materialized="ephemeral"),)))
    assert "ephemeral" in problem.message and "materialize it as a view or table" in problem.message


def test_a_seed_is_not_a_model_and_a_disabled_model_is_named_so(tmp_path: Path) -> None:
    assert "'country_codes' is a dbt seed, not a model" in only_problem(make(tmp_path / "a", "country_codes")).message
    root = make(tmp_path / "b", "old_vips")
    data = manifest(node("high_value_customers"))
    data["disabled"] = {"model.shop_dbt.old_vips": [node("old_vips")]}
    (root / "dbt" / "target" / "manifest.json").write_text(json.dumps(data))
    assert "dbt model 'old_vips' is disabled" in only_problem(root).message


def test_a_name_in_two_packages_means_the_root_projects_model(tmp_path: Path) -> None:
    nodes = (node("customers", "shop_dbt"), node("customers", "stripe_package"))
    project = load_project(make(tmp_path / "a", "customers", nodes=nodes))
    assert project.segment_sql("vip") == 'SELECT * FROM "warehouse"."marts"."customers"'
    other = load_project(make(tmp_path / "b", "stripe_package.customers", nodes=nodes))
    assert other.segments["vip"].dbt == "stripe_package.customers"
    both_foreign = (node("customers", "a_package"), node("customers", "b_package"))
    problem = only_problem(make(tmp_path / "c", "customers", nodes=both_foreign))
    assert "several packages ('a_package.customers', 'b_package.customers')" in problem.message


def test_a_versioned_model_by_its_name_is_its_latest_version(tmp_path: Path) -> None:
    v1 = node("vips", relation='"warehouse"."marts"."vips_v1"', version=1, latest_version=2)
    v2 = node("vips", relation='"warehouse"."marts"."vips_v2"', version=2, latest_version=2)
    v1["unique_id"], v2["unique_id"] = "model.shop_dbt.vips.v1", "model.shop_dbt.vips.v2"
    project = load_project(make(tmp_path, "vips", nodes=(v1, v2)))
    assert project.segment_sql("vip") == 'SELECT * FROM "warehouse"."marts"."vips_v2"'


@pytest.mark.parametrize(("warehouse", "relation"), [
    ("postgresql://analyst@db.internal/shop", '"warehouse"."marts"."vips"'),
    ("bigquery://my-project", "`warehouse`.`marts`.`vips`"),
    ("snowflake://acct/db", "warehouse.marts.vips"),  # unquoted: Snowflake folds to upper case, as dbt does
])
def test_without_relation_name_the_parts_are_quoted_for_the_warehouse(tmp_path: Path, warehouse: str, relation: str) -> None:
    project = load_project(make(tmp_path, "vips", nodes=(node("vips", relation=None),), warehouse=warehouse))
    assert project.segment_sql("vip") == f"SELECT * FROM {relation}"


def test_on_a_duckdb_warehouse_the_relation_is_read_from_the_attached_file(tmp_path: Path) -> None:
    """The syncer attaches a DuckDB warehouse under an alias of its own, so dbt's database (the file's stem)
    is left out of the relation, once it is checked to be the warehouse's file."""
    project = load_project(make(tmp_path / "a", warehouse="duckdb:///data/warehouse.duckdb"))
    assert project.segment_sql("vip") == 'SELECT * FROM "marts"."high_value_customers"'
    problem = only_problem(make(tmp_path / "b", warehouse="duckdb:///analytics.duckdb"))
    assert (problem.file, problem.line, problem.field) == ("segments/vip.yml", 2, "dbt")
    assert "into the DuckDB database 'warehouse', but the syncer's warehouse is 'analytics'" in problem.message


def test_a_manifest_gone_after_loading_is_a_config_error_naming_the_segment_file(tmp_path: Path) -> None:
    root = make(tmp_path)
    project = load_project(root)
    (root / "dbt" / "target" / "manifest.json").unlink()
    with pytest.raises(ConfigError) as caught:
        project.segment_sql("vip")
    assert str(caught.value).startswith("segments/vip.yml: dbt: dbt manifest dbt/target/manifest.json not found")


def test_a_rebuilt_manifest_is_read_again(tmp_path: Path) -> None:
    root = make(tmp_path)
    project = load_project(root)
    assert "high_value_customers" in project.segment_sql("vip")
    path = root / "dbt" / "target" / "manifest.json"
    path.write_text(json.dumps(manifest(node("high_value_customers", relation='"warehouse"."gold"."hvc"'))))
    assert project.segment_sql("vip") == 'SELECT * FROM "warehouse"."gold"."hvc"'


def test_validating_a_dbt_project_imports_neither_dbt_nor_dagster(tmp_path: Path) -> None:
    root = make(tmp_path)
    code = ("import sys\nfrom syncer.project.project import load_project\n"
            f"load_project({str(root)!r}).fingerprint()\n"
            "print(','.join(m for m in ('dbt', 'dagster_dbt', 'dagster', 'duckdb', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_syncer_validate_probes_the_model_and_names_the_unknown_one_by_file_and_line(tmp_path: Path) -> None:
    import duckdb

    root = make(tmp_path, warehouse="duckdb:///warehouse.duckdb")
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.high_value_customers (customer_id BIGINT, email VARCHAR)")
    (root / "segments" / "lapsed.yml").write_text("dbt: lapsed_customer\nmember_key: customer_id\nidentifiers: {email: email}\n")
    (root / "segments" / "lapsed_two.yml").write_text("dbt: high_value_customers\nmember_key: id\nidentifiers: {email: email}\n")
    result = subprocess.run([sys.executable, "-m", "syncer.cli", "-p", str(root), "validate"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "segments/lapsed.yml:1: dbt: no dbt model 'lapsed_customer' in the manifest" in result.stderr
    assert "segments/lapsed_two.yml:2: member_key: the query returns no column 'id'" in result.stderr  # the model was probed
    assert "segments/vip.yml" not in result.stderr and "Traceback" not in result.stderr


def test_syncer_validate_asks_for_dbt_build_when_the_model_was_parsed_but_never_built(tmp_path: Path) -> None:
    import duckdb

    root = make(tmp_path, warehouse="duckdb:///warehouse.duckdb")
    duckdb.connect(str(root / "warehouse.duckdb")).close()  # the warehouse exists; dbt never built the model
    result = subprocess.run([sys.executable, "-m", "syncer.cli", "-p", str(root), "validate"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "segments/vip.yml:2: dbt: the warehouse cannot read dbt model 'high_value_customers'" in result.stderr
    assert "run `dbt build --select high_value_customers`" in result.stderr and "fix the SQL" not in result.stderr
