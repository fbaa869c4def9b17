"""An in-process destination for engine tests, with deterministic failure switches.

It implements the real interface and keeps audiences in a class-level dict so a test can read what
"landed". Switches (set on the class by a test, reset by ``FakeDestination.reset()``):

- ``reject_keys``: member keys answered with ``REJECTED`` (reason ``fake_rejected``)
- ``fail_calls``: {call number: exception} raised on that call (1-based, counting every call)
- ``die_after_batches``: hard-exit the process (like ``kill -9``) after this many successful calls

The base ``Destination`` guards every call (empty batch, ``max_batch`` from the config), so ``calls``
records only batches that reached the "platform".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

from destinations.base import AudienceRef, BatchResult, Destination, Member, Op, RowOutcome, RowStatus
from destinations.fake.config import CAPABILITIES, FakeConfig, capabilities_for


class FakeDestination(Destination):
    kind = "fake"
    capabilities = CAPABILITIES
    audiences: ClassVar[dict[str, dict[str, dict[str, str]]]] = {}
    calls: ClassVar[list[tuple[str, int]]] = []
    reject_keys: ClassVar[set[str]] = set()
    fail_calls: ClassVar[dict[int, Exception]] = {}
    die_after_batches: ClassVar[int | None] = None

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.capabilities = capabilities_for(config)

    @classmethod
    def reset(cls) -> None:
        cls.audiences, cls.calls, cls.reject_keys, cls.fail_calls, cls.die_after_batches = {}, [], set(), {}, None

    def check(self) -> None:
        return None

    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        cls = type(self)
        cls.calls.append((op, len(members)))
        failure = cls.fail_calls.pop(len(cls.calls), None)
        if failure is not None:
            raise failure
        store = cls.audiences.setdefault(audience.audience_id, {})
        outcomes = []
        for m in members:
            if m.member_key in cls.reject_keys:
                outcomes.append(RowOutcome(m.member_key, RowStatus.REJECTED, "fake_rejected"))
                continue
            if op == "add":
                store[m.member_key] = dict(m.identifiers)
            else:
                store.pop(m.member_key, None)
            outcomes.append(RowOutcome(m.member_key, RowStatus.SENT))
        if cls.die_after_batches is not None and len(cls.calls) >= cls.die_after_batches:
            os._exit(137)
        return BatchResult(op=op, outcomes=tuple(outcomes))
