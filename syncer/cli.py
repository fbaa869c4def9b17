"""The `syncer` command line. The only module that prints. It never imports dagster.

Exit codes: 0 done, 1 a sync failed or was only partly applied, 2 invalid project or usage,
3 a gate held a sync (nothing was sent for it; re-run with --approve to let it through).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=False)
if not console.is_terminal:  # pipes and CI logs: never truncate a table to 80 columns
    console = Console(stderr=False, width=160)
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_HELD = 0, 1, 2, 3


def _project(ctx: click.Context):
    from syncer.project import InvalidProjectError, load_project

    try:
        return load_project(ctx.obj["project_dir"])
    except InvalidProjectError as exc:
        _print_problems(exc.problems, ctx.obj["project_dir"])
        sys.exit(EXIT_INVALID)


def _print_problems(problems, root) -> None:
    # plain lines, never wrapped: editors and CI annotate from "file:line: message"
    click.echo(f"{len(problems)} problem(s) in project {root}:", err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)


def _engine(ctx: click.Context):
    from syncer.engine import Engine

    return Engine(_project(ctx))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "--project", "project_dir", default=lambda: os.environ.get("SYNCER_PROJECT", "."),
              type=click.Path(file_okay=False), help="Project folder (default: $SYNCER_PROJECT or .)")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.pass_context
def cli(ctx: click.Context, project_dir: str, as_json: bool) -> None:
    """Keep warehouse segments mirrored into ad, email and SMS audiences."""
    ctx.obj = {"project_dir": project_dir, "json": as_json}


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check every config file; report all problems with file and line (exit 2 if any)."""
    project = _project(ctx)
    if ctx.obj["json"]:
        click.echo(json.dumps({"valid": True, "segments": sorted(project.segments), "destinations": sorted(project.destinations),
                               "syncs": sorted(project.syncs)}))
    else:
        console.print(f"[green]valid[/]: {len(project.segments)} segments, {len(project.destinations)} destinations, "
                      f"{len(project.syncs)} syncs")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="schemas", show_default=True)
def schema(out: str) -> None:
    """Write JSON Schemas of the config files (for editor completion)."""
    from syncer.project import write_json_schemas

    for path in write_json_schemas(Path(out)):
        console.print(str(path))


def _plan_table(sync_plans) -> Table:
    from syncer.plan import summarise

    table = Table(title="plan")
    for col in ("sync", "members", "held", "add", "remove", "rejected", "retried", "hash"):
        table.add_column(col, justify="left" if col in ("sync", "hash") else "right")
    for row in summarise(sync_plans):
        table.add_row(*[str(row[c]) for c in ("sync", "members", "held", "add", "remove", "rejected", "retried", "hash")])
    return table


@cli.command()
@click.option("--sync", "syncs", multiple=True, help="Only these syncs (repeatable).")
@click.option("--out", type=click.Path(), default=None, help="Folder for the plan (default: .syncer/plans in the project).")
@click.pass_context
def plan(ctx: click.Context, syncs: tuple[str, ...], out: str | None) -> None:
    """Compute and save the exact adds and removes, without sending anything."""
    from syncer.gates import check_gates
    from syncer.plan import save_plan, summarise

    engine = _engine(ctx)
    with _errors():
        the_plan = engine.build_plan(syncs or None)
    folder = save_plan(the_plan, Path(out) if out else engine.project.state_dir / "plans")
    gates = {p.sync: [g for g in check_gates(p, engine.project.gates_for(p.sync)) if not g.passed] for p in the_plan.syncs}
    if ctx.obj["json"]:
        click.echo(json.dumps({"plan": str(folder), "plan_hash": the_plan.content_hash, "syncs": summarise(the_plan.syncs),
                               "samples": {p.sync: p.sample() for p in the_plan.syncs},
                               "gates": {s: [g.reason for g in gs] for s, gs in gates.items()}}))
        return
    console.print(_plan_table(the_plan.syncs))
    for p in the_plan.syncs:
        sample = p.sample()
        if sample["add"] or sample["remove"]:
            console.print(f"  {p.sync}: add e.g. {', '.join(sample['add']) or '-'}; remove e.g. {', '.join(sample['remove']) or '-'}")
        for g in gates[p.sync]:
            console.print(f"  [yellow]{p.sync} would be held[/]: {g.gate}: {g.reason}")
    console.print(f"saved plan [bold]{the_plan.plan_id}[/] to {folder}\napply it with: syncer apply {folder}")


