"""`syncer reconcile [SYNC...]`: read audiences back from their platforms, compare with the ledger, repair.

What it compares and repairs, and what each status means, is in ``syncer.delivery.reconcile``. Exit codes:
0 every audience in sync, repaired or skipped; 1 a read or repair failed, was cut short, or the platform
asked us to wait; 3 a gate held the removal of extras (``--approve`` lets it through); 4 drift remains that
reconcile does not repair (refused rows, a size beyond the platform's approximation, or
``--dry-run``). Output holds counts and member keys, never identifiers.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from syncer.cli.common import console, engine_from, exit_on_sync_error, wait_option

_COLOURS = {"in_sync": "green", "repaired": "green", "skipped": "dim", "drift": "yellow", "held": "yellow",
            "deferred": "yellow", "partial": "red", "failed": "red"}
_COLUMNS = ("sync", "read", "status", "held", "on platform", "missing", "extra", "changed", "re-added", "removed")
_LEFT = {"extras_kept": "extras kept (extras: keep)", "extras_not_removed": "extras not removed",
         "extras_held": "extras held by a gate", "pending_retry": "missing with a retry pending (the next sync's)",
         "suppressed": "missing but suppressed (the fast path's)", "readd_retry": "re-adds to retry",
         "remove_retry": "removes to retry", "dry_run": "repairs not sent (--dry-run)"}


@click.command()
@click.argument("syncs", nargs=-1)
@click.option("--sync", "sync_options", multiple=True, help="Only these syncs (repeatable), as `run --sync` takes them.")
@click.option("--approve", is_flag=True, help="Let the removal of extras through even if a gate trips.")
@click.option("--dry-run", is_flag=True, help="Read and compare only; send nothing.")
@wait_option
@click.pass_context
def reconcile(ctx: click.Context, syncs: tuple[str, ...], sync_options: tuple[str, ...], approve: bool, dry_run: bool,
              lease_wait: float) -> None:
    """Read each audience back from its platform, compare it with the ledger, and repair what drifted.

    Members missing on the platform are added again; members the platform holds that the sync never sent
    stay, unless the sync says `extras: remove` (within its gates). Platforms that only report a size are
    compared within their approximation. Default: every sync.
    """
    from syncer.delivery.reconcile import EXIT_STATUSES, Reconciler

    with engine_from(ctx, lease_wait=lease_wait) as engine, exit_on_sync_error():
        reports = Reconciler(engine, approve=approve, dry_run=dry_run).run((syncs + sync_options) or None)
    code = max((EXIT_STATUSES.get(r.status, 0) for r in reports), default=0)
    if ctx.obj["json"]:
        click.echo(json.dumps({"syncs": [r.figures() for r in reports]}, default=str))
        sys.exit(code)
    console.print(reconcile_table([r.figures() for r in reports]))
    for line in notes(reports):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)


def reconcile_table(rows: list[dict], title: str = "reconcile") -> Table:
    """One row per sync from ``ReconcileReport.figures()`` (or the ``details`` a ledger row keeps)."""
    table = Table(title=title)
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col in ("sync", "read", "status", "on platform") else "right")
    for r in rows:
        listed = r["method"] == "listed"
        table.add_row(r["sync"], r["method"], f"[{_COLOURS.get(r['status'], 'white')}]{r['status']}[/]", str(r["held"]),
                      on_platform(r), *(str(r[k]) if listed else "-" for k in ("missing", "extra", "changed", "readded", "removed")))
    return table


def on_platform(row: dict) -> str:
    """What the platform showed: a member count, a size range, or nothing read."""
    if row["method"] == "listed":
        return str(row["listed"])
    platform = (row.get("size") or {}).get("platform")
    if row["method"] == "size":
        return f"{platform['low']}-{platform['high']} people" if platform else "no size yet"
    return "-"


def notes(reports) -> list[str]:
    """A line per sync that has something to say: why skipped, held or failed; what was left; sample keys."""
    lines = []
    for r in reports:
        said = []
        if r.reason:
            said.append(r.reason)
        if r.size and r.size.get("verdict") not in (None, "ok"):
            said.append(f"size: {r.size['verdict']}")
        if r.left:
            said.append(", ".join(f"{_LEFT.get(why, why)}: {n}" for why, n in sorted(r.left.items())))
        for figure, keys in sorted(r.samples.items()):
            said.append(f"{figure} e.g. member {', '.join(keys)}")
        if said:
            lines.append(f"  {r.sync} ({r.status}): " + "; ".join(said))
    if any(r.changed for r in reports):
        lines.append("  changed members were edited on the platform (an email changed by hand, say); they were sent again"
                     " as the warehouse has them: an edit that should last belongs in the warehouse")
    if any(r.status == "held" for r in reports):
        lines.append("  nothing was removed where a gate held; if the removal is expected, re-run with --approve")
    return lines
