"""Which pydantic model validates which part of a config file, generic over unions like ``DestinationConfig``.

Pydantic reports an error by location; to explain it ("unknown key 'audiance_id'; did you mean
'audience_id'?", "required key 'sql' is missing: <its description>") we need the model that owns
that location. ``model_at(schema, data, path)`` walks the annotations (unwrapping ``Annotated``,
``Optional``, lists and dicts, and picking a union member by its ``type:`` tag) alongside the data.
Used by ``syncer.project.messages``, ``syncer.project.secrets`` and ``syncer.project.files``.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from syncer.project.problems import KeyPath

__all__ = ["literal_values", "model_at", "models_of", "union_tags", "unwrap"]


def unwrap(tp: Any) -> Any:
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


def models_of(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can be: one for a model, each member for a union, none otherwise."""
    tp = unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [model for arg in get_args(tp) for model in models_of(arg)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def literal_values(tp: Any) -> list[Any]:
    """The values of a ``Literal[...]`` annotation, else []."""
    tp = unwrap(tp)
    return list(get_args(tp)) if get_origin(tp) is Literal else []


def union_tags(models: list[type[BaseModel]], discriminator: str = "type") -> list[str]:
    """Every ``type:`` value a union of models accepts, sorted (e.g. the known destination types)."""
    return sorted(str(v) for model in models for v in literal_values(model.model_fields[discriminator].annotation))


def _pick_model(models: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(models) <= 1:
        return models[0] if models else None
    tag = data.get("type") if isinstance(data, dict) else None
    return next((m for m in models if tag in literal_values(m.model_fields["type"].annotation)), None)


def model_at(schema: Any, data: Any, path: KeyPath) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` of ``data``, when there is one."""
    tp = schema
    for part in path:
        model = _pick_model(models_of(tp), data)
        if model is not None:
            if not isinstance(part, str) or part not in model.model_fields:
                return None
            tp = model.model_fields[part].annotation
        else:
            inner = unwrap(tp)
            args = get_args(inner)
            if get_origin(inner) in (list, tuple, set, frozenset) and args:
                tp = args[0]
            elif get_origin(inner) is dict and len(args) == 2:
                tp = args[1]
            else:
                return None
        data = _child(data, part)
    return _pick_model(models_of(tp), data)


def _child(data: Any, part: str | int) -> Any:
    if isinstance(data, dict) and isinstance(part, str):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None
