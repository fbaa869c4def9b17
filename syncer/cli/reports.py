"""Read-only `syncer` commands: `status`, `history` and `jobs` report what the ledger knows.

None of them sends anything to an audience (`jobs` only polls platforms for job status), so they
are safe to run at any time, alongside Dagster runs and the fast path. Reconciles (`syncer reconcile`)
are runs too: `status` shows each sync's last one apart from its last sync run, `history` lists them
with the others (each row's `command` in --json).
"""

from __future__ import annotations

import json
import time

import click

from syncer.cli.common import console, exit_on_sync_error, project_from
from syncer.cli.output import (
    ago,
    history_error_lines,
    history_table,
    history_warehouse_lines,
    jobs_table,
    latency_line,
    status_table,
    waiting_line,
)


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """What each audience holds, the last run, and current rejections."""
    from syncer.ledger.store import Ledger

    project = project_from(ctx)
    ledger = Ledger(project.ledger_url())
    rows = [_status_row(ledger, name) | {"match": _match(ledger, project, name)} for name in sorted(project.syncs)]
    from syncer.ledger.suppressions import percentiles

    latency = percentiles(ledger.suppression_latencies(since=time.time() - 86400))
    waits = {name: {"not_before": until, "reason": reason} for name, (until, reason) in ledger.waits().items()
             if name in project.destinations}
    stream = _stream_figures(ledger, project)
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": rows, "time_to_suppression_24h": latency, "destination_waits": waits,
                               "real_time": stream}))
        return
    console.print(status_table(rows))
    for name, wait in sorted(waits.items()):
        console.print(waiting_line(name, wait["not_before"], wait["reason"]), highlight=False)
    reconciled = [row["last_reconcile"] for row in rows if row["last_reconcile"]]
    if reconciled:
        from syncer.cli.reconcile import reconcile_table

        console.print(reconcile_table(reconciled, title="last reconcile"))
    if latency:
        console.print(latency_line(latency))
    for line in _stream_lines(stream):
        console.print(line, highlight=False)


def _stream_figures(ledger, project) -> dict:
    """The real-time path (``syncer.ledger.realtime``): event-to-acknowledgement latency per sync over 24 h,
    held streams with their reason, and members waiting for a refresh."""
    from syncer.ledger.realtime import StreamBook

    book = StreamBook(ledger)
    since = time.time() - 86400
    latency = {name: book.latency(since=since, sync=name) for name in sorted(project.syncs)}
    return {"event_to_ack_24h": {name: figures for name, figures in latency.items() if figures},
            "held_streams": {sync: {"reason": reason, "since": at} for sync, (reason, at) in book.holds().items()},
            "pending_members": len(book.pending())}


def _stream_lines(stream: dict) -> list[str]:
    lines = [f"real time {sync}: {f['count']:,} changes in 24 h; event to acknowledgement p50 {f['p50']:.2f}s,"
             f" p95 {f['p95']:.2f}s, p99 {f['p99']:.2f}s, max {f['max']:.2f}s" for sync, f in stream["event_to_ack_24h"].items()]
    lines += [f"real time {sync}: HELD since {ago(h['since'])}: {h['reason']}" for sync, h in sorted(stream["held_streams"].items())]
    if stream["pending_members"]:
        lines.append(f"real time: {stream['pending_members']:,} members waiting for a refresh (`syncer follow` retries them)")
    return lines


def _status_row(ledger, name: str) -> dict:
    from syncer.delivery.reconcile_records import last_reconcile, last_sync_run

    last = last_sync_run(ledger, name)
    last_success = ledger.last_success(name)
    return {
        "sync": name, "held": ledger.held_count(name),
        "last_status": last["status"] if last else None,
        "last_run_at": last["started_at"] if last else None,
        "last_success_at": last_success,
        "pending_retries": len(ledger.pending_keys(name)),
        "rejected": ledger.rejection_summary(name),
        "last_reconcile": _reconcile_figures(last_reconcile(ledger, name)),
    }


def _match(ledger, project, name: str) -> dict | None:
    """The sync's latest match figures (``syncer.ledger.match_rates``), named by its platform."""
    from syncer.ledger.match_rates import latest_match

    figures = latest_match(ledger, name)
    if figures is not None:
        figures["platform"] = project.destinations[project.syncs[name].destination].type
    return figures


