"""Helpers shared by the connector tests: members, outcomes, classify tables, SMS projects.

Fixtures live in ``conftest.py`` next to this module; these are plain functions, imported by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from destinations.base import BatchResult, Member, RowStatus
from syncer.sandbox import server as sandbox_server


def by_email(i: int, **extra: str) -> Member:
    """Member ``k{i}`` with the email ``person{i}@example.com`` and any ``extra`` identifiers."""
    return Member(f"k{i}", {"email": f"person{i}@example.com", **extra})


def statuses(result: BatchResult) -> list[tuple[str, RowStatus, str | None]]:
    """(member_key, status, reason) of each outcome, in order."""
    return [(o.member_key, o.status, o.reason) for o in result.outcomes]


def assert_classified(failure: Any, expected: type[Exception] | None, retry_after: float | None = None) -> None:
    """One row of a ``classify`` table: None for success, else exactly ``expected`` carrying ``retry_after``."""
    if expected is None:
        assert failure is None
        return
    assert type(failure) is expected
    assert getattr(failure, "retry_after", None) == retry_after


def only_emulator(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Serve only emulator ``name``, so other modules' emulator registrations cannot break these tests."""
    monkeypatch.setattr(sandbox_server, "EMULATORS", {name: sandbox_server.EMULATORS[name]})


def read_consent_as_sms(root: Path) -> None:
    """Make the conftest project's segment read its consent column as SMS consent (it is ads consent)."""
    segment = root / "segments" / "buyers.yml"
    segment.write_text(segment.read_text().replace("consent: {ads: ads_consent}", "consent: {sms: ads_consent}"))
