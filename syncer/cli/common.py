"""What every `syncer` command shares: the consoles, the exit codes, and how failures end a command.

Kept apart from ``syncer.cli.main`` so the command modules (``reports``, ``fast_path``,
``demo``) can use it without importing the click group, which would import them back.
Like the rest of the CLI it never imports dagster, and loads project code only when called.
"""

from __future__ import annotations

import errno
import os
import sys

import click
from rich.console import Console
from rich.markup import escape

console = Console(stderr=False)
if not console.is_terminal:  # pipes and CI logs: never truncate a table to 80 columns
    console = Console(stderr=False, width=160)
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_HELD, EXIT_BUSY = 0, 1, 2, 3, 5  # 5: another run holds a sync (its lease)


def project_from(ctx: click.Context):
    """The project named by ``-p``; on an invalid one, print every problem and exit 2."""
    from syncer.project.project import InvalidProjectError, load_project

    try:
        return load_project(ctx.obj["project_dir"])
    except InvalidProjectError as exc:
        print_problems(exc.problems, ctx.obj["project_dir"])
        sys.exit(EXIT_INVALID)


def print_problems(problems, root) -> None:
    # plain lines, never wrapped: editors and CI annotate from "file:line: message"
    click.echo(f"{len(problems)} problem(s) in project {root}:", err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)


def engine_from(ctx: click.Context, *, lease_wait: float = 0.0):
    """The project's engine; a ledger it cannot open (read-only, full disk, damaged) ends the command with exit 1.
    ``lease_wait``: seconds to wait for a sync another process applies before skipping it (``--wait``)."""
    from syncer.delivery.engine import Engine

    project = project_from(ctx)
    with exit_on_sync_error():
        return Engine(project, lease_wait=lease_wait)


def wait_option(command):
    """``--wait SECONDS`` of the commands that send: wait for a sync another process applies, then go on."""
    return click.option("--wait", "lease_wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
                        metavar="SECONDS", help="Wait up to SECONDS for a sync another process is applying, then"
                        " apply it; after that it is skipped as busy (exit code 5).")(command)


def exit_code(reports) -> int:
    statuses = {r.status for r in reports}
    return (EXIT_FAILED if statuses & {"failed", "partial"} else EXIT_HELD if "held" in statuses else
            EXIT_BUSY if "busy" in statuses else EXIT_OK)


# what to do when the disk refuses a file of the project's state folder (a snapshot, a spill file, a plan)
_DISK_ADVICE = {
    errno.ENOSPC: "free space on that disk (or move the project to one with room), then run again",
    errno.EDQUOT: "free space within this user's disk quota, then run again",
    errno.EFBIG: "the file outgrew this process's file size limit (ulimit -f): raise it, then run again",
    errno.EACCES: "make it and its folder writable by this user, then run again",
    errno.EPERM: "make it and its folder writable by this user, then run again",
    errno.EROFS: "its file system is mounted read-only: move the project's state folder to a writable one",
    errno.EIO: "the disk reported an I/O error: check it, then run again",
}


def disk_fault_message(exc: BaseException) -> str | None:
    """One line naming the file and what to do, for an OSError about a file that is the disk's or the
    permissions' fault; None for any other error (a socket's EACCES names no file, and is not ours to explain)."""
    if not isinstance(exc, OSError) or exc.errno not in _DISK_ADVICE or not (exc.filename or exc.filename2):
        return None
    return f"cannot use {exc.filename2 or exc.filename} ({exc.strerror or os.strerror(exc.errno)}): {_DISK_ADVICE[exc.errno]}"


class exit_on_sync_error:
    """Turn a SyncError, or a disk or permission fault on a file we keep, into one operator message and exit 1:
    no traceback for known failures. Unknown errors keep their traceback (a bug to report)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from syncer.errors import SyncError

        message = exc.message if isinstance(exc, SyncError) else disk_fault_message(exc) if exc is not None else None
        if message is None:
            return False
        # soft_wrap: a path is never broken across lines; escape: a path's [brackets] are not markup
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED)


def echo_to_dagster(engine, reports, command: str) -> None:
    """With ``$DAGSTER_HOME`` set, the run's syncs appear in the Dagster UI too (one history); the ledger has
    them already, so a Dagster instance that cannot be written is a warning, never a failed run."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    from syncer.errors import first_line
    from syncer.reporting.dagster_events import report_cli_run

    try:
        sizes = {r.sync: engine.ledger.held_count(r.sync) for r in reports}
        report_cli_run(engine.project, reports, command=command, audience_sizes=sizes)
    except Exception as exc:  # noqa: BLE001 - any fault of the instance: the run itself is done and recorded
        err.print(f"[yellow]warning[/]: could not report this run to Dagster (DAGSTER_HOME={os.environ['DAGSTER_HOME']}):"
                  f" {type(exc).__name__}: {first_line(exc)}", highlight=False)
