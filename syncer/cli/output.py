"""The rich tables and summary lines the CLI prints, one builder per view.

Commands gather rows (or take them from ``--json``-ready dicts) and hand them here, so a command
reads as "load, act, show" and the column lists live in one place.
"""

from __future__ import annotations

import time

from rich.table import Table

from syncer.cli.common import console, exit_code

_PLAN_COLUMNS = ("sync", "members", "held", "add", "remove", "rejected", "retried", "hash")
_SUMMARY_COLUMNS = ("sync", "status", "members", "added", "removed", "rejected", "retried", "requests", "seconds")
_STATUS_COLOURS = {"ok": "green", "held": "yellow", "failed": "red", "partial": "yellow"}


def plan_table(sync_plans) -> Table:
    from syncer.planning.plan import summarise

    table = Table(title="plan")
    for col in _PLAN_COLUMNS:
        table.add_column(col, justify="left" if col in ("sync", "hash") else "right")
    for row in summarise(sync_plans):
        table.add_row(*[str(row[c]) for c in _PLAN_COLUMNS])
    return table


def print_summary(reports) -> int:
    """Print the per-sync table and notes; return the exit code."""
    table = Table(title="sync summary")
    for col in _SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("sync", "status") else "right")
    for r in reports:
        table.add_row(r.sync, f"[{_STATUS_COLOURS.get(r.status, 'white')}]{r.status}[/]", str(r.members), str(r.added),
                      str(r.removed), str(r.rejected), str(r.retried), str(r.requests), f"{r.duration + r.plan_seconds:.2f}")
    console.print(table)
    for r in reports:
        if r.reasons:
            console.print(f"  {r.sync} rejected: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.reasons.items())))
        if getattr(r, "suppressed", 0):
            console.print(f"  {r.sync}: {r.suppressed} not added: suppressed (a conversion) after the plan was made")
        if getattr(r, "left_segment", 0):
            console.print(f"  {r.sync}: {r.left_segment} not texted: they left the segment (or withdrew consent) after the plan")
        if getattr(r, "no_consent", 0):
            console.print(f"  {r.sync}: {r.no_consent} segment members left out: their consent does not allow this sync")
        if getattr(r, "created_audience", None):
            console.print(f"  {r.sync}: created audience {r.created_audience} (kept in the ledger; to pin it, put"
                          f" audience_id: \"{r.created_audience}\" in the sync's file)", highlight=False)
        if getattr(r, "settled", 0):
            console.print(f"  {r.sync}: {r.settled} sent again first: a batch an interrupted run sent and never recorded")
        if getattr(r, "retained", None):
            console.print(f"  {r.sync} leavers kept: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.retained.items())))
        if r.deferred_reasons:
            console.print(f"  {r.sync} left for the next run: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.deferred_reasons.items())))
        if r.reason:
            console.print(f"  [bold]{r.sync}[/] {r.status}: {r.reason}", highlight=False)
        if r.status == "held":
            console.print(f"  nothing was sent for {r.sync}; if this is expected, re-run with --approve")
    return exit_code(reports)


def status_table(rows: list[dict]) -> Table:
    table = Table(title="status")
    for col in ("sync", "held", "last status", "last success", "pending retries", "rejected"):
        table.add_column(col)
    table.add_column("match", no_wrap=True)  # two whole lines: the other columns wrap first
    for r in rows:
        table.add_row(r["sync"], str(r["held"]), r["last_status"] or "-", ago(r["last_success_at"]),
                      str(r["pending_retries"]), ", ".join(f"{k} x{v}" for k, v in sorted(r["rejected"].items())) or "-",
                      match_text(r.get("match")))
    return table


_PLATFORM_NAMES = {"meta_audience": "Meta", "google_customer_match": "Google"}


def match_text(match: dict | None) -> str:
    """A sync's match figures (``syncer.ledger.match_rates.latest_match``) in two lines, ours then the
    platform's, e.g. ``readiness 92% email / 61% phone / 58% both of 10,000`` and ``Meta: 9,812 of 10,000
    received, 31 invalid, ~9.6k-10k matched``; a line each keeps the status table narrow enough to read."""
    if not match:
        return "-"
    ready = match["readiness"]
    text = (f"readiness {_pct(ready['email_pct'])} email / {_pct(ready['phone_pct'])} phone / {_pct(ready['both_pct'])}"
            f" both of {ready['members']:,}")
    said = []
    upload = match.get("last_upload")
    if upload and upload["platform_received"] is not None:
        said.append(f"{upload['platform_received']:,} of {upload['sent']:,} received"
                    + (f", {upload['platform_invalid']:,} invalid" if upload["platform_invalid"] else ""))
    elif upload:
        said.append(f"{upload['accepted']:,} of {upload['sent']:,} accepted")
    if match.get("size_low") is not None:
        said.append(f"~{_short(match['size_low'])}" + (f"-{_short(match['size_high'])}" if match["size_high"] != match["size_low"] else "")
                    + " matched")
    job = match.get("job")
    if job:
        said.append(f"last job {match_rate_text(job['match_rate_range'])} matched")
    if said:
        text += f"\n{_PLATFORM_NAMES.get(match.get('platform', ''), match.get('platform', 'platform'))}: " + ", ".join(said)
    return text


def match_rate_text(name: str | None) -> str:
    """A Google match-rate range name as people read it: ``MATCH_RANGE_61_TO_70`` -> ``61-70%``."""
    from syncer.ledger.match_rates import parse_match_rate_range

    bounds = parse_match_rate_range(name)
    if bounds is None:
        return "not eligible" if name and name.endswith("NOT_ELIGIBLE") else "-"
    return f"<{bounds[1] + 1:g}%" if bounds[0] == 0 else f"{bounds[0]:g}-{bounds[1]:g}%"


def _pct(value: float | None) -> str:
    """A percentage in whole points (``--json`` keeps the decimals)."""
    return "-" if value is None else f"{value:.0f}%"


def _short(n: int) -> str:
    """9,812 -> 9.8k; 10,000 -> 10k; 2,500,000 -> 2.5M; under 1,000 as is."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return str(n)


def waiting_line(destination: str, not_before: float, reason: str) -> str:
    """A destination that asked us to wait: nothing is sent to it until then (``syncer.ledger.links``)."""
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(not_before))
    left = max(not_before - time.time(), 0)
    return f"destination {destination} is waiting until {until} ({left / 60:.0f} min left), as it asked: {reason}"


def latency_line(latency: dict) -> str:
    return (f"time to suppression, last 24 h ({latency['count']} removes): p50 {latency['p50']:.2f}s, "
            f"p95 {latency['p95']:.2f}s, p99 {latency['p99']:.2f}s, max {latency['max']:.2f}s")


def history_table(rows: list[dict]) -> Table:
    table = Table(title="history")
    for col in ("run", "sync", "started", "status", "members", "added", "removed", "rejected", "retried", "requests",
                "ready email/phone", "reason"):
        table.add_column(col)
    for r in rows:
        ready = (r.get("match") or {}).get("readiness")
        table.add_row(str(r["run_id"]), r["sync"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"])),
                      r["status"], str(r["members"]), str(r["added"]), str(r["removed"]), str(r["rejected"]),
                      str(r["retried"]), str(r["requests"]),
                      f"{_pct(ready['email_pct'])} / {_pct(ready['phone_pct'])}" if ready else "-", (r["reason"] or "")[:80])
    return table


def history_warehouse_lines(rows: list[dict]) -> list[str]:
    """One line per warehouse-mode sync run: what its plan cost in the warehouse.

    Example: ``run 7 buyers_sync warehouse (duckdb): 7 statements, 12,400 rows returned, 1,000,000 rows scanned``.
    """
    from syncer.ledger.warehouse_costs import WarehouseCosts

    return [f"run {r['run_id']} {r['sync']} warehouse ({r['warehouse']['engine']}): {WarehouseCosts.from_dict(r['warehouse']).summary()}"
            for r in rows if r.get("warehouse")]


def history_error_lines(rows: list[dict]) -> list[str]:
    """One plain line per sync run an error failed or cut short: class, fault, then the stored (scrubbed) detail.

    Example: ``run 7 buyers_sync failed: PermanentError (fault: platform): HTTP 400 code 100 fbtrace_id AbC``.
    """
    lines = []
    for r in rows:
        if r.get("error_class"):
            lines.append(f"run {r['run_id']} {r['sync']} {r['status']}: {r['error_class']} (fault: {r.get('error_fault') or '-'}):"
                         f" {r.get('error_detail') or 'no detail'}")
    return lines or ["no failed sync runs in this history"]


def jobs_table(rows: list[dict]) -> Table:
    table = Table(title="platform jobs")
    for col in ("sync", "job", "submitted", "status", "match rate", "readiness email/phone", "failure"):
        table.add_column(col)
    for r in rows:
        ready = r.get("readiness")  # the sync's, when the job finished
        table.add_row(r["sync"], r["job"][-48:], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])),
                      r["status"], match_rate_text(r["match_rate_range"]) if r["match_rate_range"] else "-",
                      f"{_pct(ready['email_pct'])} / {_pct(ready['phone_pct'])}" if ready else "-", r["failure_reason"] or "")
    return table


def ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = time.time() - ts
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
