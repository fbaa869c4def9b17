"""YAML files read into plain data that remembers where every key came from.

PyYAML's safe loader composes the node tree; ``_TreeBuilder`` turns it into dicts, lists and scalars
by hand so that:

- every key and list item keeps its 1-based line (``YamlDoc.lines``), and every scalar its source
  text (``YamlDoc.raw``), so a problem found later can point at the line and quote what was typed;
- duplicate keys are problems (PyYAML would silently keep the last one);
- keys stay text (``no:`` is the key 'no', not False), merges (``<<: *base``) and aliases work, and
  self-referencing aliases and unsupported tags are reported instead of crashing.

Syntax errors become one ``Problem`` with the line and a hint for the usual causes (tabs, an unquoted
``': '``, a missing ``':'``). Only PyYAML is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncer.project.problems import KeyPath, Problem, dotted, quote

__all__ = ["YamlDoc", "read_doc"]


@dataclass
class YamlDoc:
    """One YAML file as plain data, with the line of every key and the source text of every scalar."""

    file: str
    data: Any = None
    lines: dict[KeyPath, int] | None = None  # path of a key or list item -> its 1-based line
    raw: dict[KeyPath, str] | None = None  # path of a scalar -> its source text
    unreadable: set[KeyPath] = dataclasses.field(default_factory=set)  # values already reported unreadable

    def line(self, path: KeyPath) -> int:
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

    def __init__(self, doc: YamlDoc, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems
        self.constructor = yaml.SafeLoader("")
        doc.lines, doc.raw = {}, {}

    def build(self, node: yaml.Node, path: KeyPath, active: frozenset[int] = frozenset()) -> Any:
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

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
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

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, active: frozenset[int]) -> dict[str, Any]:
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

    def _problem(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.doc.file, node.start_mark.line + 1, dotted(path), message))


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


def read_doc(path: Path, file: str, problems: list[Problem], expected: Callable[[], str]) -> YamlDoc | None:
    """Parse one YAML file into a located ``YamlDoc``, or add its problem and return None.

    ``expected`` describes what the file should hold, for the message about an empty file.
    """
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
        problems.append(Problem(file, None, "", f"the file is empty; expected {expected()}"))
        return None
    if not isinstance(node, yaml.MappingNode):
        got = "a list" if isinstance(node, yaml.SequenceNode) else f"the single value {quote(str(node.value))}"
        message = f"expected a mapping of 'key: value' lines at the top level, got {got}"
        problems.append(Problem(file, node.start_mark.line + 1, "", message))
        return None
    doc = YamlDoc(file)
    doc.data = _TreeBuilder(doc, problems).build(node, ())
    return doc
