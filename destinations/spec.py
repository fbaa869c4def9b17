"""The one spec each platform registers (``destinations/<platform>/__init__.py``: ``SPEC = ...``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from destinations.base import Capabilities, Member
from destinations.config import DestinationConfigBase

__all__ = ["DestinationSpec", "load_object"]


@dataclass(frozen=True)
class DestinationSpec:
    """What the rest of the product needs to know about one platform."""

    type: str
    """The ``type:`` of its destination files."""
    config: type[DestinationConfigBase]
    """Its config model (pydantic, ``extra="forbid"``)."""
    connector: str
    """``module:Class`` of its ``Destination``, imported on first use."""
    capabilities: Capabilities | Callable[[Any], Capabilities]
    """What it accepts, or a function of its config when that depends on it (Google's transport)."""
    emulator: str | None = None
    """``module:Class`` of its sandbox emulator, served under ``/<mount>/`` (an ``Emulator``)."""
    mount: str | None = None
    """The sandbox path prefix of the emulator; the base URL a destination file's ``endpoint`` names."""
    sandbox_secrets: Mapping[str, str] = field(default_factory=dict)
    """Environment variable -> value the emulator accepts (the demo's credentials)."""
    seed_audience: Callable[[Any, Any, str, str], None] | None = None
    """``(emulator, destination config, audience_id, name)``: make the audience exist in the sandbox
    (for platforms whose audiences must exist before members are added)."""
    sandbox_destination: Callable[[str], dict[str, Any]] | None = None
    """A destination file's fields (as a dict) pointing at the emulator at the given base URL, with the
    ``sandbox_secrets`` env names: what the contract suite and a user's CI build the connector from."""
    sandbox_audience: str | None = None
    """An audience id of the platform's form that ``seed_audience`` creates (or that needs none)."""
    sandbox_member: Callable[[int], Member] | None = None
    """The ``i``-th member the contract suite sends, identifiers in the platform's format; default: an
    email, a US phone and a name, encoded by ``syncer.identity`` for ``capabilities.platform``."""
    sandbox_holds: Callable[[Any, str, Mapping[str, str]], bool] | None = None
    """``(emulator, audience_id, identifiers)``: whether the sandbox audience holds a person matched by any of
    these identifiers (kind -> value in the format the connector sends). Read from the emulator's own
    state, so a scenario checks what the platform holds rather than what our ledger believes. For a
    platform that keeps no membership (a text), whether that person was sent the audience's message."""
    sandbox_refused_row: Mapping[str, str | None] | None = None
    """Raw values (identifier kind -> warehouse value; None clears a kind) that our identity rules accept and
    the platform refuses for good, as the real one would: the contract suite gives them to one member to
    see a refused row wait instead of being sent again. None when no such value exists."""
    sandbox_refuse: Callable[[Any, Mapping[str, str]], None] | None = None
    """``(emulator, identifiers)``: make the sandbox refuse the person these identifiers (as sent) name for
    good, through the emulator's own mechanism for what happens outside our syncs (a forgotten user, a
    number that texted STOP). For platforms whose refusals no value our identity rules accept can reach."""


def load_object(reference: str) -> Any:
    """The object a ``module:Name`` reference names."""
    module_name, _, name = reference.partition(":")
    return getattr(importlib.import_module(module_name), name)
