"""The `syncer` command line. The only code that prints. It never imports dagster.

Exit codes: 0 done, 1 a sync failed or was only partly applied, 2 invalid project or usage,
3 a gate held a sync (nothing was sent for it; re-run with --approve to let it through).

This module holds the click group and the plan/apply commands that change audiences. The other
commands live by what they do and are registered on the group below: ``reports`` (status,
history, jobs), ``fast_path`` (suppress, convert) and ``demo`` (sandbox, sample-data, demo);
shared helpers are in ``common`` and the tables in ``output``. Project code is
imported inside each command, so `syncer --help` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syncer.cli.common import (  # noqa: F401  (console, err and the exit codes stay importable from here)
    EXIT_FAILED,
    EXIT_HELD,
    EXIT_INVALID,
    EXIT_OK,
    console,
    echo_to_dagster,
    engine_from,
    err,
    exit_code,
    exit_on_sync_error,
    print_problems,
    project_from,
    wait_option,
)
from syncer.cli.demo import demo, sample_data, sandbox
from syncer.cli.fast_path import convert, suppress
from syncer.cli.follow import follow
from syncer.cli.ledger import ledger
from syncer.cli.output import plan_table, print_summary
from syncer.cli.reconcile import reconcile
from syncer.cli.reports import history, jobs, status
from syncer.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "--project", "project_dir", default=lambda: os.environ.get("SYNCER_PROJECT", "."),
              type=click.Path(file_okay=False), help="Project folder (default: $SYNCER_PROJECT or .)")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.pass_context
def cli(ctx: click.Context, project_dir: str, as_json: bool) -> None:
    """Keep warehouse segments mirrored into ad, email and SMS audiences."""
    ctx.obj = {"project_dir": project_dir, "json": as_json}


@cli.command()
@click.option("--online", is_flag=True, help="Also call each destination with its credentials (one cheap read each).")
@click.pass_context
def validate(ctx: click.Context, online: bool) -> None:
    """Check every config file, and each segment's SQL against the warehouse (no rows read); report all
    problems with file and line (exit 2 if any). Unset environment variables are warnings (exit 0)."""
    from syncer.project.probe import probe_segments
    from syncer.project.problems import Problem
    from syncer.project.project import inspect_project

    project, problems, warnings = inspect_project(ctx.obj["project_dir"])
    if project is not None:  # the valid files of a project are probed even when others are broken
        probe = probe_segments(project)
        problems = sorted([*problems, *probe.problems], key=Problem._sort_key)
        warnings = [*warnings, *probe.warnings]
    checks = _check_destinations(project) if online and project is not None and not problems else {}
    failed = {name: message for name, message in checks.items() if message}
    valid = project is not None and not problems and not failed
    if ctx.obj["json"]:
        listed = {"segments": sorted(project.segments), "destinations": sorted(project.destinations),
                  "syncs": sorted(project.syncs)} if valid or failed else {}
        online_report = {"online": {name: message or "ok" for name, message in checks.items()}} if checks else {}
        _report_validation(ctx, problems, warnings, valid=valid, **listed, **online_report)
    else:
        _report_validation(ctx, problems, warnings)
        if not problems:
            console.print(f"[green]valid[/]: {len(project.segments)} segments, {len(project.destinations)} destinations, "
                          f"{len(project.syncs)} syncs" + (f" ({len(warnings)} warning(s) above)" if warnings else ""))
        for name, message in checks.items():
            console.print(f"  destination {name}: " + (f"[red]{message}[/]" if message else "[green]reachable, credentials accepted[/]"))
    if not valid:
        sys.exit(EXIT_INVALID)


def _report_validation(ctx: click.Context, problems, warnings, *, valid: bool | None = None, **extra) -> None:
    """Problems and warnings as ``file:line: field: message`` lines on stderr, or one JSON document on stdout."""
    if ctx.obj["json"]:
        click.echo(json.dumps({"valid": not problems if valid is None else valid, "problems": _as_dicts(problems),
                               "warnings": _as_dicts(warnings), **extra}))
        return
    if problems:
        print_problems(problems, ctx.obj["project_dir"])
    if warnings:
        click.echo(f"{len(warnings)} warning(s) (validate still passes; fix them where syncs run):", err=True)
        for warning in warnings:
            click.echo(f"  {warning}", err=True)


def _as_dicts(problems) -> list[dict]:
    return [{"file": p.file, "line": p.line, "field": p.field, "message": p.message, "text": str(p)} for p in problems]


def _check_destinations(project) -> dict[str, str | None]:
    """destination -> None when its ``check()`` passed, else what to fix."""
    from destinations.registry import build_destination
    from syncer.errors import SyncError

    results: dict[str, str | None] = {}
    for name, config in sorted(project.destinations.items()):
        try:
            destination = build_destination(name, config)
            try:
                destination.check()
            finally:
                destination.close()
        except SyncError as exc:
            results[name] = exc.message
        else:
            results[name] = None
    return results


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="schemas", show_default=True)
def schema(out: str) -> None:
    """Write JSON Schemas of the config files (for editor completion)."""
    from syncer.project.project import write_json_schemas

    for path in write_json_schemas(Path(out)):
        console.print(str(path))


@cli.command()
@click.option("--sync", "syncs", multiple=True, help="Only these syncs (repeatable).")
@click.option("--out", type=click.Path(), default=None, help="Folder for the plan (default: .syncer/plans in the project).")
@click.option("--explain", is_flag=True, help="Print the SQL each sync's plan would send to the warehouse, in order, and"
              " run none of it (--json: {sync: [statements]}).")
@click.pass_context
def plan(ctx: click.Context, syncs: tuple[str, ...], out: str | None, explain: bool) -> None:
    """Compute and save the exact adds and removes, without sending anything."""
    from syncer.planning.gates import check_gates
    from syncer.planning.plan import save_plan, summarise

    if explain:
        _explain(ctx, syncs)
    engine = engine_from(ctx)
    with exit_on_sync_error():
        the_plan = engine.build_plan(syncs or None)
    with exit_on_sync_error():
        folder = save_plan(the_plan, Path(out) if out else engine.project.state_dir / "plans")
    gates = {p.sync: [g for g in check_gates(p, engine.project.gates_for(p.sync)) if not g.passed] for p in the_plan.syncs}
    if ctx.obj["json"]:
        click.echo(json.dumps({"plan": str(folder), "plan_hash": the_plan.content_hash, "syncs": summarise(the_plan.syncs),
                               "samples": {p.sync: p.sample() for p in the_plan.syncs},
                               "gates": {s: [g.reason for g in gs] for s, gs in gates.items()},
                               "not_planned": the_plan.failed}))
        sys.exit(EXIT_FAILED if the_plan.failed else EXIT_OK)
    console.print(plan_table(the_plan.syncs))
    for sync, reason in the_plan.failed.items():
        console.print(f"  [bold red]{sync} not planned[/]: {reason}", highlight=False)
    for p in the_plan.syncs:
        sample = p.sample()
        if sample["add"] or sample["remove"]:
            console.print(f"  {p.sync}: add e.g. {', '.join(sample['add']) or '-'}; remove e.g. {', '.join(sample['remove']) or '-'}")
        for g in gates[p.sync]:
            console.print(f"  [yellow]{p.sync} would be held[/]: {g.gate}: {g.reason}")
    from rich.markup import escape

    console.print(f"saved plan [bold]{the_plan.plan_id}[/] to {escape(str(folder))}\napply it with: "
                  f"{escape(apply_command(engine.project.root, folder))}", highlight=False, soft_wrap=True)
    if the_plan.failed:
        sys.exit(EXIT_FAILED)


def _explain(ctx: click.Context, syncs: tuple[str, ...]) -> None:
    """``plan --explain``: each sync's statements, as its plan would send them; exits 0."""
    from syncer.ledger.store import Ledger
    from syncer.planning.warehouse_diff import explain

    project = project_from(ctx)
    with exit_on_sync_error():
        statements = explain(project, list(syncs) or sorted(project.syncs), Ledger(project.ledger_url()))
    if ctx.obj["json"]:
        click.echo(json.dumps(statements))
    else:
        for sync, listed in statements.items():
            click.echo(f"-- sync {sync} ({project.config.diff_mode} mode): {len(listed)} statement(s)")
            for statement in listed:
                click.echo(statement if statement.startswith("--") else f"{statement};")
            click.echo()
    sys.exit(EXIT_OK)


