"""Members the platform sees as one person: a remove never takes a member who stays with it.

Meta and Google remove every person any identifier of a remove row matches, and merge rows that share an
identifier into one person when they are added; Klaviyo keeps one profile per email, phone and external
id. So two of our members who share a phone are one person there, and removing the one who left removes
the one who stays, while the ledger still counts the stayer as held and no later run adds them back.

After the diff, ``retain_linked`` looks at every row the platform holds or is about to get (the held
rows, from the snapshot's identifier digests, and the plan's adds) and links rows that share a value of
one of the platform's ``match_keys``. A remove whose linked group holds a row of another member who stays
is dropped from the plan and the leaver is kept in the audience with a reason ("retained: shares phone
with a member who stays"); it is looked at again on every run, and leaves once nobody it is linked to
stays. A member whose identifiers changed is two rows: the old one (removed first, see
``syncer.delivery.apply``) and the new one (added after), so sharing a value only with itself never
holds a change back. The groups are stored in the ledger (``shared_links``) for the fast path, which
removes one member at a time and cannot see the whole audience.

Only shared values are brought back to Python: the grouping is a GROUP BY in DuckDB over a few 64-bit
digests per member (``syncer.planning.snapshot.LINK_KINDS``).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from syncer.ledger.store import Ledger
from syncer.planning.plan import SyncPlan
from syncer.planning.snapshot import LINK_KINDS, value_digests


def retain_linked(con: duckdb.DuckDBPyConnection, plan: SyncPlan, held_values: str, match_keys: Iterable[str],
                  ledger: Ledger, pending: dict[str, str]) -> None:
    """Drop from ``plan.removes`` every leaver linked to a member who stays, noting why in ``plan.retained``,
    and store the sync's linked groups in the ledger. ``held_values`` names the snapshot's digest view."""
    kinds = [kind for kind in LINK_KINDS if kind in set(match_keys)]
    if not kinds or not (plan.adds or plan.removes):
        return  # nothing held changes, so neither do the links
    leaving = _remove_keys(plan)
    _collect_rows(con, plan, held_values, kinds)
    try:
        rows = con.sql("""
            SELECT r.member_key, r.side, r.kind, r.h FROM _links_rows r
            SEMI JOIN (SELECT kind, h FROM _links_rows GROUP BY kind, h HAVING count(DISTINCT member_key) > 1) s
                USING (kind, h)""").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS _links_rows")
    groups = _Groups()
    for key, side, kind, digest in rows:
        groups.join((key, side), ("value", f"{kind}:{digest}"))
    retained = _retained(groups, rows, leaving)
    if retained:
        plan.removes = plan.removes.without(retained)
        plan.retained.update(retained)
        plan.retried -= sum(1 for key in retained if pending.get(key) == "remove")
        for reason in retained.values():
            plan.stats.setdefault("retained", {})[reason] = plan.stats.get("retained", {}).get(reason, 0) + 1
    ledger.replace_links(plan.sync, _links(groups, rows))


def _remove_keys(plan: SyncPlan) -> set[str]:
    keys: set[str] = set()
    for table in plan.removes.tables():
        keys.update(table.column(0).to_pylist())
    return keys


def _collect_rows(con: duckdb.DuckDBPyConnection, plan: SyncPlan, held_values: str, kinds: list[str]) -> None:
    """``_links_rows(member_key, side, kind, h)``: each value of ``kinds`` of every held row (side ``h``)
    and every row to add (side ``a``)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _links_rows (member_key VARCHAR, side VARCHAR, kind VARCHAR, h UBIGINT)")
    held = " UNION ALL ".join(f"SELECT member_key, 'h', '{k}', v_{k} FROM {held_values} WHERE v_{k} IS NOT NULL" for k in kinds)
    con.execute(f"INSERT INTO _links_rows {held}")
    for table in plan.adds.tables():
        con.register("_links_adds", table.select([0, 2]).rename_columns(["member_key", "identifiers"]))
        try:
            digests = f"SELECT member_key, {value_digests('identifiers')} FROM _links_adds"
            adds = " UNION ALL ".join(f"SELECT member_key, 'a', '{k}', v_{k} FROM d WHERE v_{k} IS NOT NULL" for k in kinds)
            con.execute(f"INSERT INTO _links_rows WITH d AS ({digests}) {adds}")
        finally:
            con.unregister("_links_adds")


class _Groups:
    """Union-find over rows (member_key, side) and the values that link them."""

    def __init__(self) -> None:
        self.parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(self, node: tuple[str, str]) -> tuple[str, str]:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: tuple[str, str], b: tuple[str, str]) -> None:
        self.parent[self.find(a)] = self.find(b)


def _retained(groups: _Groups, rows: list[tuple], leaving: set[str]) -> dict[str, str]:
    """member_key -> reason, for each leaver whose held row is linked to a row of another member who stays."""
    stayers: dict[tuple[str, str], set[str]] = {}  # group -> members with a row that stays
    direct: dict[str, set[str]] = {}  # value -> members with a row that stays and holds it
    kinds_of: dict[str, set[str]] = {}  # leaver -> kinds of its held row's shared values
    for key, side, kind, digest in rows:
        if side == "a" or key not in leaving:
            stayers.setdefault(groups.find((key, side)), set()).add(key)
            direct.setdefault(f"{kind}:{digest}", set()).add(key)
    retained: dict[str, str] = {}
    for key, side, kind, digest in rows:
        if side != "h" or key not in leaving or not stayers.get(groups.find((key, side)), set()) - {key}:
            continue
        kinds_of.setdefault(key, set()).add(kind)
        if direct.get(f"{kind}:{digest}", set()) - {key}:
            retained[key] = "shares"
    for key, kinds in kinds_of.items():
        named = " and ".join(sorted(kinds))
        retained[key] = (f"retained: shares {named} with a member who stays" if retained.get(key) == "shares"
                         else f"retained: linked by a shared {named} to a member who stays")
    return retained


def _links(groups: _Groups, rows: list[tuple]) -> dict[str, tuple[str, str]]:
    """member_key -> (group name, kinds it shares) for every member linked to another, the row to add
    (its identifiers after this plan) deciding a changed member's group."""
    members: dict[tuple[str, str], set[str]] = {}
    for key, side, _, _ in rows:
        members.setdefault(groups.find((key, side)), set()).add(key)
    names = {root: min(keys) for root, keys in members.items() if len(keys) > 1}
    links: dict[str, tuple[str, str]] = {}
    kinds: dict[str, set[str]] = {}
    for key, side, kind, _ in sorted(rows, key=lambda r: r[1] == "a"):  # adds last: they win
        name = names.get(groups.find((key, side)))
        if name is not None:
            kinds.setdefault(key, set()).add(kind)
            links[key] = (name, ",".join(sorted(kinds[key])))
    return links
