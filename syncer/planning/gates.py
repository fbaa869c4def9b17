"""Safety gates between plan and apply.

A gate protects an audience from a broken upstream: an empty table, a bad join that drops half the
members, a segment too small to target. A tripped gate holds the sync: nothing is sent, the reason is
recorded, and a person can approve the run to let it through.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.planning.plan import SyncPlan
from syncer.project.config import GateConfig


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reason: str


def check_gates(plan: SyncPlan, gates: GateConfig) -> list[GateResult]:
    """Evaluate every gate for one sync plan; a plan with nothing to send passes them all."""
    removes = len(plan.removes)
    held = plan.held_before
    results: list[GateResult] = []
    if gates.zero_row_guard:
        tripped = plan.members == 0 and held > 0
        results.append(GateResult(
            "zero_row_guard", not tripped,
            f"the segment returned no sendable members but the audience holds {held}; an upstream table may be empty"
            if tripped else "segment has members or audience is empty"))
    if gates.max_removal_pct is not None and held > 0:
        share = 100.0 * removes / held
        tripped = share > gates.max_removal_pct
        results.append(GateResult(
            "max_removal_pct", not tripped,
            f"{removes} removals are {share:.1f}% of the {held} members held, above the limit of {gates.max_removal_pct:g}%"
            if tripped else f"removals {share:.1f}% <= {gates.max_removal_pct:g}%"))
    if gates.max_removals is not None:
        tripped = removes > gates.max_removals
        results.append(GateResult(
            "max_removals", not tripped,
            f"{removes} removals exceed the limit of {gates.max_removals}" if tripped
            else f"removals {removes} <= {gates.max_removals}"))
    if gates.min_audience_size:
        tripped = plan.members < gates.min_audience_size and (plan.adds or plan.removes)
        results.append(GateResult(
            "min_audience_size", not tripped,
            f"the audience would hold {plan.members} members, below the minimum of {gates.min_audience_size}"
            if tripped else f"audience size {plan.members} >= {gates.min_audience_size}"))
    return results


def held_reason(results: list[GateResult]) -> str | None:
    """One sentence naming every tripped gate, or None when all passed."""
    tripped = [f"{r.gate}: {r.reason}" for r in results if not r.passed]
    return "; ".join(tripped) if tripped else None
