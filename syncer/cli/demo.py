"""Commands for trying the syncer without real platforms: `sandbox`, `sample-data` and `demo`.

They write sample warehouses and run local emulators, never touch a real audience, and are kept
out of ``syncer.cli.main`` so the commands an operator runs in production read on their own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from syncer.cli.common import console, echo_to_dagster, project_from
from syncer.cli.output import print_summary

_DEMO_STEPS = (("2. first run: every member is added", None),
               ("3. second run: nothing changed, so nothing is sent", None),
               ("4. after `sample-data --mutate 1%`: only the difference is sent", 1.0))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8510, show_default=True)
@click.option("--state", "state_file", default=None, help="Where membership is kept across restarts (default: .syncer/sandbox.json in the project).")
@click.pass_context
def sandbox(ctx: click.Context, host: str, port: int, state_file: str | None) -> None:
    """Run the local platform emulators until Ctrl-C, with every audience the project's syncs name."""
    import signal
    import threading

    from syncer.demo.setup import start_sandbox
    from syncer.project.project import InvalidProjectError, load_project

    try:
        project = load_project(ctx.obj["project_dir"])
    except InvalidProjectError:
        project = None
    state = Path(state_file) if state_file else (project.state_dir if project else Path(".syncer")) / "sandbox.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    sb = start_sandbox(project, port, host=host, state_file=state)
    console.print(f"{sb.banner()}\nstate in {state}; Ctrl-C to stop", highlight=False, markup=False, soft_wrap=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(30):
            sb.save()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()


@click.command("sample-data")
@click.option("--customers", default=100_000, show_default=True)
@click.option("--mutate", "mutate_pct", default=None, help="Instead of generating, change about this share (e.g. 1%) of customers.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", default=None, help="DuckDB file (default: the project's warehouse).")
@click.pass_context
def sample_data(ctx: click.Context, customers: int, mutate_pct: str | None, seed: int, out: str | None) -> None:
    """Write a realistic, messy sample warehouse (DuckDB), or mutate it."""
    from syncer.demo import sample_data as sd

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
    url = project_from(ctx).warehouse_url()
    if not url.startswith("duckdb:///"):
        raise click.UsageError("sample-data writes DuckDB files; give --out or point warehouse_url at duckdb:///FILE")
    return url.removeprefix("duckdb:///")


DEMO_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "demo"
"""The demo project `syncer demo` (and `make demo`) uses when the current folder holds none."""


@click.command()
@click.option("--customers", default=20_000, show_default=True)
@click.option("--port", default=8510, show_default=True)
@click.pass_context
def demo(ctx: click.Context, customers: int, port: int) -> None:
    """Fresh sample warehouse + sandbox: sync, sync again (nothing changes), mutate 1%, sync the difference."""
    from syncer.demo.setup import SANDBOX_SECRETS, fresh_demo_project, start_sandbox

    project_dir = Path(ctx.obj["project_dir"])
    if not (project_dir / "syncer.yml").exists():
        project_dir = DEMO_PROJECT
    ctx.obj["json"] = False
    project, counts = fresh_demo_project(project_dir, customers=customers)
    console.print("[bold]1. sample warehouse[/]: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    sandbox = start_sandbox(project, port)
    console.print(f"   sandbox emulators at {sandbox.url}")
    try:
        codes = [_demo_step(project, sandbox, title, mutate) for title, mutate in _DEMO_STEPS]
        _demo_fast_path(project)
    finally:
        sandbox.stop()
    exports = " ".join(f"{k}={v}" for k, v in SANDBOX_SECRETS.items())
    console.print(f"\nledger: {project.ledger_url()}\nnext: export {exports}\n"
                  f"      syncer -p {project_dir} status | history | jobs\n"
                  f"      syncer -p {project_dir} sandbox   (in another terminal), then: syncer -p {project_dir} run", highlight=False)
    sys.exit(max(codes))


def _demo_step(project, sandbox, title: str, mutate: float | None) -> int:
    """Optionally mutate the warehouse, run every sync once, print the summary; return its exit code."""
    from syncer.delivery.engine import Engine
    from syncer.demo.setup import mutate_warehouse

    if mutate:
        changed = mutate_warehouse(project, mutate)
        console.print("   mutated: " + ", ".join(f"{k} {v:,}" for k, v in changed.items()))
    before = _sandbox_requests(sandbox)
    with Engine(project) as engine:
        reports = engine.run()
        echo_to_dagster(engine, reports, "demo")
    console.print(f"[bold]{title}[/] ({_sandbox_requests(sandbox) - before} requests reached the emulators)")
    return print_summary(reports)


def _sandbox_requests(sandbox) -> int:
    return sandbox.meta.request_count + sum(e.request_count for e in sandbox.emulators.values())


def _demo_fast_path(project) -> None:
    """A cart abandoner buys: show them suppressed from every audience their rule names."""
    from syncer.delivery.conversions import record_conversion
    from syncer.delivery.fast_path import Suppressor
    from syncer.ledger.store import Ledger

    if project.config.conversions is None:
        return
    held = Ledger(project.ledger_url()).held_fingerprints("cart_abandoners_meta")[0] if "cart_abandoners_meta" in project.syncs else []
    if not held:
        return
    member = sorted(held)[0]
    record_conversion(project, member, "purchase")
    with Suppressor(project) as suppressor:
        results = suppressor.step()
    console.print(f"[bold]5. member {member} buys: the fast path suppresses them[/]")
    for result in results:
        for sync, outcome in sorted(result.outcomes.items()):
            timing = f" {result.seconds[sync]:.3f}s after the purchase" if sync in result.seconds else ""
            console.print(f"   {sync}: {outcome}{timing}")
