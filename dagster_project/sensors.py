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


REALTIME_CHANGES = dg.AssetKey(["realtime_changes"])


def realtime_spec() -> dg.AssetSpec:
    return dg.AssetSpec(REALTIME_CHANGES, group_name="fast_path",
                        description="Audience changes made in real time: members an event (segments with `events:`)"
                                    " or an `expires_at` that passed brought into or out of an audience; each event is"
                                    " one sync's change with the time from the event to the platform's acknowledgement")


def _change_event(change) -> dg.AssetMaterialization:
    seconds = list(change.seconds.values())
    return dg.AssetMaterialization(asset_key=REALTIME_CHANGES, partition=None, metadata={
        "sync": change.sync, "segment": change.segment, "status": change.status,
        "added": len(change.added), "removed": len(change.removed),
        "members": ", ".join(sorted(change.added + change.removed)[:20]),
        "reason": change.reason or "",
        "seconds_event_to_ack_max": max(seconds) if seconds else -1.0})


def realtime_sensor(project: Project) -> dg.SensorDefinition:
    """The real-time worker (``syncer.delivery.realtime.Follower``: conversions, events and expiries) long-polling
    inside the tick, like ``conversion_suppression``; it replaces that sensor when the project has real-time
    segments, so one worker handles every conversion."""

    @dg.sensor(name="realtime_follow", minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Change audiences within a second of an event or an expiry, and suppress converters"
                           " (long-polls the events and conversions tables inside the tick)")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        from syncer.delivery.realtime import Follower
        from syncer.delivery.realtime_sources import EVENTS_CURSOR

        window = float(os.environ.get(WINDOW_ENV, DEFAULT_WINDOW_S))
        deadline = time.monotonic() + window
        events: list[dg.AssetMaterialization] = []
        with Follower(load_project(project.root), label="Dagster sensor realtime_follow") as worker:
            worker.follow(until=lambda: time.monotonic() > deadline,
                          on_change=lambda c: events.append(_change_event(c)) if (c.added or c.removed or c.status != "ok") else None,
                          on_suppression=lambda r: events.append(_event(r)))
            cursor = worker.ledger.get_cursor(EVENTS_CURSOR)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return _sensor


def follows_in_real_time(project: Project) -> bool:
    return project.config.events is not None or any(s.expires_at for s in project.segments.values())
