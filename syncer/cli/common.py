"""What every `syncer` command shares: the consoles, the exit codes, and how failures end a command.

Kept apart from ``syncer.cli.main`` so the command modules (``reports``, ``fast_path``,
``demo``) can use it without importing the click group, which would import them back.
Like the rest of the CLI it never imports dagster, and loads project code only when called.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

console = Console(stderr=False)
if not console.is_terminal:  # pipes and CI logs: never truncate a table to 80 columns
    console = Console(stderr=False, width=160)
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_HELD = 0, 1, 2, 3


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


def engine_from(ctx: click.Context):
    from syncer.delivery.engine import Engine

    return Engine(project_from(ctx))


def exit_code(reports) -> int:
    statuses = {r.status for r in reports}
    return EXIT_FAILED if statuses & {"failed", "partial"} else EXIT_HELD if "held" in statuses else EXIT_OK


class exit_on_sync_error:
    """Turn a SyncError into one operator message and exit 1 (no traceback for known failures)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from syncer.errors import SyncError

        if exc is not None and isinstance(exc, SyncError):
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            sys.exit(EXIT_FAILED)
        return False