def apply_command(root: Path, folder: Path) -> str:
    """The `syncer apply` line that works pasted anywhere: the plan's absolute path, and ``-p`` unless the
    project is the current folder (where `syncer` finds it without one)."""
    import shlex

    here = Path.cwd().resolve()
    project = "" if root.resolve() == here and not os.environ.get("SYNCER_PROJECT") else f"-p {shlex.quote(str(root))} "
    return f"syncer {project}apply {shlex.quote(str(Path(folder).resolve()))}"


@cli.command()
@click.argument("plan_path", type=click.Path(exists=True))
@click.option("--approve", is_flag=True, help="Let the sync through even if a gate trips.")
@wait_option
@click.pass_context
def apply(ctx: click.Context, plan_path: str, approve: bool, lease_wait: float) -> None:
    """Execute exactly a saved plan; refuse it if the ledger or config changed since."""
    from syncer.planning.plan import load_plan

    engine = engine_from(ctx, lease_wait=lease_wait)
    with exit_on_sync_error():
        the_plan = load_plan(Path(plan_path), spill_dir=engine.spill_dir)
        reports = _apply_with_progress(engine, the_plan, approve=approve, command="apply", quiet=ctx.obj["json"])
    _finish(ctx, reports, engine, "apply")


@cli.command()
@click.option("--sync", "syncs", multiple=True, help="Only these syncs (repeatable).")
@click.option("--approve", is_flag=True, help="Let the sync through even if a gate trips.")
@wait_option
@click.pass_context
def run(ctx: click.Context, syncs: tuple[str, ...], approve: bool, lease_wait: float) -> None:
    """Plan, check the gates, and apply."""
    engine = engine_from(ctx, lease_wait=lease_wait)
    with exit_on_sync_error():
        the_plan = engine.build_plan(syncs or None)
        reports = _apply_with_progress(engine, the_plan, approve=approve, command="run", quiet=ctx.obj["json"])
    _finish(ctx, reports, engine, "run")


