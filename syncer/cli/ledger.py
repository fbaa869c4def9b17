"""`syncer ledger …`: the ledger's own identity, which guards texts against a new or replaced ledger."""

from __future__ import annotations

import click

from syncer.cli.common import console, engine_from, exit_on_sync_error


@click.group()
def ledger() -> None:
    """The project's ledger: which one texts may be sent from."""


@ledger.command()
@click.pass_context
def adopt(ctx: click.Context) -> None:
    """Send texts from the current ledger from now on, though this project sent from another before.

    A new ledger does not know who was texted: members it does not hold are texted (again) by the next
    run. Restore the old ledger from a backup instead where you can."""
    with engine_from(ctx) as engine, exit_on_sync_error():
        identity = engine.adopt_ledger()
    console.print(f"texts are sent from ledger {identity[:8]} ({engine.ledger.url}) from now on", highlight=False)
