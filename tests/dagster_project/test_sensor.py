"""The fast-path sensor: inline suppression within the tick, runless events, safe re-delivery."""

from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from syncer.delivery.conversions import record_conversion
from syncer.delivery.engine import Engine
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.conftest import write_customers
from tests.syncer.test_suppress import TOKEN, email_hash, held, rows, write


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SANDBOX_META_TOKEN", TOKEN)
    monkeypatch.setenv("SYNCER_SENSOR_WINDOW_S", "0.5")
    with Sandbox(port=0, meta_token=TOKEN) as sandbox:
        for audience in ("1", "2", "3"):
            sandbox.meta.create_audience(audience)
        write_customers(tmp_path / "warehouse.duckdb", rows(range(1, 11)))
        root = write(tmp_path, int(sandbox.url.rsplit(":", 1)[1]))
        Engine(load_project(root)).run()
        yield root, sandbox


def test_the_sensor_suppresses_within_its_tick_and_reports_runless_events(project) -> None:
    root, sandbox = project
    defs = build_definitions(root)
    sensor = defs.resolve_sensor_def("conversion_suppression")
    record_conversion(load_project(root), "6")
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert email_hash(6) not in held(sandbox, "1") and email_hash(6) not in held(sandbox, "2")
    [event] = result.asset_events
    assert event.asset_key == dg.AssetKey(["suppressions"])
    assert event.metadata["outcomes"].value == {"abandoners_meta": "removed", "lapsed_meta": "removed"}
    assert 0 <= event.metadata["seconds_to_suppression"].value < 5
    assert result.cursor == "[1]" and not result.run_requests


def test_a_redelivered_tick_sends_nothing_twice(project) -> None:
    root, sandbox = project
    sensor = build_definitions(root).resolve_sensor_def("conversion_suppression")
    record_conversion(load_project(root), "6")
    with dg.instance_for_test() as instance:
        sensor(dg.build_sensor_context(instance=instance, cursor=None))
        sent = sandbox.meta.request_count
        Engine(load_project(root)).ledger.set_cursor("conversions", "0")  # the daemon died before saving the tick
        again = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert sandbox.meta.request_count == sent and not again.asset_events
