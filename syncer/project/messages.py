"""Pydantic validation errors turned into located, plain-language problems.

Pydantic says ``Input should be a valid number, unable to parse string as a number`` at
``('gates', 'max_removal_pct')``; people should read::

    syncs/vip_meta.yml:7: gates.max_removal_pct: expected a number, got 'ten'

``validation_problems`` walks each error's location against the located YAML data (``YamlDoc``) to
find the line, rewrites the message from a table (``_MESSAGES``) or a specific rule (unknown keys
with "did you mean", unknown destination types, literals, numbers YAML read where text was meant,
env-var names), and never quotes a value ``config_secrets.is_sensitive`` flags. Errors on keys
already reported as secrets or typos are dropped, so each mistake is told once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from syncer.project.files import FileKind
from syncer.project.introspection import model_at, models_of, union_tags
from syncer.project.problems import KeyPath, Problem, dotted, listing, quote
from syncer.project.secrets import is_sensitive
from syncer.project.yaml_source import YamlDoc

__all__ = ["validation_problems"]


@dataclass(frozen=True)
class _Located:
    path: KeyPath  # the part of the error location found in the data
    rest: tuple[Any, ...]  # the part not found (a missing key)
    on_key: bool  # the error is about the key itself, not its value


def _locate(data: Any, loc: tuple[Any, ...], schema: Any) -> _Located:
    parts = list(loc)
    if len(models_of(schema)) > 1 and parts and isinstance(data, dict) and parts[0] == data.get("type"):
        parts.pop(0)  # the discriminated union's tag
    path: KeyPath = ()
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


def validation_problems(doc: YamlDoc, kind: FileKind, exc: ValidationError, claimed: set[KeyPath]) -> list[Problem]:
    """One located, plain-language ``Problem`` per pydantic error, minus those already explained."""
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


def _error_problem(doc: YamlDoc, kind: FileKind, err: dict[str, Any], where: _Located) -> Problem:
    path, kind_of_error = where.path, err["type"]
    if kind_of_error == "missing" and where.rest:
        key = str(where.rest[0])
        field = dotted(path + (key,))
        line = doc.line(path) if path else 1
        return Problem(doc.file, line, field, _missing_message(kind, doc.data, path, key))
    if kind_of_error in ("union_tag_invalid", "union_tag_not_found"):
        path = ("type",)
    if kind_of_error == "value_error" and not path:
        path = _mentioned_key(err["msg"], doc.data)
    line = doc.line(path) if path else 1
    return Problem(doc.file, line, dotted(path), _message(doc, kind, err, where, path))


def _mentioned_key(message: str, data: Any) -> KeyPath:
    """For a whole-model error, the first key its message names that the file has."""
    for key in re.findall(r"'([a-z_]+)'", message):
        if isinstance(data, dict) and key in data:
            return (key,)
    return ()


def _missing_message(kind: FileKind, data: Any, parent: KeyPath, key: str) -> str:
    model = model_at(kind.schema, data, parent)
    info = model.model_fields.get(key) if model else None
    described = f": {info.description}" if info is not None and info.description else ""
    return f"required key '{key}' is missing{described}"


def _suggest_key(kind: FileKind, data: Any, path: KeyPath) -> str | None:
    model = model_at(kind.schema, data, path[:-1])
    if model is None or not isinstance(path[-1], str):
        return None
    matches = difflib.get_close_matches(path[-1], list(model.model_fields), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _message(doc: YamlDoc, kind: FileKind, err: dict[str, Any], where: _Located, path: KeyPath) -> str:
    kind_of_error, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    raw = doc.raw.get(path) if not where.on_key else None
    got = "a value not shown here (it may be a secret)" if is_sensitive(path, value) else _got(value, raw)
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


def _unknown_key_message(kind: FileKind, data: Any, path: KeyPath) -> str:
    key = str(path[-1])
    model = model_at(kind.schema, data, path[:-1])
    if model is None:
        return f"unknown key '{key}'"
    hint = _suggest_key(kind, data, path)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown key '{key}'{did_you_mean} (allowed: {', '.join(model.model_fields)})"


def _type_tag_message(kind: FileKind, data: Any) -> str:
    tags = union_tags(models_of(kind.schema))
    tag = data.get("type") if isinstance(data, dict) else None
    if tag is None:
        return f"required key 'type' is missing; known {kind.noun} types: {listing(tags)}"
    close = difflib.get_close_matches(str(tag), tags, n=1, cutoff=0.6)
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind.noun} type {quote(str(tag))}{did_you_mean} (known types: {listing(tags)})"


def _literal_message(expected: str, value: Any, got: str, on_key: bool) -> str:
    allowed = re.findall(r"'([^']*)'", expected)
    close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6) if isinstance(value, str) else []
    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
    if on_key:
        return f"unknown key {got}{did_you_mean} (allowed: {', '.join(allowed)})"
    return f"expected one of {listing(allowed)}, got {got}{did_you_mean}"


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
        return quote(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return quote(raw) if raw is not None else type(value).__name__


def _plain(value: Any) -> Any:
    """100.0 -> 100, for limits quoted in messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
