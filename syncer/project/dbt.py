"""Segments whose members are a dbt model: ``dbt: high_value_customers`` in a segment file.

The model is looked up in the dbt project's ``manifest.json`` (``dbt:`` in syncer.yml names the project; the
manifest is written by ``dbt parse``, ``dbt compile`` or ``dbt build``) and the segment's query is
``SELECT * FROM <relation>``: the table or view dbt builds, as the manifest's ``relation_name`` spells it.
That spelling is the adapter's own (its quoting policy and case rules: unquoted upper case on Snowflake,
backticks on BigQuery), so the syncer reads exactly the relation dbt writes; on DuckDB, which the syncer
attaches under an alias of its own, the relation is named without dbt's database, once that database is
checked to be the warehouse's file. A model may be named by its ``name``, ``<package>.<name>`` or its
``unique_id`` (``model.<package>.<name>``); a bare name found in two packages means the root project's model.

Only ``json`` is imported (``syncer validate`` stays fast); the parsed manifest is kept per file and
modification time, so ``Project.fingerprint`` resolving every segment reads it once. Dagster's view of
the same project (the models as assets upstream of the segments) is ``dagster_project.dbt_models``.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from syncer.environment import scheme_of
from syncer.errors import ConfigError
from syncer.project.config import DbtConfig

__all__ = ["DbtModelError", "dbt_model_sql", "load_manifest", "manifest_path", "resolve_dbt_model"]

_manifests: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


class DbtModelError(ConfigError):
    """A segment's dbt model does not resolve: fix the name, or run dbt so its manifest is current."""


def manifest_path(root: Path, config: DbtConfig) -> Path:
    """The manifest.json of the project's dbt block: ``manifest`` if set, else ``<project_dir>/target/manifest.json``."""
    if config.manifest:
        return Path(os.path.normpath(root / config.manifest))
    return Path(os.path.normpath(root / config.project_dir / "target" / "manifest.json"))


def dbt_model_sql(project: Any, name: str) -> str:
    """The query of segment ``name`` (which has ``dbt:``) of ``project`` (a ``syncer.project.project.Project``,
    which imports this module): ``SELECT * FROM <the model's relation>``.

    Raises:
        ConfigError: no ``dbt:`` block in syncer.yml, no readable manifest, an unknown or ephemeral model;
            the message names the segment file, the model and what to do.
    """
    segment = project.segments[name]
    try:
        model = resolve_dbt_model(project.root, project.config.dbt, segment.dbt)
        return f"SELECT * FROM {_relation(model, project.warehouse_url())}"
    except DbtModelError as exc:
        raise DbtModelError(f"{_segment_file(project.root, name)}: dbt: {exc.message}") from None


def resolve_dbt_model(root: Path, config: DbtConfig | None, model: str, warehouse_url: str | None = None) -> dict[str, Any]:
    """The manifest node (``unique_id``, ``relation_name``, ...) of ``model`` (a name, ``package.name`` or
    unique_id) in the project's dbt project; with a DuckDB ``warehouse_url``, checked to be built into its file.

    Raises:
        DbtModelError: why it does not resolve and what to do; the caller adds where the name was written.
    """
    if config is None:
        raise DbtModelError(f"the segment names dbt model '{model}' but syncer.yml has no 'dbt:' block; add"
                            " 'dbt: {project_dir: <folder of your dbt project>}' to syncer.yml")
    manifest = load_manifest(root, config)
    node = _find_model(manifest, model, config)
    if (node.get("config") or {}).get("materialized") == "ephemeral":
        raise DbtModelError(f"dbt model '{model}' is ephemeral (dbt inlines it into other models and builds no relation);"
                            " materialize it as a view or table (config(materialized='view'))")
    if warehouse_url and warehouse_url.lower().startswith("duckdb"):
        _same_duckdb_file(node, warehouse_url)
    return node