@cli.command()
@click.argument("plan_path", type=click.Path(exists=True))
@click.option("--approve", is_flag=True, help="Let the sync through even if a gate trips.")
@click.pass_context
def apply(ctx: click.Context, plan_path: str, approve: bool) -> None:
    """Execute exactly a saved plan; refuse it if the ledger or config changed since."""
    from syncer.plan import load_plan

    engine = _engine(ctx)
    with _errors():
        the_plan = load_plan(Path(plan_path))
        reports = _apply_with_progress(engine, the_plan, approve=approve, command="apply", quiet=ctx.obj["json"])
    _finish(ctx, reports)


@cli.command()
@click.option("--sync", "syncs", multiple=True, help="Only these syncs (repeatable).")
@click.option("--approve", is_flag=True, help="Let the sync through even if a gate trips.")
@click.pass_context
def run(ctx: click.Context, syncs: tuple[str, ...], approve: bool) -> None:
    """Plan, check the gates, and apply."""
    engine = _engine(ctx)
    with _errors():
        the_plan = engine.build_plan(syncs or None)
        reports = _apply_with_progress(engine, the_plan, approve=approve, command="run", quiet=ctx.obj["json"])
    _finish(ctx, reports)


def _apply_with_progress(engine, the_plan, *, approve: bool, command: str, quiet: bool):
    total = sum(len(p.adds) + len(p.removes) for p in the_plan.syncs)
    if quiet or total < 20_000 or not console.is_terminal:
        return engine.apply_plan(the_plan, approve=approve, command=command)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sending", total=total)
        return engine.apply_plan(the_plan, approve=approve, command=command,
                                 on_batch=lambda sync, op, n: progress.update(task, advance=n, description=f"{sync}: {op}"))


def _finish(ctx: click.Context, reports) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": [r.as_dict() for r in reports]}, default=str))
        sys.exit(_exit_code(reports))
    sys.exit(_summary(reports))


def _exit_code(reports) -> int:
    statuses = {r.status for r in reports}
    return EXIT_FAILED if statuses & {"failed", "partial"} else EXIT_HELD if "held" in statuses else EXIT_OK


