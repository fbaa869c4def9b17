"""Load a project folder into validated config, reporting every problem at once.

``load_project(path)`` reads ``syncer.yml`` and every ``segments/``, ``destinations/`` and ``syncs/``
file (layout in ``syncer.project.config``), validates each against its pydantic model, checks the files
against each other, and returns a ``Project`` or raises ``InvalidProjectError`` carrying *every*
``Problem`` found, each with its file, line, dotted field and a plain-language message::

    syncs/vip_meta.yml:7: gates.max_removal_pct: expected a number, got 'ten'

This module holds the public face: ``Project`` (the validated config and what is derived from it:
absolute URLs, merged gates, the plan fingerprint), ``load_project``, ``InvalidProjectError`` and the
editor JSON Schemas. The work is done in:

- ``syncer.project.problems``: ``Problem`` and the formatters every message shares.
- ``syncer.project.yaml_source``: YAML composed by hand so every key keeps its line, duplicate keys are
  caught (PyYAML would silently keep the last one), and keys stay text (``no:`` is the key 'no').
- ``syncer.project.secrets``: keys that name a secret without the ``_env`` suffix, values that look
  like real credentials, and URLs with passwords. Secret-looking values are never echoed back.
- ``syncer.project.messages`` (with ``syncer.project.introspection``): pydantic's errors located and
  rewritten for people ("unknown key 'audiance_id'; did you mean 'audience_id'?").
- ``syncer.project.files`` and ``syncer.project.loader``: the kinds of file, and the loader with its
  cross-file checks (a sync's segment and destination exist, its identifiers are mapped by the
  segment and taken by the destination, ``sql_file`` exists, no two syncs share one audience, a
  conversion rule's segments exist).
- ``syncer.project.env_refs``: environment variables the files name that are not set here; they are
  ``warnings`` (set where syncs run, perhaps), never problems.
- ``syncer.project.probe``: each segment's SQL run against the warehouse with no rows (``syncer validate``).

Only PyYAML and pydantic are imported, so ``syncer validate`` starts fast.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer.environment import expand_env
from syncer.errors import ConfigError
from syncer.project.config import DestinationConfig, GateConfig, ProjectConfig, SegmentConfig, SyncConfig
from syncer.project.files import PROJECT_FILE_NAMES, adapter
from syncer.project.loader import ProjectLoader
from syncer.project.problems import Problem, quote

__all__ = [
    "InvalidProjectError",
    "Problem",
    "Project",
    "inspect_project",
    "json_schemas",
    "load_project",
    "write_json_schemas",
]


class InvalidProjectError(ConfigError):
    """The project's files are invalid; fix every listed problem, then run again."""

    def __init__(self, problems: list[Problem], root: Path | str, warnings: list[Problem] | None = None) -> None:
        self.problems = sorted(problems, key=Problem._sort_key)
        self.warnings = sorted(warnings or [], key=Problem._sort_key)
        self.root = Path(root)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the project at {self.root}:"
        super().__init__("\n  ".join([head, *(str(p) for p in self.problems)]))


