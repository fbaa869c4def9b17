"""Load a project folder into validated config, reporting every problem at once.

``load_project(path)`` reads ``syncer.yml`` and every ``segments/``, ``destinations/`` and ``syncs/``
file (layout in ``syncer.config``), validates each against its pydantic model, checks the files
against each other, and returns a ``Project`` or raises ``InvalidProjectError`` carrying *every*
``Problem`` found, each with its file, line, dotted field and a plain-language message::

    syncs/vip_meta.yml:7: gates.max_removal_pct: expected a number, got 'ten'

How it works:

- YAML is composed with PyYAML's safe loader and turned into plain data by hand, so every key and list
  item keeps its line, duplicate keys are caught (PyYAML would silently keep the last one), and keys
  stay text (``no:`` is the key 'no', not False).
- Pydantic's error locations are walked against that data to find the line; its messages are
  rewritten for people ("unknown key 'audiance_id'; did you mean 'audience_id'?").
- Secrets: keys that name a secret without the ``_env`` suffix, values that look like real
  credentials, and URLs with passwords are problems. Secret-looking values are never echoed back.
- Cross-file checks: a sync's segment and destination exist, its identifiers are mapped by the
  segment, ``sql_file`` exists, and no two syncs share one audience.

Only PyYAML and pydantic are imported, so ``syncer validate`` starts fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from syncer.config import DestinationConfig, GateConfig, ProjectConfig, SegmentConfig, SyncConfig, expand_env
from syncer.errors import ConfigError

__all__ = [
    "InvalidProjectError",
    "Problem",
    "Project",
    "json_schemas",
    "load_project",
    "write_json_schemas",
]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""A segment, destination or sync name (the file stem); it becomes a Dagster asset key."""

_YAML_SUFFIXES = (".yml", ".yaml")
_PROJECT_FILES = ("syncer.yml", "syncer.yaml")

_KeyPath = tuple[str | int, ...]  # a location inside one YAML document


# ---------------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a project, located precisely enough to fix it without searching."""

    file: str
    """Path relative to the project folder, e.g. ``syncs/vip_meta.yml``."""
    line: int | None
    """1-based line of the offending key or value, when known."""
    field: str
    """Dotted path of the offending key, e.g. ``gates.max_removal_pct``; "" for the whole file."""
    message: str
    """What is wrong and what was expected. Never contains a secret."""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def _sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line or 0, self.field, self.message)


class InvalidProjectError(ConfigError):
    """The project's files are invalid; fix every listed problem, then run again."""

    def __init__(self, problems: list[Problem], root: Path | str) -> None:
        self.problems = sorted(problems, key=Problem._sort_key)
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

    @property
    def state_dir(self) -> Path:
        """Folder for local state: the default ledger, plans, schemas."""
        return self.root / ".syncer"

    def segment_sql(self, name: str) -> str:
        """The segment's query: inline ``sql``, or the text of ``sql_file`` (relative to segments/)."""
        segment = _lookup(self.segments, name, "segment")
        if segment.sql:
            return segment.sql
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
    root = Path(path).expanduser().resolve()
    if root.is_file() and root.name in _PROJECT_FILES:
        root = root.parent
    if not root.is_dir():
        problem = Problem(str(path), None, "", "not a folder; expected a project folder holding syncer.yml")
        raise InvalidProjectError([problem], root)
    loader = _ProjectLoader(root)
    project = loader.load()
    if loader.problems or project is None:
        raise InvalidProjectError(loader.problems, root)
    return project


# ---------------------------------------------------------------------------------------------------
# Kinds of file


@dataclass(frozen=True)
class _Kind:
    folder: str  # "" for syncer.yml
    noun: str  # "segment"
    schema: Any  # model class or annotated union


_PROJECT = _Kind("", "project", ProjectConfig)
_SEGMENT = _Kind("segments", "segment", SegmentConfig)
_DESTINATION = _Kind("destinations", "destination", DestinationConfig)
_SYNC = _Kind("syncs", "sync", SyncConfig)


@cache
def _adapter(schema: Any) -> TypeAdapter[Any]:
    return TypeAdapter(schema)


