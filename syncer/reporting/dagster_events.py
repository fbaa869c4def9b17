"""One history in the Dagster UI, however a sync ran: the asset keys, metadata and descriptions of syncs.

The Dagster code location (``dagster_project``) materializes sync assets with this metadata, and a CLI run
reports the same as runless asset events when a Dagster instance is configured (``$DAGSTER_HOME``), so the
UI shows every run, from the CLI, a schedule or a click. The ledger stays the truth; these are its echo.

Numeric values are plain ints and floats so Dagster plots them over time (the asset's Plots tab):
``audience_size`` (also ``dagster/row_count``, which lineage nodes show), ``added``, ``removed``,
``rejected``, ``no_consent`` (members left out for lack of consent on the sync's channel), ``retained``,
the time from conversion to removal, and the match figures (``match_readiness_email_pct``, ``..._phone_pct``,
``..._both_pct``, ``platform_accepted``, ``platform_match_rate``: ``syncer.ledger.match_rates``), and in
warehouse mode what the plan cost there (``warehouse_statements``, ``warehouse_rows_returned``...:
``syncer.ledger.warehouse_costs``).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncer.delivery.engine import SyncReport
    from syncer.project.project import Project

APPROVE_TAG = "syncer/approve"
"""Run tag that lets a held sync through: "true" for every sync, or comma-separated sync names."""
SOURCE_TAG = "syncer/source"


def plan_key(destination: str, sync: str) -> list[str]:
    return [destination, f"{sync}_plan"]


def sync_key(destination: str, sync: str) -> list[str]:
    return [destination, sync]


def approve_job_name(sync: str) -> str:
    return f"approve_{sync}"


def stream_metadata(ledger, sync: str, *, now: float | None = None) -> dict[str, Any]:
    """The real-time path's figures of a sync (``syncer.ledger.realtime``), over 24 h: event-to-acknowledgement
    percentiles (floats, so Dagster plots them over time) and, when a stream gate holds it, why."""
    import time

    from syncer.ledger.realtime import StreamBook

    book = StreamBook(ledger)
    figures = book.latency(since=(now or time.time()) - 86_400, sync=sync)
    metadata: dict[str, Any] = {f"realtime_{point}_seconds": float(figures[point]) for point in ("p50", "p95", "p99") if figures}
    if figures:
        metadata["realtime_changes_24h"] = figures["count"]
    held = book.holds().get(sync)
    if held:
        metadata["realtime_held"] = held[0]
    return metadata


def sync_metadata(report: SyncReport, *, audience_size: int, latencies: Sequence[float] = ()) -> dict[str, Any]:
    """A sync's figures after an apply, a hold or a failure, as Dagster metadata values."""
    import dagster as dg

    retained = sum((report.retained or {}).values())
    # what a person reads first comes first (Dagster keeps this order): the status, why, and what to do
    metadata: dict[str, Any] = {"status": report.status}
    if report.reason:
        metadata["note"] = report.reason
    if report.status == "held":
        metadata["approve"] = dg.MetadataValue.md(
            f"Nothing was sent. To let this plan's changes through, open **Jobs → {approve_job_name(report.sync)}** and"
            f" click **Materialize all** (or run `syncer run --sync {report.sync} --approve`).")
    metadata |= {
        "audience_size": audience_size, "dagster/row_count": audience_size,
        "members": report.members, "added": report.added, "removed": report.removed, "rejected": report.rejected,
        "no_consent": report.no_consent, "retained": retained, "retried": report.retried, "deferred": report.deferred,
        "requests": report.requests, "settled": report.settled,
        "suppressed_since_plan": report.suppressed, "left_segment_since_plan": report.left_segment,
        "rejected_reasons": dg.MetadataValue.json(report.reasons or {}),
        "deferred_reasons": dg.MetadataValue.json(report.deferred_reasons or {}),
        "retained_reasons": dg.MetadataValue.json(report.retained or {}),
        "destination_counts": dg.MetadataValue.json(report.platform_counts or {}),
        # the plan's id as `syncer plan` prints it: the whole hash widens the table past the panel
        "plan_id": report.plan_hash[:12], "duration_seconds": round(report.duration + report.plan_seconds, 3),
    }
    if report.created_audience:
        metadata["created_audience"] = report.created_audience
    metadata |= warehouse_metadata(getattr(report, "warehouse", None))
    metadata |= match_metadata(getattr(report, "match", None))
    if latencies:
        metadata["suppression_p50_seconds"] = round(statistics.median(latencies), 3)
        metadata["suppression_max_seconds"] = round(max(latencies), 3)
    if report.gates:
        metadata["gates"] = dg.MetadataValue.md(gates_table(report))
    if report.error_class:
        metadata.update(error_class=dg.MetadataValue.text(report.error_class),
                        error_fault=dg.MetadataValue.text(report.error_fault or "caller"),
                        error_detail=dg.MetadataValue.text(report.error_detail or "no detail"))
    return metadata