def _reconcile_figures(row: dict | None) -> dict | None:
    """The figures a reconcile kept in its ``details``, with when it ran."""
    figures = (row or {}).get("details", {}).get("reconcile")
    return {**figures, "at": row["started_at"]} if figures else None


@click.command()
@click.option("--sync", default=None, help="Only this sync.")
@click.option("--limit", default=20, show_default=True)
@click.option("--detail", is_flag=True,
              help="Under the table, a line per failed or partly applied sync run: the error's class, whose fault, and"
                   " the platform's own words (scrubbed of PII and secrets).")
@click.pass_context
def history(ctx: click.Context, sync: str | None, limit: int, detail: bool) -> None:
    """Past runs per sync, newest first (--json always includes error_class, error_fault and error_detail)."""
    from syncer.delivery.reconcile_records import commands_of
    from syncer.ledger.store import Ledger

    project = project_from(ctx)
    ledger = Ledger(project.ledger_url())
    rows = ledger.history(sync, limit)
    from syncer.ledger.match_rates import run_matches

    matches = run_matches(ledger, [r["id"] for r in rows])
    rows = [{**r, "match": matches.get(r["id"])} for r in rows]
    from syncer.ledger.warehouse_costs import warehouse_costs_of

    costs = warehouse_costs_of(ledger, [r["id"] for r in rows])  # warehouse-mode runs: what planning cost there
    rows = [{**r, "warehouse": costs[r["id"]].as_dict() if r["id"] in costs else None} for r in rows]
    if ctx.obj["json"]:
        commands = commands_of(ledger, [r["run_id"] for r in rows])
        click.echo(json.dumps({"runs": [{**r, "command": commands.get(r["run_id"])} for r in rows]}, default=str))
        return
    console.print(history_table(rows))
    for line in history_warehouse_lines(rows):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if detail:
        for line in history_error_lines(rows):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


@click.command()
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def jobs(ctx: click.Context, limit: int) -> None:
    """Jobs platforms run after a sync (Google Customer Match): status and match-rate range, polled now.

    A job still open that the platform did not answer this time (unreachable, refused, or a wait it asked
    for) shows ``no answer`` with what is known of why, apart from one it answered is still pending."""
    from syncer.delivery.engine import Engine

    with Engine(project_from(ctx)) as engine:
        polled_at = time.time()
        with exit_on_sync_error():
            engine.poll_jobs()
        rows = engine.ledger.jobs(limit)
        waits = engine.ledger.waits()
        from syncer.ledger.match_rates import job_matches

        matches = job_matches(engine.ledger, rows)
        rows = [{**row, **matches.get(row["job"], {})} for row in rows]
        rows = [{**row, **_answer(row, polled_at, waits, engine.project.destinations)} for row in rows]
    if ctx.obj["json"]:
        click.echo(json.dumps({"jobs": rows}, default=str))
        return
    shown = [{**row, "status": row["status"] if row["answered"] else "no answer" + (
        f" (last said {row['status']})" if row["last_answer_at"] else " (never answered)")} for row in rows]
    console.print(jobs_table(shown))
    for row in rows:
        if not row["answered"]:
            console.print(f"  {row['sync']}: job {row['job'][-48:]}: {row['not_answered_because']}", highlight=False,
                          markup=False, soft_wrap=True)


def _answer(row: dict, polled_at: float, waits: dict, destinations: dict) -> dict:
    """Whether the platform answered for this job on this poll (or earlier, when it is final), and if not, why.

    The ledger moves a job's ``updated_at`` only when the platform answers about it, so an open job not
    touched since the poll began got no answer."""
    if row["final"] or row["updated_at"] >= polled_at:
        return {"answered": True, "last_answer_at": row["updated_at"], "not_answered_because": None}
    if row["destination"] not in destinations:
        why = f"destination '{row['destination']}' is no longer in the project, so nobody asks about it"
    elif row["destination"] in waits:
        not_before, reason = waits[row["destination"]]
        why = f"not asked: the platform asked us to wait until {time.strftime('%H:%M:%S', time.localtime(not_before))} ({reason[:120]})"
    elif row.get("poll_error"):
        why = f"the platform did not answer: {row['poll_error']}; run `syncer jobs` again later"
    else:
        why = "the platform did not answer (unreachable or refused; `syncer validate --online` checks its credentials); run `syncer jobs` again later"
    last = row["updated_at"] if row["status"] != "SUBMITTED" else None
    return {"answered": False, "last_answer_at": last, "not_answered_because": why}