def load_manifest(root: Path, config: DbtConfig) -> dict[str, Any]:
    """The parsed manifest.json of the project's dbt block, read again only when the file changes.

    Raises:
        DbtModelError: it is missing, unreadable or not a manifest; the message says which dbt command writes it.
    """
    path = manifest_path(root, config)
    shown = os.path.relpath(path, root).replace(os.sep, "/")
    try:
        stat = path.stat()
    except OSError:
        raise DbtModelError(f"dbt manifest {shown} not found; {_parse_hint(config)} so it exists") from None
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _manifests.get(path)
    if cached and cached[0] == version:
        return cached[1]
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DbtModelError(f"dbt manifest {shown} cannot be read ({type(exc).__name__}); {_parse_hint(config)} to write it again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("nodes"), dict):
        raise DbtModelError(f"{shown} is not a dbt manifest (no 'nodes'); point 'dbt.manifest' at target/manifest.json, or {_parse_hint(config)}")
    _manifests[path] = (version, manifest)
    return manifest


def _find_model(manifest: dict[str, Any], model: str, config: DbtConfig) -> dict[str, Any]:
    models = [n for n in manifest["nodes"].values() if n.get("resource_type") == "model"]
    by_id = {n["unique_id"]: n for n in models}
    if model in by_id:
        return by_id[model]
    package, _, bare = model.rpartition(".")
    found = [n for n in models if n.get("name") == bare and (not package or n.get("package_name") == package)]
    if len(found) > 1:  # versioned models share a name: the latest version is the model's plain name
        latest = [n for n in found if n.get("version") is None or n.get("version") == n.get("latest_version")]
        found = latest or found
    if len(found) > 1:
        root_package = manifest.get("metadata", {}).get("project_name")
        found = [n for n in found if n.get("package_name") == root_package] or found
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(f"'{n['package_name']}.{n['name']}'" for n in found))
        raise DbtModelError(f"dbt model '{model}' is defined in several packages ({names}); name one as '<package>.<model>'")
    raise DbtModelError(_unknown(manifest, models, model, bare, config))


def _parse_hint(config: DbtConfig) -> str:
    return f"run `dbt parse` (or `dbt compile` / `dbt build`) in {config.project_dir.rstrip('/')}/"


def _unknown(manifest: dict[str, Any], models: list[dict[str, Any]], model: str, bare: str, config: DbtConfig) -> str:
    other = next((n for n in manifest["nodes"].values() if n.get("name") == bare), None)
    if other is not None:
        return f"'{model}' is a dbt {other.get('resource_type')}, not a model; name a model"
    disabled = [n for nodes in (manifest.get("disabled") or {}).values() for n in nodes if n.get("name") == bare]
    if disabled:
        return f"dbt model '{model}' is disabled (enabled: false in its config); enable it, then {_parse_hint(config)}"
    names = sorted({n["name"] for n in models})
    close = difflib.get_close_matches(bare, names, n=3, cutoff=0.6)
    did_you_mean = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"no dbt model '{model}' in the manifest{did_you_mean} (it has {len(names)} models); if you just added it,"
            f" {_parse_hint(config)} to refresh the manifest")


def _relation(node: dict[str, Any], warehouse_url: str) -> str:
    """The relation as dbt spells it; for manifests without ``relation_name``, its parts quoted for the warehouse.

    A DuckDB warehouse is the exception: the syncer attaches the file under an alias of its own and makes it
    the default catalog, so the relation is named without dbt's database (the file's stem), once that is
    checked to be the warehouse's file.
    """
    scheme = scheme_of(warehouse_url)
    if scheme == "duckdb":
        _same_duckdb_file(node, warehouse_url)
        return _quoted([node.get("schema"), node.get("alias") or node["name"]], '"')
    if node.get("relation_name"):
        return node["relation_name"]
    parts = [p for p in (node.get("database"), node.get("schema"), node.get("alias") or node.get("name")) if p]
    if scheme == "snowflake":  # unquoted: Snowflake folds to upper case, as dbt's default quoting does there
        return ".".join(parts)
    return _quoted(parts, "`" if scheme in ("bigquery", "spark", "databricks") else '"')


def _quoted(parts: list[str | None], quote: str) -> str:
    return ".".join(f"{quote}{p.replace(quote, quote * 2)}{quote}" for p in parts if p)


def _same_duckdb_file(node: dict[str, Any], warehouse_url: str) -> None:
    """dbt-duckdb names a file's database after its stem: another stem means dbt builds into another file."""
    path = warehouse_url.split(":///", 1)[-1].split("?", 1)[0]
    if "${" in path:
        return  # not known until run time; checked again then
    catalog = "memory" if path in ("", ":memory:") else Path(path).name.split(".", 1)[0]
    database = node.get("database")
    if database and database.lower() != catalog.lower():
        raise DbtModelError(f"dbt builds model '{node['name']}' into the DuckDB database '{database}', but the syncer's"
                            f" warehouse is '{catalog}' ({Path(path).name}); point the dbt profile's path at the"
                            " warehouse file (or warehouse_url at dbt's)")


def _segment_file(root: Path, name: str) -> str:
    for suffix in (".yml", ".yaml"):
        if (root / "segments" / f"{name}{suffix}").is_file():
            return f"segments/{name}{suffix}"
    return f"segments/{name}.yml"
