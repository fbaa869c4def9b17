"""Plans that expire: a saved plan is refused once older than its sync's max_plan_age_minutes, and a
trigger sync (texts cannot be taken back) asks its segment again before each batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from syncer.delivery.engine import Engine
from syncer.errors import StalePlanError
from syncer.planning.plan import load_plan, save_plan
from syncer.project.project import load_project
from tests.conftest import person, write_customers
from tests.destinations.twilio.test_connector import FAST, frozen_clock, sandbox, sms_project, texts  # noqa: F401


def test_a_plan_older_than_its_max_age_is_refused(tmp_path: Path, sandbox) -> None:  # noqa: F811
    root = sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    folder = save_plan(Engine(load_project(root)).build_plan(), root / "plans")
    later = Engine(load_project(root), clock=lambda: time.time() + 61 * 60)
    with pytest.raises(StalePlanError, match="made 61 min ago and plans expire after 60 min"):
        later.apply_plan(load_plan(folder))
    assert sandbox.twilio.messages == []


def test_a_trigger_sync_texts_nobody_who_left_the_segment_since_its_plan(tmp_path: Path, sandbox) -> None:  # noqa: F811
    """A plan of 3 texts applied after member 2 left: 2 is not texted (before, every planned text went out)."""
    root = sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    folder = save_plan(Engine(load_project(root)).build_plan(), root / "plans")
    write_customers(root / "warehouse.duckdb", [person(1), person(3)])
    [report] = Engine(load_project(root), policy=FAST, sleep=lambda s: None).apply_plan(load_plan(folder))
    assert (report.added, report.left_segment) == (2, 1)
    assert set(texts(sandbox)) == {"+14155550001", "+14155550003"}
