"""Rule segments' models: an audience written as YAML conditions over the warehouse's tables instead of SQL.

A segment file may hold ``rules:`` in place of ``sql``/``sql_file``; ``Project.segment_sql`` compiles
them for the warehouse's dialect (``syncer.project.rules``), so plan, apply, ``plan --explain``,
the Dagster asset's description and ``validate``'s probe all see ordinary SQL. The reference, with an
example per rule kind, is ``docs/rule-segments.md``; in short::

    rules:
      from: customers                  # one row per member
      where: {deleted_at: {is_null: true}, country: {in: [US, CA]}}
      all:                             # every condition holds (any: at least one; exclude: none)
        - event: {table: carts, time: created_at, within: 24 hours, name: cart,
                  not_followed_by: {table: orders, time: ordered_at}}
        - count: {table: orders, where: {status: {ne: cancelled}}, at_least: 3, time: ordered_at, within: 90 days}
        - sum: {table: orders, column: amount, at_least: 350}
        - last: {table: orders, time: ordered_at, older_than: 90 days}
      exclude:
        - where: {email: {contains: "@competitor.com"}}
      ttl: {from_event: cart, after: 24 hours}   # adds expires_at = the last cart + 24 hours

Only pydantic is imported here (``syncer.project.config`` imports it, and ``syncer validate`` stays
fast); the compiler is imported when a rule segment's SQL is asked for. ``rule_references`` lists every
table and column the rules read, each with its key, for ``syncer.project.probe``. Unknown keys and
operators fail with the file, line and field, and an operator written another common way (``equals``,
``>=``, ``one_of``) is answered with ours.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Condition", "Count", "Event", "FollowUp", "Last", "Ops", "RuleReference", "SegmentRules", "Sum", "Ttl",
    "all_activities", "duration_parts", "rule_references", "selected_columns", "timed_activity",
]

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(minutes?|mins?|hours?|h|days?|d|weeks?|w)\s*$", re.IGNORECASE)
_UNIT = {"min": "minute", "h": "hour", "hour": "hour", "d": "day", "day": "day", "w": "week", "week": "week",
         "minute": "minute"}


def _column(value: str) -> str:
    if not _COLUMN.match(value):
        raise ValueError(f"expected a column name (letters, digits and _, not starting with a digit), got '{value}'")
    return value


def _table(value: str) -> str:
    if not _TABLE.match(value):
        raise ValueError(f"expected a table name such as customers or analytics.customers, got '{value}'")
    return value


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"expected a duration such as '30 minutes', '24 hours', '7 days' or '2 weeks', got '{value}'")
    return value


Column = Annotated[str, AfterValidator(_column)]
Table = Annotated[str, AfterValidator(_table)]
Duration = Annotated[str, AfterValidator(_duration)]
Scalar = Union[bool, int, float, str, datetime, date]


def duration_parts(text: str) -> tuple[int, str]:
    """``'2 weeks'`` -> ``(14, 'day')``: a count of minutes, hours or days (weeks become days)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    count, word = int(match.group(1)), match.group(2).lower()
    unit = _UNIT[word.removesuffix("s")]
    return (count * 7, "day") if unit == "week" else (count, unit)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "is_null", "contains")
_SYNONYMS = {
    "equals": "eq", "equal": "eq", "is": "eq", "=": "eq", "==": "eq", "neq": "ne", "not": "ne", "not_eq": "ne",
    "not_equals": "ne", "!=": "ne", "<>": "ne", "one_of": "in", "any_of": "in", "is_in": "in", "not_one_of": "not_in",
    "nin": "not_in", "greater_than": "gt", ">": "gt", "ge": "gte", ">=": "gte", "at_least": "gte", "min": "gte",
    "less_than": "lt", "<": "lt", "le": "lte", "<=": "lte", "at_most": "lte", "max": "lte", "range": "between",
    "null": "is_null", "is_not_null": "is_null", "not_null": "is_null", "exists": "is_null", "like": "contains",
    "includes": "contains", "has": "contains",
}


