"""Environment variables a project's files refer to that are not set here: warnings, not problems.

A file names variables two ways: ``${VAR}`` inside a value (``postgresql://app:${PGPASSWORD}@db/prod``) and
the value of a ``*_env`` key (``access_token_env: META_ACCESS_TOKEN``). Either is read only when a run
needs it, so a variable missing where ``validate`` runs (a laptop, CI) may well be set where syncs run:
``unset_variables`` says which, with file and line, and leaves the exit code alone. ``${VAR:-default}``
has a value either way and is never reported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from syncer.project.problems import KeyPath, Problem, dotted
from syncer.project.yaml_source import YamlDoc

__all__ = ["unset_variables"]

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
_ENV_KEY = re.compile(r"_env$")


def unset_variables(doc: YamlDoc) -> list[Problem]:
    """One warning per reference in ``doc`` to an environment variable that is not set."""
    warnings = []
    for path, value in _strings(doc.data, ()):
        key = str(path[-1]) if path else ""
        if _ENV_KEY.search(key) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", value) and not os.environ.get(value):
            message = (f"environment variable {value} is not set here; export it where syncs run"
                       " (runs that use this file fail until it is)")
            warnings.append(Problem(doc.file, doc.line(path), dotted(path), message))
            continue
        for match in _REFERENCE.finditer(value):
            name, default = match.group(1), match.group(2)
            if default is None and name not in os.environ:
                message = (f"environment variable {name} (in ${{{name}}}) is not set here; export it where syncs run"
                           " (anything reading this value fails until it is)")
                warnings.append(Problem(doc.file, doc.line(path), dotted(path), message))
    return warnings


def _strings(data: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, path + (index,))
