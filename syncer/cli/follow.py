"""`syncer follow`: one worker for conversions, events and expiries (``syncer.delivery.realtime.Follower``).

The same worker runs inside the Dagster sensor ``realtime_follow``; this command is its lower-latency
twin for a deployment that keeps one process running (a container, a systemd unit).
"""

from __future__ import annotations

import json
import time

import click

from syncer.cli.common import EXIT_OK, console, err, exit_on_sync_error, project_from
from syncer.cli.fast_path import _print_result, _source_failures
from syncer.errors import first_line


@click.command()
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C or SIGTERM).")
@click.option("--once", is_flag=True, help="One pass: read what is new, send it, and stop.")
@click.option("--release", "release", metavar="SYNC", multiple=True,
              help="Release the stream of SYNC a stream gate held (repeatable), then stop.")
@click.pass_context
def follow(ctx: click.Context, seconds: float | None, once: bool, release: tuple[str, ...]) -> None:
    """Follow conversions, events and expiries: suppress converters, and change audiences within a second of
    an event (segments with `events:`) or an `expires_at` passing."""
    project = project_from(ctx)
    if release:
        raise SystemExit(_release(ctx, project, release))
    config = project.config
    if config.events is None and config.conversions is None and not any(s.expires_at for s in project.segments.values()):
        err.print("[bold red]error:[/] nothing to follow: syncer.yml has no `events:` or `conversions:` section and no"
                  " segment names `expires_at`", highlight=False)
        raise SystemExit(2)
    import signal
    import threading

    from syncer.delivery.realtime import Follower

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + seconds if seconds else None
    changes, suppressed = [], []
    with exit_on_sync_error():
        worker = Follower(project)
    try:
        with exit_on_sync_error(), _source_failures(project, _source_failure):
            if once:
                suppressed, changes = worker.step()
            else:
                if not ctx.obj["json"]:
                    console.print(f"following {_sources(project)}; Ctrl-C to stop", highlight=False)
                worker.follow(until=lambda: stop.is_set() or (deadline is not None and time.monotonic() > deadline),
                              on_change=lambda c: (changes.append(c), None if ctx.obj["json"] else _print_change(c)),
                              on_suppression=lambda r: (suppressed.append(r), None if ctx.obj["json"] else _print_result(r)))
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()
    if ctx.obj["json"]:
        click.echo(json.dumps({"changes": [vars(c) for c in changes if c.added or c.removed or c.status != "ok"],
                               "suppressions": [{"conversion": r.conversion.conversion_id, "outcomes": r.outcomes}
                                                for r in suppressed if r.outcomes]}))
    elif once:
        for change in changes:
            _print_change(change)
        for result in suppressed:
            _print_result(result)


def _release(ctx: click.Context, project, syncs: tuple[str, ...]) -> int:
    from syncer.ledger.realtime import StreamBook
    from syncer.ledger.store import Ledger

    unknown = [s for s in syncs if s not in project.syncs]
    if unknown:
        err.print(f"[bold red]error:[/] unknown sync(s): {', '.join(unknown)}", highlight=False)
        return 2
    book = StreamBook(Ledger(project.ledger_url()))
    released = [s for s in syncs if book.release(s)]
    if ctx.obj["json"]:
        click.echo(json.dumps({"released": released}))
    else:
        for sync in syncs:
            console.print(f"{sync}: stream released" if sync in released else f"{sync}: its stream was not held", highlight=False)
    return EXIT_OK


def _source_failure(project, exc: Exception) -> str:
    """One line for a real-time source the database cannot read (``_source_failures`` prints it)."""
    tables = ", ".join(t for t in (project.config.events and project.config.events.table,
                                   project.config.conversions and project.config.conversions.table) if t)
    return (f"cannot read the real-time sources ({tables or 'the segments with expires_at'}): {first_line(exc)}; check the"
            " table and column names of `events:`/`conversions:` in syncer.yml and each segment's expires_at column")


def _sources(project) -> str:
    parts = []
    if project.config.events:
        parts.append(f"events in {project.config.events.table} every {project.config.events.poll_interval_ms} ms")
    if project.config.conversions:
        parts.append(f"conversions in {project.config.conversions.table}")
    expiring = sorted(n for n, s in project.segments.items() if s.expires_at)
    if expiring:
        parts.append(f"expiries of {', '.join(expiring)}")
    return "; ".join(parts)


def _print_change(change) -> None:
    if change.status != "ok":
        console.print(f"{change.sync}: {change.status}" + (f" ({change.reason})" if change.reason else ""), highlight=False)
        return
    for op, keys in (("added", change.added), ("removed", change.removed)):
        for key in keys:
            seconds = change.seconds.get(key)
            console.print(f"{change.sync}: {op} member {key}" + (f" in {seconds:.2f}s" if seconds is not None else ""),
                          highlight=False)

