"""``Problem``: one thing wrong in a project file, located by file, line and dotted key.

Every check of a project folder (YAML reading in ``syncer.project.yaml_source``, secrets in
``syncer.project.secrets``, pydantic errors in ``syncer.project.messages``, cross-file checks in
``syncer.project.loader``) reports through this one type, so ``syncer.project.project`` can gather them all
into one ``InvalidProjectError``. The small formatters below (``dotted``, ``quote``, ``listing``)
keep every message worded the same way. Import ``Problem`` from ``syncer.project.project``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyPath", "Problem", "dotted", "listing", "quote"]

KeyPath = tuple[str | int, ...]
"""A location inside one YAML document: keys and list indexes from the top."""


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


def quote(text: str, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut at ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def listing(values: list[str]) -> str:
    """'a', 'b', 'c': allowed values as messages list them."""
    return ", ".join(f"'{v}'" for v in values)


def dotted(path: KeyPath) -> str:
    """``("gates", "max_removal_pct")`` -> ``gates.max_removal_pct``; list items as ``identifiers[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