def _summary(reports) -> int:
    """Print the per-sync table and notes; return the exit code."""
    table = Table(title="sync summary")
    for col in ("sync", "status", "members", "added", "removed", "rejected", "retried", "requests", "seconds"):
        table.add_column(col, justify="left" if col in ("sync", "status") else "right")
    colours = {"ok": "green", "held": "yellow", "failed": "red", "partial": "yellow"}
    for r in reports:
        table.add_row(r.sync, f"[{colours.get(r.status, 'white')}]{r.status}[/]", str(r.members), str(r.added),
                      str(r.removed), str(r.rejected), str(r.retried), str(r.requests), f"{r.duration + r.plan_seconds:.2f}")
    console.print(table)
    for r in reports:
        if r.reasons:
            console.print(f"  {r.sync} rejected: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.reasons.items())))
        if r.deferred_reasons:
            console.print(f"  {r.sync} left for the next run: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.deferred_reasons.items())))
        if r.reason:
            console.print(f"  [bold]{r.sync}[/] {r.status}: {r.reason}", highlight=False)
        if r.status == "held":
            console.print(f"  nothing was sent for {r.sync}; if this is expected, re-run with --approve")
    return _exit_code(reports)


class _errors:
    """Turn a SyncError into one operator message and exit 1 (no traceback for known failures)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from syncer.errors import SyncError

        if exc is not None and isinstance(exc, SyncError):
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            sys.exit(EXIT_FAILED)
        return False


@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """What each audience holds, the last run, and current rejections."""
    from syncer.ledger import Ledger

    project = _project(ctx)
    ledger = Ledger(project.ledger_url())
    rows = []
    for name in sorted(project.syncs):
        last = ledger.history(name, limit=1)
        last_success = ledger.last_success(name)
        rows.append({
            "sync": name, "held": ledger.held_count(name),
            "last_status": last[0]["status"] if last else None,
            "last_run_at": last[0]["started_at"] if last else None,
            "last_success_at": last_success,
            "pending_retries": len(ledger.pending_keys(name)),
            "rejected": ledger.rejection_summary(name),
        })
    from syncer.suppress import percentiles

    latency = percentiles(ledger.suppression_latencies(since=time.time() - 86400))
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": rows, "time_to_suppression_24h": latency}))
        return
    table = Table(title="status")
    for col in ("sync", "held", "last status", "last success", "pending retries", "rejected"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["sync"], str(r["held"]), r["last_status"] or "-", _ago(r["last_success_at"]),
                      str(r["pending_retries"]), ", ".join(f"{k} x{v}" for k, v in sorted(r["rejected"].items())) or "-")
    console.print(table)
    if latency:
        console.print(f"time to suppression, last 24 h ({latency['count']} removes): p50 {latency['p50']:.2f}s, "
                      f"p95 {latency['p95']:.2f}s, p99 {latency['p99']:.2f}s, max {latency['max']:.2f}s")


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = time.time() - ts
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


@cli.command()
@click.option("--sync", default=None, help="Only this sync.")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def history(ctx: click.Context, sync: str | None, limit: int) -> None:
    """Past runs per sync, newest first."""
    from syncer.ledger import Ledger

    project = _project(ctx)
    rows = Ledger(project.ledger_url()).history(sync, limit)
    if ctx.obj["json"]:
        click.echo(json.dumps({"runs": rows}, default=str))
        return
    table = Table(title="history")
    for col in ("run", "sync", "started", "status", "members", "added", "removed", "rejected", "retried", "requests", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["run_id"]), r["sync"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"])),
                      r["status"], str(r["members"]), str(r["added"]), str(r["removed"]), str(r["rejected"]),
                      str(r["retried"]), str(r["requests"]), (r["reason"] or "")[:80])
    console.print(table)


@cli.command()
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def jobs(ctx: click.Context, limit: int) -> None:
    """Jobs platforms run after a sync (Google Customer Match): status and match-rate range, polled now."""
    from syncer.engine import Engine

    engine = Engine(_project(ctx))
    try:
        with _errors():
            engine.poll_jobs()
        rows = engine.ledger.jobs(limit)
    finally:
        engine.close()
    if ctx.obj["json"]:
        click.echo(json.dumps({"jobs": rows}, default=str))
        return
    table = Table(title="platform jobs")
    for col in ("sync", "job", "submitted", "status", "match rate", "failure"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["sync"], r["job"][-48:], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])),
                      r["status"], r["match_rate_range"] or "-", r["failure_reason"] or "")
    console.print(table)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8510, show_default=True)
@click.option("--state", "state_file", default=None, help="Where membership is kept across restarts (default: .syncer/sandbox.json in the project).")
@click.pass_context
def sandbox(ctx: click.Context, host: str, port: int, state_file: str | None) -> None:
    """Run the local platform emulators until Ctrl-C, with every audience the project's syncs name."""
    import signal
    import threading

    from syncer.demo import start_sandbox
    from syncer.project import InvalidProjectError, load_project

    try:
        project = load_project(ctx.obj["project_dir"])
    except InvalidProjectError:
        project = None
    state = Path(state_file) if state_file else (project.state_dir if project else Path(".syncer")) / "sandbox.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    sb = start_sandbox(project, port, host=host, state_file=state)
    console.print(f"sandbox serving at {sb.url} (Meta Graph API); state in {state}; Ctrl-C to stop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(30):
            sb.save()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()


@cli.command()
@click.option("--follow", is_flag=True, help="Keep polling for conversions until Ctrl-C (lower latency than the Dagster sensor).")
@click.option("--seconds", type=float, default=None, help="With --follow: stop after this many seconds.")
@click.pass_context
def suppress(ctx: click.Context, follow: bool, seconds: float | None) -> None:
    """Suppress people who converted: remove them from every audience of the segments their rule names."""
    import signal
    import threading

    from syncer.suppress import Suppressor

    project = _project(ctx)
    with _errors():
        suppressor = Suppressor(project)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + seconds if seconds else None
    handled = []

    def show(result) -> None:
        handled.append(result)
        if not ctx.obj["json"] and result.outcomes:
            done = ", ".join(f"{s}: {o}" + (f" in {result.seconds[s]:.2f}s" if s in result.seconds else "")
                             for s, o in sorted(result.outcomes.items()))
            console.print(f"conversion {result.conversion.conversion_id} ({result.conversion.type}) member "
                          f"{result.conversion.member_key}: {done}", highlight=False)

    try:
        with _errors():
            if follow:
                console.print(f"following {project.config.conversions.table} every "
                              f"{project.config.conversions.poll_interval_ms} ms; Ctrl-C to stop")
                suppressor.follow(until=lambda: stop.is_set() or (deadline is not None and time.monotonic() > deadline),
                                  on_result=show)
            else:
                for result in suppressor.step():
                    show(result)
    except KeyboardInterrupt:
        pass
    finally:
        suppressor.close()
    if ctx.obj["json"]:
        click.echo(json.dumps({"handled": [{"conversion": r.conversion.conversion_id, "member_key": r.conversion.member_key,
                                            "outcomes": r.outcomes, "seconds": r.seconds} for r in handled]}))


@cli.command()
@click.argument("member_key")
@click.option("--type", "conversion_type", default="purchase", show_default=True)
@click.pass_context
def convert(ctx: click.Context, member_key: str, conversion_type: str) -> None:
    """Record a conversion in the project's conversions table (for demos and tests of the fast path)."""
    from syncer.conversions import record_conversion

    project = _project(ctx)
    with _errors():
        conversion_id = record_conversion(project, member_key, conversion_type)
    console.print(f"recorded conversion {conversion_id}: {member_key} {conversion_type}")


@cli.command("sample-data")
@click.option("--customers", default=100_000, show_default=True)
@click.option("--mutate", "mutate_pct", default=None, help="Instead of generating, change about this share (e.g. 1%) of customers.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", default=None, help="DuckDB file (default: the project's warehouse).")
@click.pass_context
def sample_data(ctx: click.Context, customers: int, mutate_pct: str | None, seed: int, out: str | None) -> None:
    """Write a realistic, messy sample warehouse (DuckDB), or mutate it."""
    from syncer import sample_data as sd

    path = out or _warehouse_file(ctx)
    started = time.perf_counter()
    if mutate_pct is not None:
        counts = sd.mutate(path, float(mutate_pct.rstrip("%")), seed=seed)
    else:
        counts = sd.generate(path, customers, seed=seed)
    if ctx.obj["json"]:
        click.echo(json.dumps({"path": str(path), "counts": counts}))
    else:
        console.print(f"{'mutated' if mutate_pct else 'wrote'} {path} in {time.perf_counter() - started:.1f}s: "
                      + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def _warehouse_file(ctx: click.Context) -> str:
    url = _project(ctx).warehouse_url()
    if not url.startswith("duckdb:///"):
        raise click.UsageError("sample-data writes DuckDB files; give --out or point warehouse_url at duckdb:///FILE")
    return url.removeprefix("duckdb:///")


@cli.command()
@click.option("--customers", default=20_000, show_default=True)
@click.option("--port", default=8510, show_default=True)
@click.pass_context
def demo(ctx: click.Context, customers: int, port: int) -> None:
    """Fresh sample warehouse + sandbox: sync, sync again (nothing changes), mutate 1%, sync the difference."""
    from syncer.demo import fresh_demo_project, mutate_warehouse, start_sandbox
    from syncer.engine import Engine

    project_dir = Path(ctx.obj["project_dir"])
    if not (project_dir / "syncer.yml").exists():
        project_dir = Path(__file__).resolve().parent.parent / "examples" / "demo"
    ctx.obj["json"] = False
    project, counts = fresh_demo_project(project_dir, customers=customers)
    console.print(f"[bold]1. sample warehouse[/]: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    sandbox = start_sandbox(project, port)
    console.print(f"   sandbox emulators at {sandbox.url}")
    codes = []
    try:
        steps = [("2. first run: every member is added", None),
                 ("3. second run: nothing changed, so nothing is sent", None),
                 ("4. after `sample-data --mutate 1%`: only the difference is sent", 1.0)]
        for title, mutate in steps:
            if mutate:
                changed = mutate_warehouse(project, mutate)
                console.print("   mutated: " + ", ".join(f"{k} {v:,}" for k, v in changed.items()))
            before = _sandbox_requests(sandbox)
            engine = Engine(project)
            try:
                reports = engine.run()
            finally:
                engine.close()
            console.print(f"[bold]{title}[/] ({_sandbox_requests(sandbox) - before} requests reached the emulators)")
            codes.append(_summary(reports))
        _demo_fast_path(project)
    finally:
        sandbox.stop()
    from syncer.demo import SANDBOX_SECRETS

    exports = " ".join(f"{k}={v}" for k, v in SANDBOX_SECRETS.items())
    console.print(f"\nledger: {project.ledger_url()}\nnext: export {exports}\n"
                  f"      syncer -p {project_dir} status | history | jobs\n"
                  f"      syncer -p {project_dir} sandbox   (in another terminal), then: syncer -p {project_dir} run", highlight=False)
    sys.exit(max(codes))


def _sandbox_requests(sandbox) -> int:
    return sandbox.meta.request_count + sum(e.request_count for e in sandbox.emulators.values())


def _demo_fast_path(project) -> None:
    """A cart abandoner buys: show them suppressed from every audience their rule names."""
    from syncer.conversions import record_conversion
    from syncer.ledger import Ledger
    from syncer.suppress import Suppressor

    if project.config.conversions is None:
        return
    held = Ledger(project.ledger_url()).held_fingerprints("cart_abandoners_meta")[0] if "cart_abandoners_meta" in project.syncs else []
    if not held:
        return
    member = sorted(held)[0]
    record_conversion(project, member, "purchase")
    suppressor = Suppressor(project)
    try:
        results = suppressor.step()
    finally:
        suppressor.close()
    console.print(f"[bold]5. member {member} buys: the fast path suppresses them[/]")
    for result in results:
        for sync, outcome in sorted(result.outcomes.items()):
            timing = f" {result.seconds[sync]:.3f}s after the purchase" if sync in result.seconds else ""
            console.print(f"   {sync}: {outcome}{timing}")


def main() -> None:
    cli(prog_name="syncer")


if __name__ == "__main__":
    main()