@dataclass(frozen=True)
class Project:
    """A validated project: its config models by name, and the paths and URLs derived from them."""

    root: Path
    config: ProjectConfig
    segments: dict[str, SegmentConfig]
    destinations: dict[str, DestinationConfig]
    syncs: dict[str, SyncConfig]
    warnings: tuple[Problem, ...] = ()
    """What may fail where syncs run but is fine to load: environment variables the files name that are
    not set here (``syncer.project.env_refs``). ``syncer validate`` prints them."""

    @property
    def state_dir(self) -> Path:
        """Folder for local state: the default ledger, plans, schemas."""
        return self.root / ".syncer"

    def segment_sql(self, name: str) -> str:
        """The segment's query: inline ``sql``, the text of ``sql_file`` (relative to segments/), its
        ``rules`` compiled for the warehouse's dialect, or the relation of its ``dbt`` model."""
        segment = _lookup(self.segments, name, "segment")
        if segment.sql:
            return segment.sql
        if segment.rules is not None:
            from syncer.project.rules import compile_segment_rules  # only projects with rule segments pay for it

            return compile_segment_rules(self, name)
        if segment.dbt:
            from syncer.project.dbt import dbt_model_sql

            return dbt_model_sql(self, name)
        return (self.root / "segments" / segment.sql_file).read_text(encoding="utf-8-sig")

    def warehouse_url(self) -> str:
        """Warehouse URL with ${VAR} expanded and a relative duckdb/sqlite path made absolute.

        Raises:
            ConfigError: a ${VAR} in the URL is not set.
        """
        return _absolute_file_url(expand_env(self.config.warehouse_url), self.root)

    def ledger_url(self) -> str:
        """Ledger URL, treated like ``warehouse_url``; default ``<root>/.syncer/ledger.db`` (SQLite).

        The caller creates the file's folder before connecting.
        """
        return _absolute_file_url(expand_env(self.config.ledger_url), self.root)

    def conversions_url(self) -> str:
        """Where the fast path reads conversions: the source's own URL, else the warehouse."""
        source = self.config.conversions
        if source is None or not source.url:
            return self.warehouse_url()
        return _absolute_file_url(expand_env(source.url), self.root)

    def events_url(self) -> str:
        """Where the real-time path reads events: the `events:` source's own URL, else the warehouse."""
        source = self.config.events
        if source is None or not source.url:
            return self.warehouse_url()
        return _absolute_file_url(expand_env(source.url), self.root)

    def gates_for(self, sync_name: str) -> GateConfig:
        """Gates of a sync: the project's, with every key the sync's ``gates:`` sets taking precedence.

        A key set to null in the sync (``max_removal_pct: null``) switches that gate off for it.
        """
        sync = _lookup(self.syncs, sync_name, "sync")
        if sync.gates is None:
            return self.config.gates
        overrides = {key: getattr(sync.gates, key) for key in sync.gates.model_fields_set}
        return self.config.gates.model_copy(update=overrides)

    def fingerprint(self, sync_name: str | None = None) -> str:
        """SHA-256 of the normalised config and SQL: a plan made under another fingerprint is stale.

        Normalised means the validated models (defaults filled in; comments, key order and quoting
        do not count) plus each segment's SQL text with line endings and trailing spaces evened out.
        With ``sync_name``, only what that sync depends on counts (syncer.yml, its segment,
        destination and sync), so editing an unrelated sync does not stale its plan.
        """
        if sync_name is None:
            syncs = self.syncs
            segments, destinations = self.segments, self.destinations
        else:
            sync = _lookup(self.syncs, sync_name, "sync")
            syncs = {sync_name: sync}
            segments = {sync.segment: self.segments[sync.segment]}
            destinations = {sync.destination: self.destinations[sync.destination]}
        payload = {
            "project": self.config.model_dump(mode="json"),
            "segments": {
                name: {**seg.model_dump(mode="json"), "sql_text": _normalise_sql(self.segment_sql(name))}
                for name, seg in segments.items()
            },
            "destinations": {name: dest.model_dump(mode="json") for name, dest in destinations.items()},
            "syncs": {name: sync.model_dump(mode="json") for name, sync in syncs.items()},
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_project(path: str | Path) -> Project:
    """Load and validate the project in ``path`` (the folder, or its syncer.yml).

    Raises:
        InvalidProjectError: with every problem found in every file, sorted by file and line.
    """
    project, problems, warnings = inspect_project(path)
    if problems or project is None:
        raise InvalidProjectError(problems, _root(path), warnings)
    return project


def inspect_project(path: str | Path) -> tuple[Project | None, list[Problem], list[Problem]]:
    """For ``syncer validate``: the project made of every *valid* file (None without a valid syncer.yml),
    with every problem and warning of the folder, so checks beyond the files (the warehouse probe) can
    look at the valid part of a project that also has broken files."""
    root = _root(path)
    if not root.is_dir():
        return None, [Problem(str(path), None, "", "not a folder; expected a project folder holding syncer.yml")], []
    loader = ProjectLoader(root)
    loader.load()
    parts = loader.valid_parts
    warnings = sorted(loader.warnings, key=Problem._sort_key)
    if parts is None:
        return None, loader.problems, warnings
    project = Project(root=root, config=parts.config, segments=parts.segments, destinations=parts.destinations,
                      syncs=parts.syncs, warnings=tuple(warnings))
    return project, loader.problems, warnings


def _root(path: str | Path) -> Path:
    root = Path(path).expanduser().resolve()
    return root.parent if root.is_file() and root.name in PROJECT_FILE_NAMES else root


# ---------------------------------------------------------------------------------------------------
# URLs, lookups, SQL


_FILE_URL = re.compile(r"^(?P<scheme>(?:duckdb|sqlite)(?:\+\w+)?):///(?P<path>[^?]*)(?P<query>\?.*)?$")


def _absolute_file_url(url: str, root: Path) -> str:
    """Make the file path of a duckdb/sqlite URL absolute against ``root``; leave other URLs alone."""
    match = _FILE_URL.match(url)
    if not match:
        return url
    path = match["path"]
    if not path or path.startswith("/") or re.match(r"^[A-Za-z]*:", path):  # :memory:, md:, file:, C:
        return url
    absolute = Path(os.path.normpath(root / Path(path).expanduser()))
    return f"{match['scheme']}:///{absolute.as_posix()}{match['query'] or ''}"


def _lookup(items: dict[str, Any], name: str, noun: str) -> Any:
    if name in items:
        return items[name]
    close = difflib.get_close_matches(name, list(items), n=1, cutoff=0.6)
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown {noun} {quote(name)}{did_you_mean} (known: {', '.join(sorted(items)) or 'none'})")


def _normalise_sql(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


# ---------------------------------------------------------------------------------------------------
# JSON Schemas for editors


_SCHEMA_KINDS = {
    "syncer.yml": (ProjectConfig, "syncer.yml"),
    "segment": (SegmentConfig, "segments/<name>.yml"),
    "destination": (DestinationConfig, "destinations/<name>.yml"),
    "sync": (SyncConfig, "syncs/<name>.yml"),
}
_COMMON_DESCRIPTIONS = {
    "description": "Free text for the people reading this project; shown in the CLI and Dagster.",
    "owners": "Owners shown in Dagster (emails or team:name).",
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the config files, keyed "syncer.yml", "segment", "destination", "sync".

    Point an editor at them (e.g. ``# yaml-language-server: $schema=...``) to get completion, the
    description of every key, and red squiggles on unknown keys (``additionalProperties: false``).
    """
    schemas = {}
    for kind, (schema_type, title) in _SCHEMA_KINDS.items():
        schema = adapter(schema_type).json_schema()
        _fill_descriptions(schema, schema.get("$defs", {}))
        schemas[kind] = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
    return schemas


def write_json_schemas(out_dir: str | Path) -> list[Path]:
    """Write ``<kind>.schema.json`` files (syncer, segment, destination, sync) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, schema in json_schemas().items():
        path = out / f"{kind.removesuffix('.yml')}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _fill_descriptions(node: Any, defs: dict[str, Any]) -> None:
    """Give every property a description: its own, the referenced model's, or a common one."""
    if isinstance(node, list):
        for item in node:
            _fill_descriptions(item, defs)
        return
    if not isinstance(node, dict):
        return
    for name, prop in (node.get("properties") or {}).items():
        if not isinstance(prop, dict) or "description" in prop:
            continue
        ref = prop.get("$ref", "").rsplit("/", 1)[-1]
        if ref in defs and defs[ref].get("description"):
            prop["description"] = defs[ref]["description"]
        elif name == "type" and "const" in prop:
            prop["description"] = f"Kind of destination; '{prop['const']}' selects the keys below."
        elif name in _COMMON_DESCRIPTIONS:
            prop["description"] = _COMMON_DESCRIPTIONS[name]
    for value in node.values():
        _fill_descriptions(value, defs)
