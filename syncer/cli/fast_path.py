"""The fast path's `syncer` commands: `suppress` acts on conversions, `convert` records one.

Apart from the plan/apply commands because they work per person and in seconds: a conversion is
read, the member is removed from the audiences their rule names, and the timing is shown.
"""

from __future__ import annotations

import json
import time

import click

from syncer.cli.common import console, exit_on_sync_error, project_from


@click.command()
@click.option("--follow", is_flag=True, help="Keep polling for conversions until Ctrl-C (lower latency than the Dagster sensor).")
@click.option("--seconds", type=float, default=None, help="With --follow: stop after this many seconds.")
@click.pass_context
def suppress(ctx: click.Context, follow: bool, seconds: float | None) -> None:
    """Suppress people who converted: remove them from every audience of the segments their rule names."""
    import signal
    import threading

    from syncer.delivery.fast_path import Suppressor

    project = project_from(ctx)
    with exit_on_sync_error():
        suppressor = Suppressor(project)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + seconds if seconds else None
    handled = []

    def show(result) -> None:
        handled.append(result)
        if not ctx.obj["json"]:
            _print_result(result)

    try:
        with exit_on_sync_error():
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


def _print_result(result) -> None:
    if not result.outcomes:
        return
    done = ", ".join(f"{s}: {o}" + (f" in {result.seconds[s]:.2f}s" if s in result.seconds else "")
                     for s, o in sorted(result.outcomes.items()))
    console.print(f"conversion {result.conversion.conversion_id} ({result.conversion.type}) member "
                  f"{result.conversion.member_key}: {done}", highlight=False)


@click.command()
@click.argument("member_key")
@click.option("--type", "conversion_type", default="purchase", show_default=True)
@click.pass_context
def convert(ctx: click.Context, member_key: str, conversion_type: str) -> None:
    """Record a conversion in the project's conversions table (for demos and tests of the fast path)."""
    from syncer.delivery.conversions import record_conversion

    project = project_from(ctx)
    with exit_on_sync_error():
        conversion_id = record_conversion(project, member_key, conversion_type)
    console.print(f"recorded conversion {conversion_id}: {member_key} {conversion_type}")
