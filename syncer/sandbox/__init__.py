"""The sandbox: every registered platform's emulator (``destinations/<platform>/emulator.py``) served on
one loopback port, so the official SDKs run unchanged against them.

    from syncer.sandbox import Sandbox
    with Sandbox(port=0) as sb:                      # serves on 127.0.0.1 in a background thread
        audience_id = sb.meta.create_audience("120210000000", name="vip", ad_account_id="act_1001")
        ...                                          # point FacebookSession.GRAPH at sb.url
        sb.meta.members(audience_id)                 # what the emulator holds

Standalone: ``python -m syncer.sandbox.server --port 8510 --state .syncer/sandbox.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from destinations.meta.emulator import MetaEmulator
    from syncer.sandbox.server import Sandbox

__all__ = ["MetaEmulator", "Sandbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m syncer.sandbox.server` does not import the server module twice.
    if name == "Sandbox":
        from syncer.sandbox.server import Sandbox

        return Sandbox
    if name == "MetaEmulator":
        from destinations.meta.emulator import MetaEmulator

        return MetaEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
