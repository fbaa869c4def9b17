"""The project's dbt models as Dagster assets, upstream of the segments that name them.

With a ``dbt:`` block in syncer.yml, every model, seed and snapshot of the dbt project's manifest is an asset
(``@dbt_assets``, keys and groups as dagster-dbt gives them by default), its dbt sources are upstream
assets, and a segment written as ``dbt: <model>`` depends on its model's asset, so the lineage runs from the
raw tables to the audience::

    shop/customers ─► stg_customers ─► high_value_customers ─► segments/high_value_customers ─► <dest>/<sync>_plan ─► <dest>/<sync>

Materializing dbt assets runs ``dbt build`` for them (their models and tests) through ``DbtCliResource``,
with dbt's working directory the dbt project, its ``profiles_dir`` and ``target`` from syncer.yml. A
segment's own schedule reads the model as dbt last built it; select the model too (or schedule dbt) to
rebuild it first.

``dagster_dbt`` is imported only for projects with dbt segments or a ``dbt:`` block: it adds about a second
to the code location's start-up.
"""

import sys
from pathlib import Path

import dagster as dg

from syncer.project.config import SegmentConfig
from syncer.project.dbt import load_manifest, resolve_dbt_model
from syncer.project.project import Project

__all__ = ["dbt_definitions", "segment_deps"]

RESOURCE_KEY = "dbt"


def dbt_definitions(project: Project) -> dg.Definitions:
    """The dbt project's assets and the ``dbt`` resource that builds them; empty without a ``dbt:`` block.

    Raises:
        DbtModelError: the manifest is missing or unreadable (run ``dbt parse``).
    """
    config = project.config.dbt
    if config is None:
        return dg.Definitions()
    from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

    manifest = load_manifest(project.root, config)

    @dbt_assets(manifest=manifest, name="dbt_models", dagster_dbt_translator=DagsterDbtTranslator())
    def _dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    resource = DbtCliResource(
        project_dir=str(project.root / config.project_dir),
        profiles_dir=str(project.root / config.profiles_dir) if config.profiles_dir else None,
        target=config.target,
        dbt_executable=_dbt_executable(),
    )
    return dg.Definitions(assets=[_dbt_models], resources={RESOURCE_KEY: resource})


def segment_deps(project: Project, segment: SegmentConfig) -> list[dg.AssetKey]:
    """The asset key of the dbt model a segment reads (``dbt:``), as ``dbt_definitions`` names it; [] otherwise."""
    if not segment.dbt:
        return []
    from dagster_dbt import DagsterDbtTranslator

    node = resolve_dbt_model(project.root, project.config.dbt, segment.dbt)
    manifest = load_manifest(project.root, project.config.dbt)
    return [DagsterDbtTranslator().get_asset_spec(manifest, node["unique_id"], None).key]


def _dbt_executable() -> str:
    """The dbt installed beside this Python (a venv's bin/ is often not on PATH for Dagster's processes)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.is_file() else "dbt"