# ---------------------------------------------------------------------------------------------------
# YAML with lines


@dataclass
class _Doc:
    file: str
    data: Any = None
    lines: dict[_KeyPath, int] | None = None  # path of a key or list item -> its 1-based line
    raw: dict[_KeyPath, str] | None = None  # path of a scalar -> its source text
    unreadable: set[_KeyPath] = dataclasses.field(default_factory=set)  # values already reported unreadable

    def line(self, path: _KeyPath) -> int:
        """Line of ``path``, else of its nearest located parent; 1 for the whole document."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1


class _TreeBuilder:
    """Turns a composed YAML node tree into plain data, recording lines and duplicate keys."""

    _MAP_TAG = "tag:yaml.org,2002:map"
    _SEQ_TAG = "tag:yaml.org,2002:seq"

    def __init__(self, doc: _Doc, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems
        self.constructor = yaml.SafeLoader("")
        doc.lines, doc.raw = {}, {}

    def build(self, node: yaml.Node, path: _KeyPath, active: frozenset[int] = frozenset()) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in active:
            self._problem(node, path, "a YAML alias refers to itself; expand it by hand")
            return None
        active = active | {id(node)}
        if node.tag not in (self._MAP_TAG, self._SEQ_TAG):
            self._problem(node, path, f"unsupported YAML tag '{_short_tag(node.tag)}'; write plain mappings and lists")
            self.doc.unreadable.add(path)
            return None
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.doc.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.build(item, path + (index,), active))
            return items
        return self._mapping(node, path, active)

    def _scalar(self, node: yaml.ScalarNode, path: _KeyPath) -> Any:
        self.doc.raw[path] = node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", exc))
            if "constructor for the tag" in problem:
                self._problem(node, path, f"unsupported YAML tag '{_short_tag(node.tag)}'; write a plain value")
            else:
                self._problem(node, path, f"cannot read this value: {problem}")
            self.doc.unreadable.add(path)
            return None

    def _mapping(self, node: yaml.MappingNode, path: _KeyPath, active: frozenset[int]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:  # `<<: *base` merges first, so explicit keys win
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    built = self.build(source, path, active)
                    if isinstance(built, dict):
                        merged.update(built)
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, path, "a key must be a plain word, not a list or mapping")
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first_seen:
                self._problem(
                    key_node, path + (key,),
                    f"duplicate key '{key}' (first at line {first_seen[key]}); YAML keeps only the last one,"
                    " so remove or merge one of them",
                )
            first_seen.setdefault(key, line)
            self.doc.lines[path + (key,)] = line
            result[key] = self.build(value_node, path + (key,), active)
        return {**{k: v for k, v in merged.items() if k not in result}, **result}

    def _problem(self, node: yaml.Node, path: _KeyPath, message: str) -> None:
        self.problems.append(Problem(self.doc.file, node.start_mark.line + 1, _dotted(path), message))


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _yaml_error_problem(file: str, exc: yaml.YAMLError) -> Problem:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Problem(file, None, "", f"YAML error: {exc}")
    line = exc.problem_mark.line + 1
    context_line = exc.context_mark.line + 1 if exc.context_mark else None
    if context_line and "simple key" in (exc.context or ""):
        line, context_line = context_line, None  # the line lacking its ':' is the context line
    text = ", ".join(part for part in (exc.context, exc.problem) if part)
    message = f"YAML syntax error: {text}"
    if context_line and context_line != line:
        message += f" (it began at line {context_line})"
    for clue, hint in _YAML_HINTS:
        if clue in text:
            message += f"; {hint}"
    return Problem(file, line, "", message)


_YAML_HINTS = (
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    ("mapping values are not allowed", "quote a value that contains ': ', or check the indentation"),
    ("could not find expected ':'", "each line needs 'key: value', or check the indentation"),
    ("single document", "keep one document per file (remove the extra '---')"),
)


def _read_doc(path: Path, file: str, kind: _Kind, problems: list[Problem]) -> _Doc | None:
    """Parse one YAML file into a located ``_Doc``, or add its problem and return None."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.append(Problem(file, None, "", "the file is not UTF-8 text; save it as UTF-8"))
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        problems.append(_yaml_error_problem(file, exc))
        return None
    if node is None:
        problems.append(Problem(file, None, "", f"the file is empty; expected {_expected_keys(kind)}"))
        return None
    if not isinstance(node, yaml.MappingNode):
        got = "a list" if isinstance(node, yaml.SequenceNode) else f"the single value {_quote(str(node.value))}"
        message = f"expected a mapping of 'key: value' lines at the top level, got {got}"
        problems.append(Problem(file, node.start_mark.line + 1, "", message))
        return None
    doc = _Doc(file)
    doc.data = _TreeBuilder(doc, problems).build(node, ())
    return doc


