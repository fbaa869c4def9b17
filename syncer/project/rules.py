"""Compile a rule segment (models in ``syncer.project.rule_models``; reference in ``docs/rule-segments.md``)
to SQL for the warehouse's dialect: ``compile_segment_rules``, called by ``Project.segment_sql``.

The shape is the same everywhere: one ``GROUP BY`` per event-table condition, left-joined to the base
table by member key, and the conditions as plain predicates over the joins::

    WITH rule_1 AS (SELECT e.customer_id AS member_key, MAX(e.created_at) AS last_at
                    FROM carts e WHERE e.customer_id IS NOT NULL AND <where> AND <window>
                    GROUP BY e.customer_id)
    SELECT b.customer_id, b.email, ..., <rule_1.last_at + ttl> AS expires_at
    FROM customers b LEFT JOIN rule_1 r1 ON r1.member_key = b.customer_id
    WHERE b.customer_id IS NOT NULL AND <where> AND r1.member_key IS NOT NULL AND ...

No correlated subquery is needed ("not followed by" compares two per-member maxima: no order at or
after the last cart is exactly "the last order is before the last cart"), so every engine plans it the
same way. What differs per engine is written out by hand in ``_Dialect``: identifier quoting (Snowflake
folds unquoted names to upper case, so a plain lower-case name is quoted upper-cased, as Snowflake would
read it unquoted), string escaping (BigQuery, Snowflake and Spark read backslash escapes in literals),
the UTC "now", adding and subtracting minutes/hours/days, the substring test, and how a time column is
read (BigQuery compares ``CAST(x AS TIMESTAMP)`` so DATETIME and TIMESTAMP columns both work; SQLite
keeps times as text and compares ``datetime(x)``). Timestamps are taken as UTC, as the demo warehouse
keeps them; on Spark, set the session time zone to UTC (Databricks' default).

A NULL value fails every condition but ``is_null: true``; under ``none``/``exclude`` a group is
``COALESCE``d to false, so a NULL never turns an exclusion into a match.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from syncer.environment import scheme_of
from syncer.errors import ConfigError
from syncer.project.rule_models import Condition, Ops, SegmentRules, duration_parts, selected_columns, timed_activity

__all__ = ["DIALECTS", "compile_rules", "compile_segment_rules", "dialect_for_url"]

_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


@dataclass(frozen=True)
class _Dialect:
    name: str
    quote: str = '"'
    backslash_escapes: bool = False
    now_sql: str = "CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP)"

    def ident(self, name: str) -> str:
        if self.name == "snowflake" and _PLAIN.match(name):
            name = name.upper()
        return self.quote + name.replace(self.quote, self.quote * 2) + self.quote

    def table(self, name: str) -> str:
        return ".".join(self.ident(part) for part in name.split("."))

    def string(self, value: str) -> str:
        # The run executes segment SQL through sqlalchemy.text, which reads ':word' as a bind parameter
        # and '\\:' as an escaped colon; a colon alone in its own literal, concatenated, is neither.
        if ":" not in value:
            return self._quoted(value)
        pieces = [part for part in re.split("(:)", value) if part]
        return "(" + " || ".join(self._quoted(piece) for piece in pieces) + ")"

    def _quoted(self, value: str) -> str:
        if self.backslash_escapes:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"

    def literal(self, value: Any) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, (int, Decimal)):
            return str(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ConfigError(f"a rule compares with {value}, which no warehouse can store; write a finite number")
            return repr(value)
        if isinstance(value, datetime):  # digits before each colon: never read as a bind parameter
            return self._quoted(_utc(value).isoformat(sep=" "))
        if isinstance(value, date):
            return self._quoted(value.isoformat())
        return self.string(str(value))

    def timestamp(self, moment: datetime) -> str:
        return f"TIMESTAMP {self._quoted(_utc(moment).isoformat(sep=' '))}"

    def time(self, column: str) -> str:
        """A time column as compared and aggregated."""
        return column

    def shift(self, moment: str, count: int, unit: str) -> str:
        """``moment`` plus ``count`` (negative: minus) minutes, hours or days."""
        sign = "+" if count >= 0 else "-"
        return f"{moment} {sign} INTERVAL '{abs(count)} {unit}s'"

    def contains(self, column: str, text: str) -> str:
        return f"strpos({column}, {self.string(text)}) > 0"


class _Snowflake(_Dialect):
    def timestamp(self, moment: datetime) -> str:
        return f"CAST({self._quoted(_utc(moment).isoformat(sep=' '))} AS TIMESTAMP_NTZ)"

    def shift(self, moment: str, count: int, unit: str) -> str:
        return f"DATEADD({unit}, {count}, {moment})"

    def contains(self, column: str, text: str) -> str:
        return f"POSITION({self.string(text)}, {column}) > 0"


class _BigQuery(_Dialect):
    def time(self, column: str) -> str:
        return f"CAST({column} AS TIMESTAMP)"

    def shift(self, moment: str, count: int, unit: str) -> str:
        op = "TIMESTAMP_ADD" if count >= 0 else "TIMESTAMP_SUB"
        return f"{op}({moment}, INTERVAL {abs(count)} {unit.upper()})"

    def contains(self, column: str, text: str) -> str:
        return f"STRPOS({column}, {self.string(text)}) > 0"


class _Spark(_Dialect):
    def shift(self, moment: str, count: int, unit: str) -> str:
        sign = "+" if count >= 0 else "-"
        return f"{moment} {sign} INTERVAL '{abs(count)}' {unit.upper()}"

    def contains(self, column: str, text: str) -> str:
        return f"instr({column}, {self.string(text)}) > 0"


class _Sqlite(_Dialect):
    def timestamp(self, moment: datetime) -> str:
        return self._quoted(_utc(moment).isoformat(sep=" "))

    def time(self, column: str) -> str:
        return f"datetime({column})"

    def shift(self, moment: str, count: int, unit: str) -> str:
        return f"datetime({moment}, '{count:+d} {unit}s')"

    def contains(self, column: str, text: str) -> str:
        return f"instr({column}, {self.string(text)}) > 0"


DIALECTS: dict[str, _Dialect] = {
    "duckdb": _Dialect("duckdb"),
    "postgresql": _Dialect("postgresql", now_sql="CAST(CURRENT_TIMESTAMP AT TIME ZONE 'UTC' AS TIMESTAMP)"),
    "snowflake": _Snowflake("snowflake", backslash_escapes=True, now_sql="SYSDATE()"),
    "bigquery": _BigQuery("bigquery", quote="`", backslash_escapes=True, now_sql="CURRENT_TIMESTAMP()"),
    "spark": _Spark("spark", quote="`", backslash_escapes=True, now_sql="current_timestamp()"),
    "sqlite": _Sqlite("sqlite", now_sql="datetime('now')"),
}
_SCHEMES = {"postgres": "postgresql", "databricks": "spark", "hive": "spark"}


def dialect_for_url(url: str) -> str:
    """The rules dialect of a warehouse URL (its scheme, without the driver)."""
    scheme = scheme_of(url)
    name = _SCHEMES.get(scheme, scheme)
    if name not in DIALECTS:
        raise ConfigError(f"rule segments compile for {', '.join(DIALECTS)} warehouses; this warehouse_url is"
                          f" '{scheme}': write the segment as sql instead")
    return name


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def compile_segment_rules(project: Any, name: str, *, now: datetime | None = None) -> str:
    """The SQL of segment ``name``'s rules for the project's warehouse (``Project.segment_sql`` calls it);
    ``now`` (naive = UTC) replaces the warehouse's clock, for tests; default the warehouse's current time.

    Raises:
        ConfigError: the warehouse's dialect is not one rules compile for.
    """
    return compile_rules(project.segments[name], dialect_for_url(project.config.warehouse_url), now=now)


def compile_rules(segment: Any, dialect: str, *, now: datetime | None = None) -> str:
    """SQL returning one row per member of a rule segment, with the columns its file names.

    Args:
        segment: a ``SegmentConfig`` whose ``rules`` is set.
        dialect: a key of ``DIALECTS``.
        now: the moment windows are measured from (naive = UTC); default the warehouse's clock.
    """
    return _Compiler(segment, DIALECTS[dialect], now).sql()


@dataclass
class _Compiler:
    segment: Any
    d: _Dialect
    now_moment: datetime | None
    ctes: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    aliases: dict[int, str] = field(default_factory=dict)  # id(activity model) -> join alias

    @property
    def rules(self) -> SegmentRules:
        return self.segment.rules

    @property
    def key(self) -> str:
        return self.rules.key or self.segment.member_key

    @property
    def now(self) -> str:
        return self.d.now_sql if self.now_moment is None else self.d.timestamp(self.now_moment)

    def sql(self) -> str:
        rules = self.rules
        predicates = [f"b.{self.d.ident(self.key)} IS NOT NULL"]
        predicates += self._where("b", rules.where)
        predicates += [self._condition(c) for c in rules.all]
        if rules.any:
            predicates.append("(" + " OR ".join(self._condition(c) for c in rules.any) + ")")
        if rules.exclude:
            excluded = " OR ".join(self._condition(c) for c in rules.exclude)
            predicates.append(f"NOT COALESCE({excluded}, FALSE)")
        columns = [f"b.{self.d.ident(column)}" for _, column in selected_columns(self.segment)]
        if rules.ttl is not None:
            columns.append(self._ttl())
        lines = []
        if self.ctes:
            lines.append("WITH " + ",\n".join(self.ctes))
        lines.append("SELECT " + ", ".join(columns))
        lines.append(f"FROM {self.d.table(rules.from_)} b")
        lines += self.joins
        lines.append("WHERE " + "\n  AND ".join(predicates))
        return "\n".join(lines)

    def _condition(self, condition: Condition) -> str:
        kind = condition.kind
        if kind == "where":
            parts = self._where("b", condition.where or {})
            text = parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
        elif kind in ("all", "any"):
            joiner = " AND " if kind == "all" else " OR "
            text = "(" + joiner.join(self._condition(c) for c in getattr(condition, kind)) + ")"
        elif kind == "none":
            inner = " OR ".join(self._condition(c) for c in condition.none or [])
            text = f"NOT COALESCE({inner}, FALSE)"
        else:
            text = getattr(self, f"_{kind}")(getattr(condition, kind))
        return text

    # -- per-member aggregates of event tables -------------------------------------------------------

    def _aggregate(self, activity: Any, measure: str, *, window: bool = True) -> str:
        """Join a per-member aggregate of ``activity``'s rows (once per condition); returns its alias."""
        if id(activity) in self.aliases:
            return self.aliases[id(activity)]
        number = len(self.ctes) + 1
        name, alias = f"rule_{number}", f"r{number}"
        key = self.d.ident(activity.key or self.key)
        filters = [f"e.{key} IS NOT NULL", *self._where("e", activity.where)]
        within = getattr(activity, "within", None)
        if window and within:
            moment = self.d.time(f"e.{self.d.ident(activity.time)}")
            count, unit = duration_parts(within)
            filters += [f"{moment} >= {self.d.shift(self.now, -count, unit)}", f"{moment} <= {self.now}"]
        self.ctes.append(f"{name} AS (\n    SELECT e.{key} AS member_key, {measure}\n"
                         f"    FROM {self.d.table(activity.table)} e\n    WHERE " + "\n      AND ".join(filters)
                         + f"\n    GROUP BY e.{key}\n)")
        self.joins.append(f"LEFT JOIN {name} {alias} ON {alias}.member_key = b.{self.d.ident(self.key)}")
        self.aliases[id(activity)] = alias
        return alias

    def _last_at(self, activity: Any) -> str:
        return f"MAX({self.d.time('e.' + self.d.ident(activity.time))}) AS last_at"

    def _event(self, event: Any) -> str:
        measure = self._last_at(event) if event.time else "COUNT(*) AS n"
        alias = self._aggregate(event, measure)
        if event.not_followed_by is None:
            return f"{alias}.member_key IS NOT NULL"
        follow = self._aggregate(event.not_followed_by, self._last_at(event.not_followed_by))
        return (f"({alias}.member_key IS NOT NULL AND ({follow}.last_at IS NULL"
                f" OR {follow}.last_at < {alias}.last_at))")

    def _count(self, count: Any) -> str:
        alias = self._aggregate(count, "COUNT(*) AS n" + (", " + self._last_at(count) if count.time else ""))
        return self._bounds(f"COALESCE({alias}.n, 0)", count.at_least, count.at_most)

    def _sum(self, total: Any) -> str:
        measure = f"SUM(e.{self.d.ident(total.column)}) AS total" + (", " + self._last_at(total) if total.time else "")
        alias = self._aggregate(total, measure)
        return self._bounds(f"COALESCE({alias}.total, 0)", total.at_least, total.at_most)

    def _last(self, last: Any) -> str:
        alias = self._aggregate(last, self._last_at(last), window=False)
        count, unit = duration_parts(last.older_than)
        return f"{alias}.last_at < {self.d.shift(self.now, -count, unit)}"

    def _bounds(self, value: str, at_least: Any, at_most: Any) -> str:
        parts = []
        if at_least is not None:
            parts.append(f"{value} >= {self.d.literal(at_least)}")
        if at_most is not None:
            parts.append(f"{value} <= {self.d.literal(at_most)}")
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _ttl(self) -> str:
        ttl = self.rules.ttl
        activity = timed_activity(self.rules, ttl.from_event)
        alias = self.aliases.get(id(activity)) or self._aggregate(activity, self._last_at(activity))
        count, unit = duration_parts(ttl.after)
        return f"{self.d.shift(alias + '.last_at', count, unit)} AS {self.d.ident(ttl.column)}"

    # -- column conditions ---------------------------------------------------------------------------

    def _where(self, table_alias: str, where: dict[str, Ops]) -> list[str]:
        return [self._op(f"{table_alias}.{self.d.ident(column)}", op, value)
                for column, ops in where.items() for op, value in ops.items()]

    def _op(self, column: str, op: str, value: Any) -> str:
        lit = self.d.literal
        if op == "is_null":
            return f"{column} IS NULL" if value else f"{column} IS NOT NULL"
        if op in ("in", "not_in"):
            listed = ", ".join(lit(v) for v in value)
            return f"{column} {'IN' if op == 'in' else 'NOT IN'} ({listed})"
        if op == "between":
            return f"{column} BETWEEN {lit(value[0])} AND {lit(value[1])}"
        if op == "contains":
            return self.d.contains(column, value)
        symbol = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"{column} {symbol} {lit(value)}"
