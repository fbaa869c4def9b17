"""Rule segments: YAML conditions compiled to SQL give the members their hand-written SQL twins give,
every operator means what the docs say on DuckDB and SQLite, each dialect's SQL parses, and a wrong rule
or a column the warehouse lacks is told with the file, line and field."""

from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp

from syncer.demo import sample_data as sd
from syncer.project.config import SegmentConfig
from syncer.project.probe import probe_segments
from syncer.project.project import InvalidProjectError, load_project
from syncer.project.rules import compile_rules, compile_segment_rules
from syncer.sandbox import Sandbox
from tests.conftest import meta_on, write_customers, write_project
from tests.test_cli import TOKEN, _port, expected, held_emails, syncer

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
DEMO_SEGMENTS = ("cart_abandoners", "churn_risk", "high_value", "recent_purchasers")
FIXED_NOW = datetime(2026, 3, 1, 12, 0, 0)
SQL_NOW = "CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP)"


# --- the demo's four segments, as rules and as SQL ----------------------------------------------

@pytest.fixture(scope="module")
def rule_demo(tmp_path_factory) -> Path:
    """The demo project with its segments replaced by examples/demo/rule_segments, over a sample
    warehouse generated at FIXED_NOW."""
    root = tmp_path_factory.mktemp("rule_demo") / "demo"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns(".syncer", "*.duckdb*", "*.db"))
    shutil.rmtree(root / "segments")
    shutil.copytree(root / "rule_segments", root / "segments")
    sd.generate(root / "warehouse.duckdb", 3_000, now=FIXED_NOW)
    return root


def _ids(con: duckdb.DuckDBPyConnection, sql: str) -> set[int]:
    result = con.execute(sql)
    column = [d[0] for d in result.description].index("customer_id")
    return {row[column] for row in result.fetchall()}


def _sql_twin(name: str, now: datetime) -> str:
    sql = (DEMO / "segments" / f"{name}.sql").read_text()
    return sql.replace(SQL_NOW, f"TIMESTAMP '{now.isoformat(sep=' ')}'")


@pytest.mark.parametrize("now", [FIXED_NOW, FIXED_NOW + timedelta(days=3, hours=5)], ids=["at_generation", "3_days_on"])
@pytest.mark.parametrize("name", DEMO_SEGMENTS)
def test_a_demo_rule_segment_has_the_members_of_its_sql_twin(rule_demo: Path, name: str, now: datetime) -> None:
    project = load_project(rule_demo)
    rules_sql = compile_segment_rules(project, name, now=now)
    with duckdb.connect(str(rule_demo / "warehouse.duckdb"), read_only=True) as con:
        from_rules, from_sql = _ids(con, rules_sql), _ids(con, _sql_twin(name, now))
    assert from_rules == from_sql
    if now == FIXED_NOW:
        assert len(from_rules) > 10, "the comparison means something only with members"


def test_the_demo_rule_segments_keep_the_demo_segments_keys() -> None:
    for name in DEMO_SEGMENTS:
        rule = yaml.safe_load((DEMO / "rule_segments" / f"{name}.yml").read_text())
        original = yaml.safe_load((DEMO / "segments" / f"{name}.yml").read_text())
        assert {k: v for k, v in rule.items() if k != "rules"} == {k: v for k, v in original.items() if k != "sql_file"}