def _expected_keys(kind: _Kind) -> str:
    models = _models_of(kind.schema)
    if len(models) > 1:
        return f"a mapping starting with 'type:' (one of {_listing(_union_tags(models))})"
    required = [name for name, info in models[0].model_fields.items() if info.is_required()]
    return f"a mapping with at least: {', '.join(required)}" if required else "a mapping of 'key: value' lines"


# ---------------------------------------------------------------------------------------------------
# Model introspection (generic over the DestinationConfig union)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from an annotation."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _models_of(tp: Any) -> list[type[BaseModel]]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [model for arg in get_args(tp) for model in _models_of(arg)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def _literal_values(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    return list(get_args(tp)) if get_origin(tp) is Literal else []


def _union_tags(models: list[type[BaseModel]], discriminator: str = "type") -> list[str]:
    return sorted(str(v) for model in models for v in _literal_values(model.model_fields[discriminator].annotation))


def _pick_model(models: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(models) <= 1:
        return models[0] if models else None
    tag = data.get("type") if isinstance(data, dict) else None
    return next((m for m in models if tag in _literal_values(m.model_fields["type"].annotation)), None)


def _model_at(schema: Any, data: Any, path: _KeyPath) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` of ``data``, when there is one."""
    tp = schema
    for part in path:
        model = _pick_model(_models_of(tp), data)
        if model is not None:
            if not isinstance(part, str) or part not in model.model_fields:
                return None
            tp = model.model_fields[part].annotation
        else:
            inner = _unwrap(tp)
            args = get_args(inner)
            if get_origin(inner) in (list, tuple, set, frozenset) and args:
                tp = args[0]
            elif get_origin(inner) is dict and len(args) == 2:
                tp = args[1]
            else:
                return None
        data = _child(data, part)
    return _pick_model(_models_of(tp), data)


def _child(data: Any, part: str | int) -> Any:
    if isinstance(data, dict) and isinstance(part, str):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


# ---------------------------------------------------------------------------------------------------
# Secrets


_SECRET_KEY = re.compile(r"token|secret|password|passwd|api_?key|credential|private_key", re.IGNORECASE)
_ENV_KEY = re.compile(r"_env(_var|_name)?$", re.IGNORECASE)
_CREDENTIALS = (
    ("a Meta access token", re.compile(r"EAA[A-Za-z0-9]{17,}")),
    ("a Stripe secret key", re.compile(r"(sk|rk)_(live|test)_[A-Za-z0-9]{8,}")),
    ("a Slack token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{8,}")),
    ("a Google API key", re.compile(r"AIza[0-9A-Za-z_\-]{30,}")),
    ("a Google OAuth token", re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}")),
    ("a GitHub token", re.compile(r"(gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}")),
    ("an AWS access key", re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}")),
    ("a Mailchimp API key", re.compile(r"[0-9a-f]{32}-us\d{1,2}")),
    ("a Klaviyo private key", re.compile(r"pk_[A-Za-z0-9]{30,}")),
    ("a JSON Web Token", re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")),
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://\S*\s*")
_URL_PASSWORD = re.compile(r"://[^/@:\s]+:(?!\$\{)[^/@\s]+@")
_URL_SECRET_PARAM = re.compile(r"[?&]([^=&#]*(?:password|token|secret|api_?key)[^=&#]*)=(?!\$\{)[^&#]+", re.IGNORECASE)
_ROTATE = "rotate it if this file was ever shared or committed"


def _credential_kind(value: str) -> str | None:
    """What kind of real credential ``value`` looks like, or None."""
    text = value.strip()
    if _PRIVATE_KEY.search(text):
        return "a private key"
    return next((kind for kind, pattern in _CREDENTIALS if pattern.fullmatch(text)), None)


def _looks_like_blob(value: str) -> bool:
    """A long hex or base64 run: a secret pasted where an environment variable's NAME belongs."""
    if len(value) < 32 or not re.fullmatch(r"[A-Za-z0-9+/=_.\-]+", value):
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return True
    has_digit, has_alpha = re.search(r"\d", value), re.search(r"[A-Za-z]", value)
    return bool(has_digit and has_alpha and ("_" not in value or re.search(r"[a-z]", value)))


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _ENV_KEY.search(key)


def _secret_key_message(key: str, model: type[BaseModel] | None) -> str:
    what = next((w for w in ("token", "secret", "password", "credential") if w in key.lower()), "key")
    fields = list(model.model_fields) if model else []
    if f"{key}_env" in fields or model is None:
        return (
            f"literal secret in a config file: write '{key}_env: SOME_ENV_VAR' and export the {what}"
            " in that variable"
        )
    env_keys = [name for name in fields if name.endswith("_env")]
    where = f" (here: {', '.join(env_keys)})" if env_keys else ""
    return (
        f"literal secret in a config file: secrets come from environment variables named by *_env keys{where};"
        f" '{key}' is not a key here"
    )


def _secret_problems(doc: _Doc, kind: _Kind) -> tuple[list[Problem], set[_KeyPath]]:
    """Secrets written into the file, and the paths they claim (other errors there are dropped)."""
    problems: list[Problem] = []
    claimed: set[_KeyPath] = set()
    for path, value in _walk(doc.data):
        key = path[-1] if path and isinstance(path[-1], str) else ""
        if any(path[: i] in claimed for i in range(len(path))):
            continue
        message = None
        if key and _is_secret_key(key):
            model = _model_at(kind.schema, doc.data, path[:-1])
            if model is None or key not in model.model_fields:
                message = _secret_key_message(key, model)
        if message is None and isinstance(value, str):
            message = _secret_value_message(key, value)
        if message:
            problems.append(Problem(doc.file, doc.line(path), _dotted(path), message))
            claimed.add(path)
    return problems, claimed


def _secret_value_message(key: str, value: str) -> str | None:
    kind = _credential_kind(value)
    if key.endswith("_env") and (kind or _looks_like_blob(value)):
        return (
            f"'{key}' must hold the NAME of an environment variable (like META_ACCESS_TOKEN), but this looks"
            f" like the secret itself; export the secret in a variable and write its name here; {_ROTATE}"
        )
    if kind:
        return (
            f"this looks like a real credential ({kind}); secrets never go in config files: export it in an"
            f" environment variable and write that variable's NAME in a *_env key; {_ROTATE}"
        )
    if not _URL.fullmatch(value):
        return None
    if _URL_PASSWORD.search(value):
        return (
            "the URL holds a literal password; write it as ${ENV_VAR}"
            " (e.g. postgresql://user:${PG_PASSWORD}@host/db) and export the password in that variable"
        )
    param = _URL_SECRET_PARAM.search(value)
    if param:
        return (
            f"the URL holds a literal '{param.group(1)}'; write it as {param.group(1)}=${{ENV_VAR}}"
            " and export the value in that variable"
        )
    return None


def _walk(data: Any, path: _KeyPath = ()) -> Iterator[tuple[_KeyPath, Any]]:
    if path:
        yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, path + (index,))


def _is_sensitive(path: _KeyPath, value: Any) -> bool:
    key = path[-1] if path and isinstance(path[-1], str) else ""
    if key.endswith("_env") or _is_secret_key(key):
        return True
    return isinstance(value, str) and bool(_credential_kind(value) or _secret_value_message("", value))


# ---------------------------------------------------------------------------------------------------
# Pydantic errors in plain language


@dataclass(frozen=True)
class _Located:
    path: _KeyPath  # the part of the error location found in the data
    rest: tuple[Any, ...]  # the part not found (a missing key)
    on_key: bool  # the error is about the key itself, not its value


def _locate(data: Any, loc: tuple[Any, ...], schema: Any) -> _Located:
    parts = list(loc)
    if len(_models_of(schema)) > 1 and parts and isinstance(data, dict) and parts[0] == data.get("type"):
        parts.pop(0)  # the discriminated union's tag
    path: _KeyPath = ()
    rest: list[Any] = []
    on_key = False
    current = data
    for part in parts:
        if part == "[key]":
            on_key = True
        elif not rest and isinstance(current, dict) and isinstance(part, str) and part in current:
            path, current = path + (part,), current[part]
        elif not rest and isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path, current = path + (part,), current[part]
        elif isinstance(part, (str, int)) and not str(part).startswith(("function-", "json-or-python")):
            rest.append(part)
    return _Located(path, tuple(rest), on_key)


def _validation_problems(doc: _Doc, kind: _Kind, exc: ValidationError, claimed: set[_KeyPath]) -> list[Problem]:
    errors = exc.errors(include_url=False)
    located = [_locate(doc.data, tuple(err["loc"]), kind.schema) for err in errors]
    # A key already explained elsewhere is not also reported missing: `access_token: ...` (a secret)
    # or `audiance_id: ...` (a typo) already says to write access_token_env / audience_id.
    suggested = {path[:-1] + (f"{path[-1]}_env",) for path in claimed if path and isinstance(path[-1], str)}
    for err, where in zip(errors, located):
        if err["type"] == "extra_forbidden" and where.path:
            hint = _suggest_key(kind, doc.data, where.path)
            if hint:
                suggested.add(where.path[:-1] + (hint,))
    problems = []
    for err, where in zip(errors, located):
        if any(where.path[:i] in claimed for i in range(len(where.path) + 1)):
            continue
        if err["type"] == "missing" and where.path + where.rest[:1] in suggested:
            continue
        problems.append(_error_problem(doc, kind, err, where))
    return problems


def _error_problem(doc: _Doc, kind: _Kind, err: dict[str, Any], where: _Located) -> Problem:
    path, kind_of_error = where.path, err["type"]
    if kind_of_error == "missing" and where.rest:
        key = str(where.rest[0])
        field = _dotted(path + (key,))
        line = doc.line(path) if path else 1
        return Problem(doc.file, line, field, _missing_message(kind, doc.data, path, key))
    if kind_of_error in ("union_tag_invalid", "union_tag_not_found"):
        path = ("type",)
    if kind_of_error == "value_error" and not path:
        path = _mentioned_key(err["msg"], doc.data)
    line = doc.line(path) if path else 1
    return Problem(doc.file, line, _dotted(path), _message(doc, kind, err, where, path))


def _mentioned_key(message: str, data: Any) -> _KeyPath:
    """For a whole-model error, the first key its message names that the file has."""
    for key in re.findall(r"'([a-z_]+)'", message):
        if isinstance(data, dict) and key in data:
            return (key,)
    return ()


def _missing_message(kind: _Kind, data: Any, parent: _KeyPath, key: str) -> str:
    model = _model_at(kind.schema, data, parent)
    info = model.model_fields.get(key) if model else None
    described = f": {info.description}" if info is not None and info.description else ""
    return f"required key '{key}' is missing{described}"


def _suggest_key(kind: _Kind, data: Any, path: _KeyPath) -> str | None:
    model = _model_at(kind.schema, data, path[:-1])
    if model is None or not isinstance(path[-1], str):
        return None
    matches = difflib.get_close_matches(path[-1], list(model.model_fields), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _message(doc: _Doc, kind: _Kind, err: dict[str, Any], where: _Located, path: _KeyPath) -> str:
    kind_of_error, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    raw = doc.raw.get(path) if not where.on_key else None
    got = "a value not shown here (it may be a secret)" if _is_sensitive(path, value) else _got(value, raw)
    if kind_of_error == "extra_forbidden":
        return _unknown_key_message(kind, doc.data, path)
    if kind_of_error in ("union_tag_invalid", "union_tag_not_found"):
        return _type_tag_message(kind, doc.data)
    if kind_of_error == "literal_error":
        return _literal_message(ctx.get("expected", ""), value, got, where.on_key)
    if kind_of_error == "string_type" and isinstance(value, (int, float, bool)) and raw is not None:
        what = "the number" if not isinstance(value, bool) else "the boolean"
        return f'expected a string, got {what} {raw}; quote it so YAML keeps it as text: "{raw}"'
    if kind_of_error in ("list_type", "tuple_type", "set_type") and isinstance(value, str):
        return f"expected a list, got {got}; write [{value}] or one '- {value}' line per item"
    if kind_of_error in ("value_error", "assertion_error"):
        text = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
        if path and str(path[-1]).endswith("_env") and isinstance(value, str):
            return text + _env_name_hint(value)
        return f"{text}, got {got}" if text.startswith("expected") and " got " not in text else text
    try:
        return _MESSAGES[kind_of_error].format(got=got, **{key: _plain(v) for key, v in ctx.items()})
    except KeyError:  # an error type (or context) not in the table: pydantic's words, lightly edited
        return f"{err['msg'].replace('Input should be', 'expected')}, got {got}"


_MESSAGES = {
    "int_parsing": "expected an integer, got {got}",
    "int_type": "expected an integer, got {got}",
    "int_from_float": "expected a whole number, got {got}",
    "float_parsing": "expected a number, got {got}",
    "float_type": "expected a number, got {got}",
    "bool_parsing": "expected true or false, got {got}",
    "bool_type": "expected true or false, got {got}",
    "string_type": "expected a string, got {got}",
    "dict_type": "expected a mapping of 'key: value' lines, got {got}",
    "model_type": "expected a mapping of 'key: value' lines, got {got}",
    "model_attributes_type": "expected a mapping of 'key: value' lines, got {got}",
    "list_type": "expected a list (one '- item' line per item, or [a, b]), got {got}",
    "greater_than_equal": "expected a value of at least {ge}, got {got}",
    "greater_than": "expected a value greater than {gt}, got {got}",
    "less_than_equal": "expected a value of at most {le}, got {got}",
    "less_than": "expected a value less than {lt}, got {got}",
    "string_too_short": "expected at least {min_length} character(s), got {got}",
    "string_too_long": "expected at most {max_length} character(s), got {got}",
    "string_pattern_mismatch": "expected text matching the pattern {pattern}, got {got}",
    "too_short": "expected at least {min_length} item(s), got {got}",
    "too_long": "expected at most {max_length} item(s), got {got}",
}


def _unknown_key_message(kind: _Kind, data: Any, path: _KeyPath) -> str:
    key = str(path[-1])
    model = _model_at(kind.schema, data, path[:-1])
    if model is None:
        return f"unknown key '{key}'"
    hint = _suggest_key(kind, data, path)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown key '{key}'{did_you_mean} (allowed: {', '.join(model.model_fields)})"


def _type_tag_message(kind: _Kind, data: Any) -> str:
    tags = _union_tags(_models_of(kind.schema))
    tag = data.get("type") if isinstance(data, dict) else None
    if tag is None:
        return f"required key 'type' is missing; known {kind.noun} types: {_listing(tags)}"
    close = difflib.get_close_matches(str(tag), tags, n=1, cutoff=0.6)
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind.noun} type {_quote(str(tag))}{did_you_mean} (known types: {_listing(tags)})"


def _literal_message(expected: str, value: Any, got: str, on_key: bool) -> str:
    allowed = re.findall(r"'([^']*)'", expected)
    close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6) if isinstance(value, str) else []
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    if on_key:
        return f"unknown key {got}{did_you_mean} (allowed: {', '.join(allowed)})"
    return f"expected one of {_listing(allowed)}, got {got}{did_you_mean}"


def _env_name_hint(value: str) -> str:
    """A fix for the usual near-misses of an environment variable's name (never echoes a secret)."""
    bare = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value.strip())
    if bare:
        return f"; write the bare name without $ or braces: {bare.group(1)}"
    if re.fullmatch(r"[a-z_][a-z0-9_]*", value) and len(value) < 32:
        return f"; names are upper case here: {value.upper()}"
    return ""


def _got(value: Any, raw: str | None) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        text = "true" if value else "false"
        return text if raw is None or raw.lower() == text else f"'{raw}' (which YAML reads as {text})"
    if isinstance(value, (int, float)):
        return raw if raw is not None else str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return _quote(raw) if raw is not None else type(value).__name__


def _plain(value: Any) -> Any:
    """100.0 -> 100, for limits quoted in messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _listing(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _dotted(path: _KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------------
# The loader


@dataclass
class _Loaded:
    doc: _Doc
    model: Any  # None when the file is invalid


class _ProjectLoader:
    """Collects every problem of one project folder while building its models."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.present: dict[str, set[str]] = {}  # folder -> every name that has a file, valid or not

    def load(self) -> Project | None:
        config = self._load_project_file()
        segments = self._load_folder(_SEGMENT)
        destinations = self._load_folder(_DESTINATION)
        syncs = self._load_folder(_SYNC)
        for name, loaded in segments.items():
            if loaded.model is not None:
                self._check_sql_file(loaded)
        self._check_syncs(syncs, segments, destinations)
        if self.problems or config is None:
            return None
        return Project(
            root=self.root,
            config=config,
            segments={name: item.model for name, item in segments.items()},
            destinations={name: item.model for name, item in destinations.items()},
            syncs={name: item.model for name, item in syncs.items()},
        )

    def _load_project_file(self) -> ProjectConfig | None:
        found = [name for name in _PROJECT_FILES if (self.root / name).is_file()]
        if not found:
            message = "no syncer.yml in the project folder; create one with at least 'warehouse_url: duckdb:///warehouse.duckdb'"
            self.problems.append(Problem("syncer.yml", None, "", message))
            return None
        for extra in found[1:]:
            self.problems.append(Problem(extra, None, "", f"both {found[0]} and {extra} exist; keep one"))
        loaded = self._load_file(self.root / found[0], _PROJECT)
        return loaded.model if loaded else None

    def _load_folder(self, kind: _Kind) -> dict[str, _Loaded]:
        folder = self.root / kind.folder
        names = self.present.setdefault(kind.folder, set())
        result: dict[str, _Loaded] = {}
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        for path in files:
            if path.name.startswith(".") or path.suffix not in _YAML_SUFFIXES or not path.is_file():
                continue
            file, name = f"{kind.folder}/{path.name}", path.stem
            if name in names:
                message = f"another file in {kind.folder}/ already defines the {kind.noun} '{name}'; keep one"
                self.problems.append(Problem(file, None, "", message))
                continue
            names.add(name)
            valid_name = self._check_name(file, name, kind)
            loaded = self._load_file(path, kind)
            if loaded is not None and valid_name:
                result[name] = loaded
        return result

    def _check_name(self, file: str, name: str, kind: _Kind) -> bool:
        if NAME.match(name):
            return True
        fixed = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or kind.noun
        fixed = fixed if fixed[0].isalpha() else f"{kind.noun}_{fixed}"
        message = (
            f"'{name}' is not a valid {kind.noun} name (the file name is the name): use lowercase letters,"
            f" digits and _, starting with a letter, e.g. '{fixed}{Path(file).suffix}'"
        )
        self.problems.append(Problem(file, None, "", message))
        return False

    def _load_file(self, path: Path, kind: _Kind) -> _Loaded | None:
        file = path.relative_to(self.root).as_posix()
        doc = _read_doc(path, file, kind, self.problems)
        if doc is None:
            return None
        secrets, claimed = _secret_problems(doc, kind)
        claimed |= doc.unreadable
        self.problems.extend(secrets)
        try:
            model = _adapter(kind.schema).validate_python(doc.data)
        except ValidationError as exc:
            self.problems.extend(_validation_problems(doc, kind, exc, claimed))
            model = None
        return _Loaded(doc, model)

    def _check_sql_file(self, loaded: _Loaded) -> None:
        segment: SegmentConfig = loaded.model
        if not segment.sql_file:
            return
        doc = loaded.doc
        target = (self.root / "segments" / segment.sql_file)
        shown = os.path.relpath(target, self.root).replace(os.sep, "/")
        line = doc.line(("sql_file",))
        if not target.is_file():
            message = f"sql file '{segment.sql_file}' not found (looked for {shown}; sql_file is relative to the segment file)"
            self.problems.append(Problem(doc.file, line, "sql_file", message))
            return
        try:
            text = target.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            self.problems.append(Problem(doc.file, line, "sql_file", f"{shown} is not UTF-8 text; save it as UTF-8"))
            return
        if not text.strip():
            self.problems.append(Problem(doc.file, line, "sql_file", f"{shown} is empty; it must hold the segment's query"))
            loaded.model = None

    def _check_syncs(self, syncs: dict[str, _Loaded], segments: dict[str, _Loaded], destinations: dict[str, _Loaded]) -> None:
        audiences: dict[tuple[str, str], str] = {}
        for loaded in syncs.values():
            sync: SyncConfig | None = loaded.model
            if sync is None:
                continue
            doc = loaded.doc
            self._check_reference(doc, "segment", sync.segment, _SEGMENT)
            self._check_reference(doc, "destination", sync.destination, _DESTINATION)
            segment = segments.get(sync.segment)
            if segment is not None and segment.model is not None:
                self._check_identifiers(doc, sync, sync.segment, segment.model)
            self._check_mode(doc, sync, destinations.get(sync.destination))
            key = (sync.destination, sync.audience_id)
            if sync.audience_id is None:
                continue
            if key in audiences:
                message = (
                    f"audience '{sync.audience_id}' of destination '{sync.destination}' is already synced by"
                    f" {audiences[key]}; two syncs on one audience would remove each other's members"
                    " (combine the segments, or use another audience)"
                )
                self.problems.append(Problem(doc.file, doc.line(("audience_id",)), "audience_id", message))
            else:
                audiences[key] = doc.file

    def _check_mode(self, doc: _Doc, sync: SyncConfig, destination: "_Loaded | None") -> None:
        """Sends that cannot be taken back (texts) only make sense once per entry; lists never do."""
        kind = getattr(getattr(destination, "model", None), "type", None)
        if kind is None:
            return
        if (kind == "twilio_sms") != (sync.mode == "trigger"):
            expected = ("'trigger' (Twilio has no lists: it texts each member once when they enter the segment)"
                        if kind == "twilio_sms" else "'mirror' or 'add_only' (only twilio_sms destinations take 'trigger')")
            self.problems.append(Problem(doc.file, doc.line(("mode",)) or 1, "mode",
                                         f"mode '{sync.mode}' does not fit a {kind} destination; expected {expected}"))

    def _check_reference(self, doc: _Doc, field: str, name: str, kind: _Kind) -> None:
        present = self.present.get(kind.folder, set())
        if name in present:
            return  # a file exists; if it is broken, its own problems say so
        close = difflib.get_close_matches(name, sorted(present), n=1, cutoff=0.6)
        did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
        known = f" (known: {', '.join(sorted(present))})" if present else f" (there are no files in {kind.folder}/)"
        message = f"unknown {kind.noun} {_quote(name)}{did_you_mean}{known}; expected the name of a file in {kind.folder}/"
        self.problems.append(Problem(doc.file, doc.line((field,)), field, message))

    def _check_identifiers(self, doc: _Doc, sync: SyncConfig, segment_name: str, segment: SegmentConfig) -> None:
        mapped = list(segment.identifiers)
        for index, identifier in enumerate(sync.identifiers):
            if identifier in segment.identifiers:
                continue
            message = (
                f"identifier '{identifier}' is not mapped in segment '{segment_name}': add '{identifier}: <column>'"
                f" under 'identifiers:' in segments/{segment_name}.yml (mapped there: {', '.join(mapped)})"
            )
            path = ("identifiers", index)
            self.problems.append(Problem(doc.file, doc.line(path), _dotted(path), message))


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
    raise ConfigError(f"unknown {noun} {_quote(name)}{did_you_mean} (known: {', '.join(sorted(items)) or 'none'})")


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
        schema = _adapter(schema_type).json_schema()
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
