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
holds a change back; when the old row is linked to another member who stays, the member is kept as it
was and its new values wait (the platform holds it merged with that member under the old values, and the
ledger must keep saying so, or a later remove of either would take both). The groups are stored in the
ledger (``shared_links``) for the fast path, which removes one member at a time and cannot see the whole
audience.

Only the corner of the audience this plan touches is looked at: starting from the values of the rows it
adds and removes, DuckDB follows shared values hop by hop over a few 64-bit digests per member
(``syncer.planning.snapshot.LINK_KINDS``), and only values held by two members or more come back to
Python. Links elsewhere cannot have changed, so the stored ones stand; a churn run costs what its churn
costs.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncer.ledger.store import Ledger
from syncer.planning.plan import PlanRows, SyncPlan
from syncer.planning.snapshot import LINK_KINDS, value_digests

MAX_HOPS = 32  # links followed from a changed row; a longer chain of shared values is cut there


def retain_linked(con: duckdb.DuckDBPyConnection, plan: SyncPlan, held_values: str, match_keys: Iterable[str],
                  ledger: Ledger, pending: dict[str, str]) -> None:
    """Drop from ``plan.removes`` every leaver linked to a member who stays, noting why in ``plan.retained``,
    and bring the sync's stored links up to date. ``held_values`` names the snapshot's digest view."""
    kinds = [kind for kind in LINK_KINDS if kind in set(match_keys)]
    if not kinds or not (plan.adds or plan.removes):
        return  # nothing held changes, so neither do the links
    leaving = _remove_keys(plan)
    stored = ledger.linked_members(plan.sync)
    try:
        _touched_rows(con, plan, held_values, kinds, leaving)
        stale = _found_among(con, stored)  # links stored before whose group this plan may change
        # "held by two members or more" as min < max, not count(DISTINCT): a distinct count cannot spill to
        # disk, and an initial sync of 10M groups 20M values under the memory_limit
        rows = con.sql("""
            SELECT r.member_key, r.side, r.kind, r.h FROM _links_found r
            SEMI JOIN (SELECT kind, h FROM _links_found GROUP BY kind, h HAVING min(member_key) < max(member_key)) s
                USING (kind, h)""").fetchall()
    finally:
        for table in ("_links_found", "_links_adds", "_links_values", "_links_leaving", "_links_hop", "_links_keys"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("DROP VIEW IF EXISTS _links_held")
    groups = _Groups()
    for key, side, kind, digest in rows:
        groups.join((key, side), ("value", f"{kind}:{digest}"))
    retained = _retained(groups, rows, leaving)
    # a changed member whose old row stays is kept as it is: the platform holds it under the old values, merged
    # with the member it shares them with, and the ledger must go on saying so; its new values wait
    withheld = _keys_among(plan.adds, retained.keys()) if retained else set()
    if withheld:
        plan.adds = plan.adds.without(withheld)
    if retained:
        plan.removes = plan.removes.without(retained)
        plan.retained.update(retained)
        plan.retried -= sum(1 for key in retained if pending.get(key) == "remove")
        for reason in retained.values():
            plan.stats.setdefault("retained", {})[reason] = plan.stats.get("retained", {}).get(reason, 0) + 1
    ledger.update_links(plan.sync, stale | (leaving & stored), _links(rows, leaving - set(retained), withheld))


def _remove_keys(plan: SyncPlan) -> set[str]:
    keys: set[str] = set()
    for table in plan.removes.tables():
        keys.update(table.column(0).to_pylist())
    return keys


def _keys_among(rows: PlanRows, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` that have a row in ``rows``."""
    wanted = pa.array(sorted(keys), pa.string())
    found: set[str] = set()
    for table in rows.tables():
        found.update(table.column(0).filter(pc.is_in(table.column(0), value_set=wanted)).to_pylist())
    return found


def _touched_rows(con: duckdb.DuckDBPyConnection, plan: SyncPlan, held_values: str, kinds: list[str],
                  leaving: set[str]) -> None:
    """Leave in ``_links_found(member_key, side, kind, h)`` every value of every row (held: side ``h``, to add:
    side ``a``) linked, through any chain of shared values, to a row this plan adds or removes. Each hop
    joins the held digests with the values reached so far, so a churn run costs what its churn costs, not
    a grouping of every value the audience holds."""
    con.execute("CREATE OR REPLACE TEMP VIEW _links_held AS " + " UNION ALL ".join(
        f"SELECT member_key, 'h' AS side, '{k}' AS kind, v_{k} AS h FROM {held_values} WHERE v_{k} IS NOT NULL" for k in kinds))
    _collect_adds(con, plan, kinds)
    con.register("_links_leaving_arrow", pa.table({"member_key": pa.array(sorted(leaving), pa.string())}))
    con.execute("CREATE OR REPLACE TEMP TABLE _links_leaving AS SELECT * FROM _links_leaving_arrow")
    con.unregister("_links_leaving_arrow")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _links_found AS
        SELECT * FROM _links_adds
        UNION ALL SELECT h.* FROM _links_held h SEMI JOIN _links_leaving USING (member_key)""")
    if not plan.held_before:
        return  # an initial sync: nothing held to reach, the adds are all there is
    con.execute("CREATE OR REPLACE TEMP TABLE _links_values AS SELECT DISTINCT kind, h FROM _links_found")
    frontier = con.sql("SELECT count(*) FROM _links_values").fetchall()[0][0]
    for _ in range(MAX_HOPS):
        if not frontier:
            break
        # held members holding a value reached, not reached before (one scan; usually none: no second)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _links_keys AS
            SELECT DISTINCT member_key FROM _links_held SEMI JOIN _links_values USING (kind, h)
            EXCEPT SELECT member_key FROM _links_found WHERE side = 'h'""")
        if not con.sql("SELECT count(*) FROM _links_keys").fetchall()[0][0]:
            break
        # every value of those members: the next hop's frontier
        con.execute("CREATE OR REPLACE TEMP TABLE _links_hop AS SELECT h.* FROM _links_held h SEMI JOIN _links_keys USING (member_key)")
        con.execute("INSERT INTO _links_found SELECT * FROM _links_hop")
        new = con.execute("""
            INSERT INTO _links_values SELECT DISTINCT kind, h FROM _links_hop
            EXCEPT SELECT kind, h FROM _links_values""").fetchall()
        frontier = new[0][0] if new else 0
        con.execute("DROP TABLE _links_hop")


def _found_among(con: duckdb.DuckDBPyConnection, keys: set[str]) -> set[str]:
    """The ``keys`` that have a row in ``_links_found``."""
    if not keys:
        return set()
    con.register("_links_stored", pa.table({"member_key": pa.array(sorted(keys), pa.string())}))
    try:
        return {k for (k,) in con.sql("SELECT member_key FROM _links_stored SEMI JOIN _links_found USING (member_key)").fetchall()}
    finally:
        con.unregister("_links_stored")


def _collect_adds(con: duckdb.DuckDBPyConnection, plan: SyncPlan, kinds: list[str]) -> None:
    """``_links_adds(member_key, side, kind, h)``: each value of ``kinds`` of every row to add."""
    con.execute("CREATE OR REPLACE TEMP TABLE _links_adds (member_key VARCHAR, side VARCHAR, kind VARCHAR, h UBIGINT)")
    # one statement over the plan's chunks as a stream DuckDB pulls one at a time, not one per chunk
    schema = pa.schema([("member_key", pa.string()), ("identifiers", pa.string())])
    chunks = (batch for table in plan.adds.tables() for batch in table.select([0, 2]).cast(schema).to_batches())
    con.register("_links_add_rows", pa.RecordBatchReader.from_batches(schema, chunks))
    try:
        digests = f"SELECT member_key, {value_digests('identifiers')} FROM _links_add_rows"
        adds = " UNION ALL ".join(f"SELECT member_key, 'a', '{k}', v_{k} FROM d WHERE v_{k} IS NOT NULL" for k in kinds)
        # MATERIALIZED: each kind reads d, and the stream can be read once
        con.execute(f"INSERT INTO _links_adds WITH d AS MATERIALIZED ({digests}) {adds}")
    finally:
        con.unregister("_links_add_rows")


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


def _links(rows: list[tuple], gone: set[str], withheld: set[str]) -> dict[str, tuple[str, str]]:
    """member_key -> (group name, kinds it shares) for every member linked to another once the plan is
    applied: the held rows of ``gone`` members (removed, not retained) and the rows to add of ``withheld``
    ones left out."""
    after = [r for r in rows if (r[1] == "a" and r[0] not in withheld) or (r[1] == "h" and r[0] not in gone)]
    holders: dict[str, set[str]] = {}
    for key, _, kind, digest in after:
        holders.setdefault(f"{kind}:{digest}", set()).add(key)
    groups = _Groups()
    kinds: dict[str, set[str]] = {}
    for key, side, kind, digest in after:
        if len(holders[f"{kind}:{digest}"]) > 1:
            groups.join((key, "member"), ("value", f"{kind}:{digest}"))
            kinds.setdefault(key, set()).add(kind)
    members: dict[tuple[str, str], set[str]] = {}
    for key in kinds:
        members.setdefault(groups.find((key, "member")), set()).add(key)
    names = {root: min(keys) for root, keys in members.items()}
    return {key: (names[groups.find((key, "member"))], ",".join(sorted(kinds[key]))) for key in kinds}
