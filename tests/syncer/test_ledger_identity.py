"""A ledger that knows itself: texts are never sent from a new or replaced ledger without the operator's word."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syncer.delivery.engine import Engine
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from tests.conftest import person
from tests.destinations.twilio.test_connector import FAST, frozen_clock, sandbox, sms_project, texts  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def run(root: Path):
    with Engine(load_project(root), policy=FAST, sleep=lambda s: None) as engine:
        [report] = engine.run()
    return report


def test_a_deleted_ledger_texts_nobody_again_until_adopted(tmp_path: Path, sandbox) -> None:  # noqa: F811
    root = sms_project(tmp_path, sandbox, [person(i) for i in range(1, 4)])
    assert run(root).added == 3
    for leftover in (root / ".syncer").glob("ledger.db*"):
        leftover.unlink()  # the ledger is lost; the project's state remembers which one texts came from
    refused = run(root)
    assert refused.status == "failed" and refused.added == 0
    assert "not the one this project last sent texts from" in refused.reason and "syncer ledger adopt" in refused.reason
    assert sum(texts(sandbox).values()) == 3  # before: everyone was texted again
    adopt = subprocess.run([sys.executable, "-m", "syncer.cli", "-p", str(root), "ledger", "adopt"], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert adopt.returncode == 0 and "from now on" in adopt.stdout, adopt.stdout + adopt.stderr
    assert run(root).added == 3  # the operator chose to send from the new ledger


def test_every_ledger_has_one_identity_that_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = Ledger(url).identity()
    assert Ledger(url).identity() == first and len(first) == 32
    assert Ledger(f"sqlite:///{tmp_path / 'other.db'}").identity() != first
