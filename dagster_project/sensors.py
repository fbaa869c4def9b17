"""The fast path in Dagster: a sensor that suppresses converters within the tick, no run launched.

The daemon waits at least 5 s between ticks, so a tick that returns at once reacts in seconds at
best. This tick instead keeps polling the conversions table (every ``poll_interval_ms``) for most of
its allowed time and does the work inline: each conversion is suppressed and removed as soon as it
is seen, and reported as a runless ``suppressions`` asset event when the tick ends. The ledger holds the
real cursor and every outcome, so a tick that crashes and is re-delivered sends nothing twice.
"""

import os
import time

import dagster as dg

from syncer.delivery.fast_path import CURSOR, SuppressionResult, Suppressor
from syncer.project.project import Project, load_project

SUPPRESSIONS = dg.AssetKey(["suppressions"])
WINDOW_ENV = "SYNCER_SENSOR_WINDOW_S"
DEFAULT_WINDOW_S = 45.0  # well under the 60 s evaluation timeout


def suppressions_spec() -> dg.AssetSpec:
    return dg.AssetSpec(SUPPRESSIONS, group_name="fast_path",
                        description="People suppressed after converting; each event is one conversion with the"
                                    " time from conversion to every destination's acknowledgement")


def _event(result: SuppressionResult) -> dg.AssetMaterialization:
    seconds = list(result.seconds.values())
    return dg.AssetMaterialization(asset_key=SUPPRESSIONS, metadata={
        "conversion_id": result.conversion.conversion_id, "member_key": result.conversion.member_key,
        "type": result.conversion.type, "segments": ", ".join(result.segments),
        "outcomes": dg.MetadataValue.json(result.outcomes),
        "seconds_to_suppression": max(seconds) if seconds else -1.0})


def suppression_sensor(project: Project) -> dg.SensorDefinition:
    @dg.sensor(name="conversion_suppression", minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Suppress converters everywhere within the tick (long-polls the conversions table)")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        window = float(os.environ.get(WINDOW_ENV, DEFAULT_WINDOW_S))
        deadline = time.monotonic() + window
        events: list[dg.AssetMaterialization] = []
        with Suppressor(load_project(project.root)) as suppressor:
            suppressor.engine.lease_label = "Dagster sensor conversion_suppression"  # named in others' busy messages
            suppressor.follow(until=lambda: time.monotonic() > deadline,
                              on_result=lambda r: events.append(_event(r)) if r.outcomes else None)
            cursor = suppressor.ledger.get_cursor(CURSOR)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return _sensor