def _apply_with_progress(engine, the_plan, *, approve: bool, command: str, quiet: bool):
    total = sum(len(p.adds) + len(p.removes) for p in the_plan.syncs)
    if quiet or total < 20_000 or not console.is_terminal:
        return engine.apply_plan(the_plan, approve=approve, command=command)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sending", total=total)
        return engine.apply_plan(the_plan, approve=approve, command=command,
                                 on_batch=lambda sync, op, n: progress.update(task, advance=n, description=f"{sync}: {op}"))


def _finish(ctx: click.Context, reports, engine, command: str) -> None:
    echo_to_dagster(engine, reports, command)
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": [r.as_dict() for r in reports]}, default=str))
        sys.exit(exit_code(reports))
    sys.exit(print_summary(reports))


for _command in (status, history, jobs, reconcile, suppress, follow, convert, sandbox, sample_data, demo, ledger):
    cli.add_command(_command)
cli.add_command(serve)


class _WithoutPandas:
    """An import hook that declines pandas. pyarrow imports pandas at its first conversion (``pa.array``,
    in Cython and again in C++, ``InitPandasStaticData`` in arrow/python/helpers.cc) only to ask whether
    a value is a pandas object, and the syncer never hands it one: declining it saves a `syncer run`
    33 MB of memory and 0.25 s. Nothing the CLI runs needs pandas (dagster and the platform SDKs do not
    import it); pyarrow takes the ImportError as "no pandas installed"."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("the syncer command line does not load pandas")
        return None


def main() -> None:
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _WithoutPandas)  # type: ignore[arg-type]
    # the last net for commands that open the ledger or write state themselves (status, history, suppress...)
    with exit_on_sync_error():
        cli(prog_name="syncer")


if __name__ == "__main__":
    main()
