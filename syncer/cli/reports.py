"""Read-only `syncer` commands: `status`, `history` and `jobs` report what the ledger knows.

None of them sends anything to an audience (`jobs` only polls platforms for job status), so they
are safe to run at any time, alongside Dagster runs and the fast path.
"""

from __future__ import annotations

import json
import time

import click

from syncer.cli.common import console, exit_on_sync_error, project_from
from syncer.cli.output import history_error_lines, history_table, jobs_table, latency_line, status_table


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """What each audience holds, the last run, and current rejections."""
    from syncer.ledger.store import Ledger

    project = project_from(ctx)
    ledger = Ledger(project.ledger_url())
    rows = [_status_row(ledger, name) for name in sorted(project.syncs)]
    from syncer.delivery.fast_path import percentiles

    latency = percentiles(ledger.suppression_latencies(since=time.time() - 86400))
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": rows, "time_to_suppression_24h": latency}))
        return
    console.print(status_table(rows))
    if latency:
        console.print(latency_line(latency))


def _status_row(ledger, name: str) -> dict:
    last = ledger.history(name, limit=1)
    last_success = ledger.last_success(name)
    return {
        "sync": name, "held": ledger.held_count(name),
        "last_status": last[0]["status"] if last else None,
        "last_run_at": last[0]["started_at"] if last else None,
        "last_success_at": last_success,
        "pending_retries": len(ledger.pending_keys(name)),
        "rejected": ledger.rejection_summary(name),
    }


@click.command()
@click.option("--sync", default=None, help="Only this sync.")
@click.option("--limit", default=20, show_default=True)
@click.option("--detail", is_flag=True,
              help="Under the table, a line per failed or partly applied sync run: the error's class, whose fault, and"
                   " the platform's own words (scrubbed of PII and secrets).")
@click.pass_context
def history(ctx: click.Context, sync: str | None, limit: int, detail: bool) -> None:
    """Past runs per sync, newest first (--json always includes error_class, error_fault and error_detail)."""
    from syncer.ledger.store import Ledger

    project = project_from(ctx)
    rows = Ledger(project.ledger_url()).history(sync, limit)
    if ctx.obj["json"]:
        click.echo(json.dumps({"runs": rows}, default=str))
        return
    console.print(history_table(rows))
    if detail:
        for line in history_error_lines(rows):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


@click.command()
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def jobs(ctx: click.Context, limit: int) -> None:
    """Jobs platforms run after a sync (Google Customer Match): status and match-rate range, polled now."""
    from syncer.delivery.engine import Engine

    with Engine(project_from(ctx)) as engine:
        with exit_on_sync_error():
            engine.poll_jobs()
        rows = engine.ledger.jobs(limit)
    if ctx.obj["json"]:
        click.echo(json.dumps({"jobs": rows}, default=str))
        return
    console.print(jobs_table(rows))
