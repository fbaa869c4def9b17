"""A dbt model feeding a sync in Dagster: examples/dbt_demo on the sample warehouse, the sandbox's Meta emulator.

Each test copies the example into a tmp folder, writes a small sample warehouse there and runs ``dbt parse``
(offline: the project has no packages and sends no usage stats), so the manifest exists when the
definitions load. The models themselves are built by the Dagster run (``dbt build`` through
``DbtCliResource``), upstream of the segment that names them.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project.definitions import build_definitions
from syncer.demo.sample_data import generate
from syncer.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dbt_demo"
TOKEN = "dbt-test-token"
AUDIENCE = "23850000000002"
MODEL, SEGMENT = dg.AssetKey(["high_value_customers"]), dg.AssetKey(["segments", "high_value_customers"])
PLAN = dg.AssetKey(["meta_ads", "high_value_customers_meta_plan"])
SYNC = dg.AssetKey(["meta_ads", "high_value_customers_meta"])


def run_dbt(project: Path, *args: str) -> None:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
    env.pop("SYNCER_DBT_DUCKDB", None)
    dbt = Path(sys.executable).with_name("dbt")
    out = subprocess.run([str(dbt), *args], cwd=project / "dbt", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.fixture
def sandbox(monkeypatch):
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience(AUDIENCE, name="high value (dbt)")
        monkeypatch.setenv("SANDBOX_URL", sb.url)
        monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
        monkeypatch.delenv("SYNCER_DBT_DUCKDB", raising=False)  # the run's dbt build writes ../warehouse.duckdb
        yield sb


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with a sample warehouse and a parsed manifest; its models are not built yet (dbt starts in
    seconds, so the module shares one copy; only the materialize test builds them)."""
    root = tmp_path_factory.mktemp("dbt") / "dbt_demo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("target", "logs", ".syncer", "warehouse.duckdb*"))
    generate(root / "warehouse.duckdb", 600, seed=11)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SYNCER_DBT_DUCKDB", raising=False)  # profiles.yml's default: ../warehouse.duckdb
        run_dbt(root, "parse")
    return root


def twin_rows(project: Path) -> list[tuple]:
    """(customer_id, email, ads_consent) of the demo's hand-written SQL segment, which the dbt model reproduces."""
    sql = (ROOT / "examples" / "demo" / "segments" / "high_value.sql").read_text()
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT customer_id, email, ads_consent FROM ({sql})").fetchall()


def test_lineage_runs_from_the_dbt_sources_through_the_model_to_the_segment_and_sync(project: Path) -> None:
    graph = build_definitions(project).resolve_asset_graph()
    parents = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
               for key in graph.get_all_asset_keys()}
    assert parents["segments/high_value_customers"] == {"high_value_customers"}
    assert parents["high_value_customers"] == {"stg_customers", "stg_orders"}
    assert parents["stg_customers"] == {"shop/customers"} and parents["stg_orders"] == {"shop/orders"}
    assert parents["meta_ads/high_value_customers_meta_plan"] == {"segments/high_value_customers"}
    assert parents["meta_ads/high_value_customers_meta"] == {"meta_ads/high_value_customers_meta_plan"}


@pytest.mark.slow
def test_materialize_builds_the_model_then_syncs_its_members_into_the_emulator(project: Path, sandbox: Sandbox) -> None:
    defs = build_definitions(project)
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:  # only parsed so far
        assert not con.execute("SELECT * FROM duckdb_tables() WHERE table_name = 'high_value_customers'").fetchall()
    result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources)
    assert result.success
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {MODEL, SEGMENT, PLAN, SYNC} <= done
    twin = twin_rows(project)
    metadata = {e.asset_key: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
    assert metadata[SEGMENT]["members"] == len(twin) > 20
    consenting = [email for _, email, ads_consent in twin if ads_consent is not False]  # unknown consent is sent for ads
    assert (metadata[SYNC]["status"], metadata[SYNC]["added"], metadata[SYNC]["rejected"]) == ("ok", len(consenting), 0)
    held = {member["EMAIL"] for member in sandbox.meta.members(AUDIENCE) if "EMAIL" in member}
    assert held <= {hashlib.sha256(email.strip().lower().encode()).hexdigest() for email in consenting if email}
    assert len(sandbox.meta.members(AUDIENCE)) == len(consenting)


def test_a_project_without_dbt_never_imports_dagster_dbt() -> None:
    """dagster_dbt (and dbt) add about a second to the code location's start-up: only dbt projects pay it."""
    code = ("import sys\nfrom dagster_project.definitions import build_definitions\n"
            f"build_definitions({str(ROOT / 'examples' / 'demo')!r})\n"
            "print(','.join(m for m in ('dagster_dbt', 'dbt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