def test_cart_abandoners_ttl_adds_expires_at_a_day_after_the_last_open_cart(rule_demo: Path) -> None:
    sql = compile_segment_rules(load_project(rule_demo), "cart_abandoners", now=FIXED_NOW)
    with duckdb.connect(str(rule_demo / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(f"SELECT customer_id, expires_at FROM ({sql}) s").fetchall()
        last_cart = dict(con.execute("""SELECT customer_id, max(created_at) FROM carts WHERE checked_out_at IS NULL
                                        AND created_at >= TIMESTAMP '2026-02-28 12:00:00' GROUP BY 1""").fetchall())
    assert rows and all(expires == last_cart[key] + timedelta(hours=24) for key, expires in rows)
    assert all(expires > FIXED_NOW for _, expires in rows)


def test_the_demo_rule_segments_validate_against_the_sample_warehouse(rule_demo: Path) -> None:
    result = probe_segments(load_project(rule_demo))
    assert result.problems == [] and result.warnings == []


# --- every operator and rule kind, on DuckDB and SQLite -----------------------------------------

NOW = datetime(2026, 5, 4, 10, 0, 0)
CUSTOMERS = [  # customer_id, email, country, age, note, vip, deleted_at
    (1, "a@x.com", "US", 30, "likes shoes", True, None),
    (2, "b@y.com", "CA", 45, None, False, None),
    (3, "c@x.com", "UK", 18, "it's 100%", None, None),
    (4, None, "US", 60, "shoes_and_more", True, None),
    (5, "e@x.com", "US", 33, "gone", True, NOW - timedelta(days=2)),
]
ORDERS = [  # customer_id, status, amount, ordered_at
    (1, "completed", 100, NOW - timedelta(days=1)),
    (1, "completed", 50, NOW - timedelta(days=10)),
    (1, "cancelled", 500, NOW - timedelta(hours=2)),
    (2, "completed", 400, NOW - timedelta(days=100)),
    (3, "pending", 20, NOW - timedelta(minutes=20)),
    (None, "completed", 999, NOW - timedelta(minutes=5)),
    (3, "completed", 5, NOW + timedelta(days=1)),  # dated after now: in no window
]
CARTS = [  # customer_id, created_at
    (1, NOW - timedelta(hours=3)),
    (2, NOW - timedelta(hours=5)),
    (3, NOW - timedelta(hours=1)),
    (4, NOW - timedelta(days=3)),
]


def _tiny_warehouse(path: Path, dialect: str):
    ddl = ["CREATE TABLE customers (customer_id BIGINT, email VARCHAR, country VARCHAR, age INTEGER,"
           " note VARCHAR, vip BOOLEAN, deleted_at TIMESTAMP)",
           "CREATE TABLE orders (customer_id BIGINT, status VARCHAR, amount DECIMAL(10,2), ordered_at TIMESTAMP)",
           "CREATE TABLE carts (customer_id BIGINT, created_at TIMESTAMP)"]
    con = duckdb.connect(str(path)) if dialect == "duckdb" else sqlite3.connect(path)
    for statement in ddl:
        con.execute(statement)
    stamp = (lambda v: v) if dialect == "duckdb" else (lambda v: v.isoformat(sep=" ") if isinstance(v, datetime) else v)
    for table, rows in (("customers", CUSTOMERS), ("orders", ORDERS), ("carts", CARTS)):
        for row in rows:
            marks = ", ".join("?" * len(row))
            con.execute(f"INSERT INTO {table} VALUES ({marks})", [stamp(v) for v in row])
    con.commit()
    return con


@pytest.fixture(params=["duckdb", "sqlite"])
def tiny(request, tmp_path):
    con = _tiny_warehouse(tmp_path / f"tiny.{request.param}", request.param)
    yield request.param, con
    con.close()


def _segment(rules: dict, **extra) -> SegmentConfig:
    return SegmentConfig.model_validate({"rules": rules, "member_key": "customer_id",
                                         "identifiers": {"email": "email"}, **extra})


def _members(tiny, rules: dict) -> set[int]:
    dialect, con = tiny
    sql = compile_rules(_segment({"from": "customers", "where": {"deleted_at": {"is_null": True}}, **rules}),
                        dialect, now=NOW)
    return {row[0] for row in con.execute(sql).fetchall()}


@pytest.mark.parametrize(("where", "ids"), [
    ({"country": {"eq": "US"}}, {1, 4}),
    ({"country": "US"}, {1, 4}),
    ({"country": {"ne": "US"}}, {2, 3}),
    ({"country": {"in": ["US", "CA"]}}, {1, 2, 4}),
    ({"country": ["US", "CA"]}, {1, 2, 4}),
    ({"country": {"not_in": ["US"]}}, {2, 3}),
    ({"age": {"gt": 30}}, {2, 4}),
    ({"age": {"gte": 30}}, {1, 2, 4}),
    ({"age": {"lt": 30}}, {3}),
    ({"age": {"lte": 30}}, {1, 3}),
    ({"age": {"gte": 18, "lt": 45}}, {1, 3}),
    ({"age": {"between": [18, 30]}}, {1, 3}),
    ({"note": {"is_null": True}}, {2}),
    ({"note": None}, {2}),
    ({"note": {"is_null": False}}, {1, 3, 4}),
    ({"note": {"contains": "shoes"}}, {1, 4}),
    ({"note": {"contains": "_"}}, {4}),  # no LIKE wildcard: '_' is a character
    ({"note": {"contains": "it's 100%"}}, {3}),  # quote and % escaped
    ({"vip": {"eq": True}}, {1, 4}),
    ({"vip": {"ne": True}}, {2}),  # NULL fails every operator but is_null
    ({"email": {"contains": "@x.com"}, "country": "US"}, {1}),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_each_operator(tiny, where: dict, ids: set[int]) -> None:
    assert _members(tiny, {"all": [{"where": where}]}) == ids


@pytest.mark.parametrize(("condition", "ids"), [
    ({"event": {"table": "orders", "where": {"status": "completed"}, "time": "ordered_at", "within": "1 day"}}, {1}),
    ({"event": {"table": "orders", "time": "ordered_at", "within": "30 minutes"}}, {3}),
    ({"event": {"table": "orders"}}, {1, 2, 3}),
    ({"count": {"table": "orders", "where": {"status": {"ne": "cancelled"}}, "time": "ordered_at", "within": "90 days",
                "at_least": 2}}, {1}),
    ({"count": {"table": "orders", "at_most": 0}}, {4}),
    ({"count": {"table": "orders", "at_least": 1, "at_most": 2}}, {2, 3}),
    ({"sum": {"table": "orders", "column": "amount", "at_least": 400}}, {1, 2}),
    ({"sum": {"table": "orders", "column": "amount", "where": {"status": {"ne": "cancelled"}}, "at_least": 400}}, {2}),
    ({"sum": {"table": "orders", "column": "amount", "time": "ordered_at", "within": "2 weeks", "at_most": 100}},
     {2, 3, 4}),
    ({"last": {"table": "orders", "time": "ordered_at", "older_than": "90 days"}}, {2}),
    ({"event": {"table": "carts", "time": "created_at", "within": "24 hours",
                "not_followed_by": {"table": "orders", "where": {"status": {"ne": "cancelled"}}, "time": "ordered_at"}}},
     {1, 2}),
    ({"any": [{"where": {"country": "CA"}}, {"where": {"age": {"gte": 60}}}]}, {2, 4}),
    ({"all": [{"where": {"country": "US"}}, {"where": {"age": {"gte": 60}}}]}, {4}),
    ({"none": [{"where": {"country": "US"}}]}, {2, 3}),
    ({"none": [{"where": {"note": {"contains": "shoes"}}}]}, {2, 3}),  # a NULL note does not exclude
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_each_rule_kind(tiny, condition: dict, ids: set[int]) -> None:
    assert _members(tiny, {"all": [condition]}) == ids


def test_any_and_exclude_at_the_top(tiny) -> None:
    assert _members(tiny, {"any": [{"where": {"country": "UK"}}, {"where": {"age": {"gte": 45}}}]}) == {2, 3, 4}
    assert _members(tiny, {"exclude": [{"where": {"vip": True}}, {"where": {"country": "UK"}}]}) == {2}


def test_ttl_is_the_last_qualifying_event_plus_the_duration(tiny) -> None:
    dialect, con = tiny
    segment = _segment({"from": "customers", "all": [{"event": {"table": "carts", "time": "created_at",
                                                                 "within": "1 day", "name": "cart"}}],
                        "ttl": {"from_event": "cart", "after": "24 hours"}})
    rows = con.execute(compile_rules(segment, dialect, now=NOW)).fetchall()
    expires = {row[0]: row[-1] for row in rows}
    want = {key: at + timedelta(hours=24) for key, at in CARTS if key != 4}
    if dialect == "sqlite":
        want = {key: at.isoformat(sep=" ") for key, at in want.items()}
    assert expires == want


@pytest.mark.parametrize("text", [":30", "a :b", "https://x.io/p?q=:id", "back\\:slash", "::"])
def test_a_value_with_colons_is_not_read_as_a_bind_parameter_by_the_run(tmp_path: Path, text: str) -> None:
    import sqlalchemy as sa

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE customers (customer_id BIGINT, email VARCHAR, note VARCHAR)")
        con.execute("INSERT INTO customers VALUES (1, 'a@x.com', ?), (2, 'b@x.com', 'other')", [f"<{text}>"])
    sql = compile_rules(_segment({"from": "customers", "where": {"note": {"contains": text}},
                                  "exclude": [{"where": {"note": {"in": [text, "x:y"]}}}]}), "duckdb")
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with engine.connect() as conn:  # as the run executes segment SQL
        assert [row[0] for row in conn.execute(sa.text(sql))] == [1]
    engine.dispose()


# --- the SQL of each dialect ---------------------------------------------------------------------

EVERYTHING = {
    "from": "analytics.customers",
    "where": {"deleted_at": None, "country": ["US", "CA"], "note": {"contains": "it's a \\ back'slash"}},
    "all": [
        {"event": {"table": "carts", "time": "created_at", "within": "30 minutes", "name": "cart",
                   "not_followed_by": {"table": "orders", "time": "ordered_at", "where": {"status": {"ne": "x"}}}}},
        {"count": {"table": "orders", "time": "ordered_at", "within": "2 weeks", "at_least": 3, "at_most": 9}},
        {"sum": {"table": "orders", "column": "amount", "time": "ordered_at", "within": "90 days", "at_least": 350.5}},
        {"last": {"table": "orders", "time": "ordered_at", "older_than": "12 hours"}},
        {"where": {"age": {"between": [18, 65]}, "score": {"gt": 1.5, "lte": 9}, "vip": True}},
    ],
    "any": [{"where": {"a": {"gte": "2026-01-01"}}}, {"none": [{"where": {"b": {"not_in": [1, 2]}}}]}],
    "exclude": [{"where": {"email": {"contains": "@rival.com"}}}],
    "ttl": {"from_event": "cart", "after": "24 hours"},
}


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake", "spark", "duckdb", "postgres", "sqlite"])
@pytest.mark.parametrize("now", [None, NOW], ids=["warehouse_clock", "fixed_now"])
def test_each_dialect_sql_parses_and_keeps_every_literal(dialect: str, now) -> None:
    ours = {"postgres": "postgresql"}.get(dialect, dialect)
    sql = compile_rules(_segment(EVERYTHING), ours, now=now)
    tree = sqlglot.parse_one(sql, read=dialect)
    strings = {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}
    assert {"it's a \\ back'slash", "US", "CA", "x", "@rival.com", "2026-01-01"} <= strings


def test_each_dialect_writes_its_own_time_arithmetic() -> None:
    segment = _segment({"from": "customers", "all": [{"event": {"table": "orders", "time": "ordered_at", "within": "7 days"}}]})
    assert "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)" in compile_rules(segment, "bigquery")
    assert "DATEADD(day, -7, SYSDATE())" in compile_rules(segment, "snowflake")
    assert "current_timestamp() - INTERVAL '7' DAY" in compile_rules(segment, "spark")
    assert "datetime(datetime('now'), '-7 days')" in compile_rules(segment, "sqlite")
    assert f"{SQL_NOW} - INTERVAL '7 days'" in compile_rules(segment, "duckdb")
    assert '"ORDERED_AT"' in compile_rules(segment, "snowflake"), "Snowflake reads a plain name upper-cased"


# --- validation: the file, line and field ---------------------------------------------------------

def _rule_project(root: Path, rules: str) -> Path:
    write_customers(root / "warehouse.duckdb", [])
    write_project(root, destination="type: fake\nmax_batch: 10\n")
    (root / "segments" / "buyers.yml").write_text(textwrap.dedent("""\
        member_key: customer_id
        identifiers: {email: email}
        consent: {ads: ads_consent}
        rules:
        """) + textwrap.indent(textwrap.dedent(rules), "  "))
    return root


def _problems(root: Path) -> list[str]:
    with pytest.raises(InvalidProjectError) as caught:
        load_project(root)
    return [str(p) for p in caught.value.problems]


def test_an_unknown_operator_names_the_right_one_with_file_line_and_field(tmp_path: Path) -> None:
    _rule_project(tmp_path, """\
        from: customers
        where:
          country: {equals: US}
        """)
    assert _problems(tmp_path) == ["segments/buyers.yml:7: rules.where.country: unknown operator 'equals'; did you"
                                   " mean 'eq'? (operators: eq, ne, in, not_in, gt, gte, lt, lte, between, is_null,"
                                   " contains)"]


def test_a_misspelt_key_a_bad_duration_and_two_kinds_in_one_condition(tmp_path: Path) -> None:
    _rule_project(tmp_path, """\
        frm: customers
        """)
    [problem] = _problems(tmp_path)
    assert problem.startswith("segments/buyers.yml:4: rules: unknown key 'frm' in rules; did you mean 'from'?")
    _rule_project(tmp_path, """\
        from: customers
        all:
          - event: {table: orders, time: ordered_at, withn: 7 days}
          - count: {table: orders, at_least: 2, within: a week, time: ordered_at}
          - event: {table: orders}
            where: {country: US}
        ttl: {from_event: carts, after: 1 day}
        """)
    problems = _problems(tmp_path)
    assert any(p.startswith("segments/buyers.yml:7: rules.all[0].event.withn: unknown key 'withn'; did you mean"
                            " 'within'?") for p in problems), problems
    assert any(p.startswith("segments/buyers.yml:8: rules.all[1].count.within: expected a duration such as '30 minutes'")
               for p in problems), problems
    assert any(p.startswith("segments/buyers.yml:9: rules.all[2]: a condition has exactly one of") for p in problems)


def test_an_operator_given_null_is_a_problem_not_a_condition_that_matches_nothing(tmp_path: Path) -> None:
    _rule_project(tmp_path, """\
        from: customers
        where:
          country: {eq: null}
        """)
    assert _problems(tmp_path) == ["segments/buyers.yml:7: rules.where.country: 'eq: null' compares with nothing;"
                                   " write is_null: true (or false) to match NULL"]


def test_a_ttl_naming_no_event_is_a_problem(tmp_path: Path) -> None:
    _rule_project(tmp_path, """\
        from: customers
        all:
          - event: {table: orders, time: ordered_at, within: 7 days}
        ttl: {from_event: carts, after: 1 day}
        """)
    [problem] = _problems(tmp_path)
    assert "ttl.from_event: no event condition with a time column is named or reads 'carts' (known: orders)" in problem


def test_validate_names_the_rule_field_of_a_column_or_table_the_warehouse_lacks(rule_demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "demo"
    shutil.copytree(rule_demo, root)
    path = root / "segments" / "cart_abandoners.yml"
    path.write_text(path.read_text().replace("checked_out_at:", "checked_out:").replace("table: orders", "table: order"))
    problems = {(p.file, p.line, p.field): p.message for p in probe_segments(load_project(root)).problems}
    column_at = ("segments/cart_abandoners.yml", 13, "rules.all[0].event.where.checked_out")
    table_at = ("segments/cart_abandoners.yml", 17, "rules.all[0].event.not_followed_by.table")
    assert set(problems) == {column_at, table_at}
    assert problems[column_at] == ("the table 'carts' has no column 'checked_out'; did you mean 'checked_out_at'?"
                                   " (it has: cart_id, customer_id, value, created_at, checked_out_at)")
    missing_table = problems[table_at]
    assert missing_table.startswith("the warehouse has no table 'order' this login can read")


def test_validate_says_an_identifier_the_base_table_lacks_at_its_key(rule_demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "demo"
    shutil.copytree(rule_demo, root)
    path = root / "segments" / "churn_risk.yml"
    path.write_text(path.read_text().replace("phone: phone}", "phone: phone_number}"))
    result = syncer("-p", str(root), "validate")
    assert result.returncode == 2
    assert ("segments/churn_risk.yml:21: identifiers.phone: the table 'customers' has no column 'phone_number'"
            in result.stderr), result.stderr


# --- end to end ------------------------------------------------------------------------------------

@pytest.fixture
def sandbox():
    with Sandbox(port=0, meta_token=TOKEN) as sb:
        sb.meta.create_audience("1001", name="test")
        yield sb


def test_a_rule_segment_syncs_end_to_end_through_syncer_run(tmp_path: Path, sandbox: Sandbox) -> None:
    rows = [(i, f"M{i}@Example.com ", None, "US", None, None, True, i % 3 != 0) for i in range(1, 31)]
    write_customers(tmp_path / "warehouse.duckdb", rows)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE TABLE orders (customer_id BIGINT, amount DECIMAL(10,2), status VARCHAR)")
        con.execute("INSERT INTO orders SELECT i, i * 10, CASE WHEN i % 5 = 0 THEN 'cancelled' ELSE 'paid' END"
                    " FROM range(1, 31) t(i)")
    write_project(tmp_path, destination=meta_on(f"http://127.0.0.1:{_port(sandbox)}"))
    (tmp_path / "segments" / "buyers.yml").write_text(textwrap.dedent("""\
        member_key: customer_id
        identifiers: {email: email, phone: phone, country: country}
        consent: {ads: ads_consent}
        rules:
          from: customers
          where: {in_segment: true}
          all:
            - sum: {table: orders, column: amount, where: {status: {ne: cancelled}}, at_least: 100}
        """))
    assert syncer("-p", str(tmp_path), "validate").returncode == 0
    result = syncer("-p", str(tmp_path), "--json", "run")
    assert result.returncode == 0, result.stderr
    want = [i for i in range(10, 31) if i % 3 != 0 and i % 5 != 0]
    assert json.loads(result.stdout)["syncs"][0]["added"] == len(want)
    assert held_emails(sandbox) == expected(want)
