"""The fast path's `syncer` commands: `suppress` acts on conversions, `convert` records one.

Apart from the plan/apply commands because they work per person and in seconds: a conversion is
read, the member is removed from the audiences their rule names, and the timing is shown.
"""

from __future__ import annotations

import json
import sys
import time

import click

from syncer.cli.common import EXIT_FAILED, console, err, exit_on_sync_error, project_from
from syncer.errors import first_line


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
        with exit_on_sync_error(), _source_failures(project):
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


class _source_failures:
    """A source the database cannot read (no such table, refused login) ends the command with one line naming
    the table and the database, and what to do (``describe``; default: the conversions source's): its
    traceback helps nobody."""

    def __init__(self, project, describe=None) -> None:
        self.project = project
        self.describe = describe or _conversions_failure

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        import sqlalchemy as sa
        from rich.markup import escape

        if not isinstance(exc, sa.exc.SQLAlchemyError):
            return False
        err.print(f"[bold red]error:[/] {escape(self.describe(self.project, exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED)


def _conversions_failure(project, exc: Exception) -> str:
    """One line for a conversions source that failed: which table in which database (never its password), why."""
    import sqlalchemy as sa

    source = project.config.conversions
    url = sa.make_url(project.conversions_url())
    where = f"database {url.database} ({url.render_as_string(hide_password=True)})"
    setting = "conversions.url" if source.url else "warehouse_url (conversions.url is not set)"
    if _table_missing(url, source.table):
        return (f"the conversions table '{source.table}' does not exist in the {where}: create it there (your own systems"
                f" write conversions to it; for a try-out, `syncer convert MEMBER_KEY` creates it), or point"
                f" conversions.table / {setting} in syncer.yml at the table that holds them")
    reason = first_line(exc)
    return (f"cannot read the conversions table '{source.table}' in the {where}: {reason}; check conversions in"
            " syncer.yml and that this database accepts the syncer's login")


def _table_missing(url, table: str) -> bool:
    import sqlalchemy as sa

    schema, _, name = table.rpartition(".")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).has_table(name, schema=schema or None)
    except sa.exc.SQLAlchemyError:
        return False  # the database itself cannot be read: the caller says why
    finally:
        engine.dispose()


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
