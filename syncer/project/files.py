"""The four kinds of project file, and what each must hold.

A project folder holds ``syncer.yml`` and one YAML file per segment, destination and sync in
``segments/``, ``destinations/`` and ``syncs/`` (layout in ``syncer.project.config``). ``FileKind`` ties a
folder to the noun used in messages and the pydantic schema its files are validated with. The file
stem is the object's name, so it must match ``NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from syncer.project.config import DestinationConfig, ProjectConfig, SegmentConfig, SyncConfig
from syncer.project.introspection import models_of, union_tags
from syncer.project.problems import listing

__all__ = [
    "DESTINATION", "NAME", "PROJECT", "PROJECT_FILE_NAMES", "SEGMENT", "SYNC", "YAML_SUFFIXES",
    "FileKind", "adapter", "expected_keys",
]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""A segment, destination or sync name (the file stem); it becomes a Dagster asset key."""

YAML_SUFFIXES = (".yml", ".yaml")
PROJECT_FILE_NAMES = ("syncer.yml", "syncer.yaml")


@dataclass(frozen=True)
class FileKind:
    """One kind of project file: where it lives, what messages call it, and what validates it."""

    folder: str  # "" for syncer.yml
    noun: str  # "segment"
    schema: Any  # model class or annotated union


PROJECT = FileKind("", "project", ProjectConfig)
SEGMENT = FileKind("segments", "segment", SegmentConfig)
DESTINATION = FileKind("destinations", "destination", DestinationConfig)
SYNC = FileKind("syncs", "sync", SyncConfig)


@cache
def adapter(schema: Any) -> TypeAdapter[Any]:
    """One ``TypeAdapter`` per schema (building one is slow), for validation and JSON Schemas."""
    return TypeAdapter(schema)


def expected_keys(kind: FileKind) -> str:
    """What a file of ``kind`` must hold at the least, for the message about an empty file."""
    models = models_of(kind.schema)
    if len(models) > 1:
        return f"a mapping starting with 'type:' (one of {listing(union_tags(models))})"
    required = [name for name, info in models[0].model_fields.items() if info.is_required()]
    return f"a mapping with at least: {', '.join(required)}" if required else "a mapping of 'key: value' lines"