class Ops(_Rule):
    """Conditions on one column; several operators on one column must all hold. NULL fails them all
    except ``is_null: true``. Shorthands: ``country: US`` is ``eq``, ``country: [US, CA]`` is ``in``,
    ``deleted_at: null`` is ``is_null: true``."""

    eq: Scalar | None = Field(None, description="Equal to this value.")
    ne: Scalar | None = Field(None, description="Not equal to this value (NULL is not matched either).")
    in_: list[Scalar] | None = Field(None, alias="in", min_length=1, description="One of these values.")
    not_in: list[Scalar] | None = Field(None, min_length=1, description="None of these values (NULL is not matched).")
    gt: Scalar | None = Field(None, description="Greater than this value.")
    gte: Scalar | None = Field(None, description="Greater than or equal to this value.")
    lt: Scalar | None = Field(None, description="Less than this value.")
    lte: Scalar | None = Field(None, description="Less than or equal to this value.")
    between: tuple[Scalar, Scalar] | None = Field(None, description="[low, high], both included.")
    is_null: bool | None = Field(None, description="true: the column is NULL; false: it holds a value.")
    contains: str | None = Field(None, min_length=1, description="Text holding this substring (case-sensitive).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand_and_known(cls, data: Any) -> Any:
        if data is None:
            return {"is_null": True}
        if isinstance(data, list):
            return {"in": data}
        if not isinstance(data, dict):
            return {"eq": data}
        if not data:
            raise ValueError(f"name at least one operator: {', '.join(OPERATORS)}")
        for key, value in data.items():
            if key not in OPERATORS and key != "in_":
                raise ValueError(_unknown_operator(str(key)))
            if value is None:  # SQL's '= NULL' matches nothing: say what matches NULL instead
                raise ValueError(f"'{key}: null' compares with nothing; write is_null: true (or false) to match NULL")
        between = data.get("between")
        if between is not None and (not isinstance(between, list) or len(between) != 2):
            raise ValueError("'between' takes two values, [low, high], both included; e.g. between: [18, 65]")
        return data

    def items(self) -> list[tuple[str, Any]]:
        """The operators given, as (operator, value), in the order of ``OPERATORS``."""
        return [(op, getattr(self, "in_" if op == "in" else op)) for op in OPERATORS
                if getattr(self, "in_" if op == "in" else op) is not None]


def _unknown_operator(key: str) -> str:
    hint = _SYNONYMS.get(key.lower()) or next(iter(difflib.get_close_matches(key, OPERATORS, n=1, cutoff=0.6)), None)
    if key.lower() in ("is_not_null", "not_null", "exists"):
        did_you_mean = "; did you mean 'is_null: false'?"
    else:
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown operator '{key}'{did_you_mean} (operators: {', '.join(OPERATORS)})"


Where = dict[Column, Ops]


class FollowUp(_Rule):
    """The event must not be followed (at or after its time) by a row of this table: a cart with no order since."""

    table: Table = Field(description="Table of the follow-up events, e.g. orders.")
    key: Column | None = Field(None, description="Its member-key column; default: the rules' key.")
    where: Where = Field(default_factory=dict, description="Conditions on its columns.")
    time: Column = Field(description="Its time column (UTC), compared with the event's.")


class _Activity(_Rule):
    table: Table = Field(description="Table with one row per event (orders, page_views, carts...).")
    key: Column | None = Field(None, description="Its member-key column; default: the rules' key.")
    where: Where = Field(default_factory=dict, description="Conditions on its columns, e.g. {status: {ne: cancelled}}.")
    name: str | None = Field(None, min_length=1, description="A name for this condition, for ttl.from_event.")


class _Windowed(_Activity):
    time: Column | None = Field(None, description="Its time column (UTC); needed with within.")
    within: Duration | None = Field(None, description="Only rows in the last ..., e.g. '30 minutes', '90 days'.")

    @model_validator(mode="after")
    def _window_needs_time(self) -> "_Windowed":
        if self.within is not None and self.time is None:
            raise ValueError("'within' needs 'time': the column holding when each row happened")
        return self


class Event(_Windowed):
    """Recency: at least one row (in the window): "viewed a product in the last 30 minutes"."""

    not_followed_by: FollowUp | None = Field(None, description="...and no row of this table since (at or after it).")

    @model_validator(mode="after")
    def _follow_up_needs_time(self) -> "Event":
        if self.not_followed_by is not None and self.time is None:
            raise ValueError("'not_followed_by' needs 'time': the column holding when each event happened")
        return self


class _Bounds(_Windowed):
    @model_validator(mode="after")
    def _some_bound(self) -> "_Bounds":
        if self.at_least is None and self.at_most is None:  # type: ignore[attr-defined]
            raise ValueError("give 'at_least', 'at_most' or both")
        return self


class Count(_Bounds):
    """Frequency: the number of rows (in the window): "3+ orders in 90 days". Members without rows count 0."""

    at_least: int | None = Field(None, ge=0, description="At least this many rows.")
    at_most: int | None = Field(None, ge=0, description="At most this many rows (0: none).")


class Sum(_Bounds):
    """Monetary value: the total of a column (in the window): "spent 350 or more". No rows total 0."""

    column: Column = Field(description="The column to add up, e.g. amount.")
    at_least: Decimal | None = Field(None, description="A total of at least this.")
    at_most: Decimal | None = Field(None, description="A total of at most this.")


class Last(_Activity):
    """Lapsed: the latest row is older than a duration: "last order more than 90 days ago" (members with
    no row do not match)."""

    time: Column = Field(description="Its time column (UTC).")
    older_than: Duration = Field(description="The latest row is older than this, e.g. '90 days'.")


_KINDS = ("where", "event", "count", "sum", "last", "all", "any", "none")


class Condition(_Rule):
    """One condition, exactly one key: ``where`` (the base table's columns), ``event``, ``count``,
    ``sum``, ``last``, or a group ``all``/``any``/``none`` of conditions."""

    where: Where | None = Field(None, min_length=1, description="Conditions on the base table's columns, all holding.")
    event: Event | None = Field(None, description="Recency: did something (in the last ...).")
    count: Count | None = Field(None, description="Frequency: how many times (in the last ...).")
    sum: Sum | None = Field(None, description="Monetary: the total of a column (in the last ...).")
    last: Last | None = Field(None, description="Lapsed: the latest event is older than ...")
    all: list[Condition] | None = Field(None, min_length=1, description="Every condition holds.")
    any: list[Condition] | None = Field(None, min_length=1, description="At least one condition holds.")
    none: list[Condition] | None = Field(None, min_length=1, description="No condition holds.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Condition":
        given = [kind for kind in _KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            got = " and ".join(f"'{g}'" for g in given) if given else "none"
            raise ValueError(f"a condition has exactly one of {', '.join(_KINDS)}; got {got} (write one per '- ' item)")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in _KINDS if getattr(self, kind) is not None)


class Ttl(_Rule):
    """Membership ends a while after a qualifying event: adds an expiry column to the segment."""

    from_event: str = Field(min_length=1, description="The event condition timing it: its name, or its table.")
    after: Duration = Field(description="How long after the last qualifying event membership ends, e.g. '24 hours'.")
    column: Column = Field("expires_at", description="Name of the output column (name it as the segment's expires_at).")


_TOP_KEYS = ("from", "key", "where", "all", "any", "exclude", "ttl")


class SegmentRules(_Rule):
    """``rules:`` of a segment: members are the rows of ``from`` matching ``where``, every ``all``
    condition, at least one ``any`` condition (when given), and no ``exclude`` condition."""

    from_: Table = Field(alias="from", description="The base table: one row per member (customers).")
    key: Column | None = Field(None, description="Its member-key column, matched in the event tables; default: the segment's member_key.")
    where: Where = Field(default_factory=dict, description="Conditions on the base table's columns, all holding.")
    all: list[Condition] = Field(default_factory=list, description="Conditions that must all hold.")
    any: list[Condition] = Field(default_factory=list, description="Conditions of which at least one must hold.")
    exclude: list[Condition] = Field(default_factory=list, description="Members matching any of these are left out.")
    ttl: Ttl | None = Field(None, description="Adds an expiry column: the last qualifying event's time plus a duration.")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # 'from' is a Python keyword, so the field is from_; say the key as people write it
        if isinstance(data, dict):
            for key in data:
                if key not in _TOP_KEYS and key != "from_":
                    close = difflib.get_close_matches(str(key), _TOP_KEYS, n=1, cutoff=0.6)
                    did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
                    raise ValueError(f"unknown key '{key}' in rules{did_you_mean} (allowed: {', '.join(_TOP_KEYS)})")
            if "from" not in data and "from_" not in data:
                raise ValueError("rules need 'from': the base table with one row per member (e.g. from: customers)")
        return data

    @model_validator(mode="after")
    def _ttl_names_an_event(self) -> "SegmentRules":
        if self.ttl is not None:
            timed_activity(self, self.ttl.from_event)
        return self


def _activities(conditions: list[Condition], path: tuple) -> list[tuple[tuple, str, _Activity]]:
    """Every event/count/sum/last condition with its key path under ``rules``, depth first."""
    found = []
    for index, condition in enumerate(conditions):
        kind = condition.kind
        if kind in ("all", "any", "none"):
            found += _activities(getattr(condition, kind), path + (index, kind))
        elif kind != "where":
            found.append((path + (index, kind), kind, getattr(condition, kind)))
    return found


def all_activities(rules: SegmentRules) -> list[tuple[tuple, str, _Activity]]:
    """Each event-table condition of the rules: (key path under rules, kind, model)."""
    return [hit for group in ("all", "any", "exclude") for hit in _activities(getattr(rules, group), (group,))]


def timed_activity(rules: SegmentRules, ref: str) -> _Activity:
    """The timed condition ``ttl.from_event`` names: by ``name``, else the only one reading that table."""
    timed = [a for _, _, a in all_activities(rules) if getattr(a, "time", None)]
    named = [a for a in timed if a.name == ref]
    by_table = [a for a in timed if a.table == ref]
    if named or len(by_table) == 1:
        return (named or by_table)[0]
    choices = sorted({a.name for a in timed if a.name} | {a.table for a in timed})
    if len(by_table) > 1:
        raise ValueError(f"ttl.from_event: several conditions read '{ref}'; give the one you mean a 'name' and use it")
    raise ValueError(f"ttl.from_event: no event condition with a time column is named or reads '{ref}'"
                     f" (known: {', '.join(choices) or 'none; add an event with a time column'})")


@dataclass(frozen=True)
class RuleReference:
    """A table, or a column of one, that a rule segment reads, and the key that names it."""

    path: tuple  # key path in the segment file
    table: str
    column: str | None  # None: the table itself


def rule_references(segment: Any) -> list[RuleReference]:
    """Every table and column a rule segment reads, each with the key in its file that names it."""
    rules: SegmentRules = segment.rules
    base, key = rules.from_, rules.key or segment.member_key
    refs = [RuleReference(("rules", "from"), base, None),
            RuleReference(("rules", "key") if rules.key else ("member_key",), base, key)]
    refs += [RuleReference(path, base, column) for path, column in selected_columns(segment)]
    refs += _where_refs(("rules", "where"), base, rules.where)
    for group in ("all", "any", "exclude"):
        refs += _condition_refs(("rules", group), getattr(rules, group), base, key)
    return refs


def _where_refs(path: tuple, table: str, where: dict[str, Ops]) -> list[RuleReference]:
    return [RuleReference(path + (column,), table, column) for column in where]


def _condition_refs(path: tuple, conditions: list[Condition], base: str, key: str) -> list[RuleReference]:
    refs: list[RuleReference] = []
    for index, condition in enumerate(conditions):
        kind, here = condition.kind, path + (index, condition.kind)
        if kind == "where":
            refs += _where_refs(here, base, condition.where or {})
        elif kind in ("all", "any", "none"):
            refs += _condition_refs(here, getattr(condition, kind), base, key)
        else:
            refs += _activity_refs(here, getattr(condition, kind), key)
    return refs


def _activity_refs(path: tuple, activity: Any, key: str) -> list[RuleReference]:
    table = activity.table
    refs = [RuleReference(path + ("table",), table, None),
            RuleReference(path + ("key",) if activity.key else path + ("table",), table, activity.key or key)]
    refs += [RuleReference(path + (field,), table, getattr(activity, field))
             for field in ("time", "column") if getattr(activity, field, None)]
    refs += _where_refs(path + ("where",), table, activity.where)
    follow = getattr(activity, "not_followed_by", None)
    if follow is not None:
        refs += _activity_refs(path + ("not_followed_by",), follow, key)
    return refs


def selected_columns(segment: Any) -> list[tuple[tuple, str]]:
    """The base table's columns a rule segment returns, each with the key that names it, once each."""
    named: list[tuple[tuple, str]] = [(("member_key",), segment.member_key)]
    named += [(("identifiers", kind), column) for kind, column in segment.identifiers.items()]
    if segment.phone_region_column:
        named.append((("phone_region_column",), segment.phone_region_column))
    named += [(("consent", channel), getattr(segment.consent, channel)) for channel in ("ads", "email", "sms")
              if getattr(segment.consent, channel)]
    seen: set[str] = set()
    unique = []
    for path, column in named:
        if column.lower() not in seen:
            seen.add(column.lower())
            unique.append((path, column))
    return unique