def match_metadata(match: dict | None) -> dict[str, Any]:
    """The run's match figures (``syncer.ledger.match_rates``) as metadata: floats and ints Dagster plots over
    time (readiness in percent, rows the platform accepted, its match rate in percent), the rest as JSON."""
    import dagster as dg

    if not match:
        return {}
    ready = match["readiness"]
    metadata: dict[str, Any] = {f"match_readiness_{kind}_pct": float(ready[f"{kind}_pct"])
                                for kind in ("email", "phone", "both") if ready[f"{kind}_pct"] is not None}
    metadata |= {"match_readiness_members": ready["members"], "platform_sent": match["sent"],
                 "platform_accepted": match["accepted"]}
    if match.get("platform_received") is not None:
        metadata["platform_received"] = match["platform_received"]
        metadata["platform_invalid"] = match.get("platform_invalid") or 0
    if match.get("match_rate") is not None:
        metadata["platform_match_rate"] = float(match["match_rate"])
        metadata["platform_match_rate_source"] = dg.MetadataValue.text(match["match_rate_source"])
    return metadata


def warehouse_metadata(costs: dict | None) -> dict[str, Any]:
    """What a warehouse-mode plan cost in the warehouse (``syncer.ledger.warehouse_costs``), as plottable
    numbers; nothing in the local mode, and no figure the engine did not report."""
    if not costs:
        return {}
    figures = {f"warehouse_{name}": costs.get(name) for name in
               ("statements", "rows_returned", "rows_uploaded", "rows_scanned", "bytes_billed", "seconds")}
    return {name: value for name, value in figures.items() if value is not None}


def gates_table(report: SyncReport) -> str:
    tripped = "**held**" if report.status == "held" else "approved"  # a tripped gate let through says so
    rows = "\n".join(f"| {g.gate} | {'passed' if g.passed else tripped} | {g.reason} |" for g in report.gates)
    return "| gate | result | figures |\n|---|---|---|\n" + rows


def sync_description(project: Project, name: str) -> str:
    """Markdown for a sync asset: where it sends, how, and the segment's SQL."""
    sync = project.syncs[name]
    destination = project.destinations[sync.destination]
    audience = sync.audience_id or ("created on the first run" if sync.create_audience else "?")
    gates = project.gates_for(name)
    settings = {k: v for k, v in gates.model_dump().items() if v is not None}
    lines = [sync.description or f"Sync **{name}**: segment `{sync.segment}` → {destination.type} audience `{audience}`.", "",
             f"- mode: `{sync.mode}`; identifiers: {', '.join(f'`{k}`' for k in sync.identifiers)}",
             f"- gates: {', '.join(f'{k} {v}' for k, v in settings.items()) or 'none'}",
             f"- held syncs are approved with the job `{approve_job_name(name)}`", "",
             f"Segment `{sync.segment}`:", "", "```sql", project.segment_sql(sync.segment).strip(), "```"]
    return "\n".join(lines)


def report_cli_run(project: Project, reports: Sequence[SyncReport], *, command: str,
                   audience_sizes: dict[str, int]) -> int:
    """Report a CLI run's syncs to the Dagster instance ``$DAGSTER_HOME`` names, as runless materializations
    of the same assets the code location defines; returns how many. Without ``$DAGSTER_HOME`` nothing is
    done. Busy syncs sent nothing and changed nothing: they are not reported."""
    if not os.environ.get("DAGSTER_HOME"):
        return 0
    import dagster as dg

    instance = dg.DagsterInstance.get()
    reported = 0
    for report in reports:
        if report.status == "busy" or report.sync not in project.syncs:
            continue
        key = dg.AssetKey(sync_key(project.syncs[report.sync].destination, report.sync))
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key, description=f"`syncer {command}` from the command line",
            metadata=sync_metadata(report, audience_size=audience_sizes.get(report.sync, 0)),
            tags={SOURCE_TAG: f"cli-{command}"}))
        reported += 1
    return reported
