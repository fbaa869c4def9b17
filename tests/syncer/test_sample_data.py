"""The sample warehouse: deterministic, messy where it should be, and the demo segments on it."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import phonenumbers
import pytest

from syncer.demo import sample_data as sd

SEGMENT_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo" / "segments"
SEGMENT_COLUMNS = ["customer_id", "email", "phone", "first_name", "last_name", "country", "postal_code",
                   "city", "state", "ads_consent", "email_consent", "sms_consent"]
FIXED_NOW = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """2,000 customers generated relative to the current time, so now() in the segment SQL agrees."""
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    sd.generate(path, 2_000)
    return path


@pytest.fixture()
def con(warehouse):
    connection = duckdb.connect(str(warehouse), read_only=True)
    yield connection
    connection.close()


def _rows(con, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def _one(con, sql: str):
    return con.execute(sql).fetchone()[0]


def _differences(a: Path, b: Path) -> dict[str, int]:
    """Rows in one file and not the other, per table (0 everywhere = identical content)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    out = {}
    for table in sd.TABLES:
        out[table] = _one(con, f"SELECT count(*) FROM (SELECT * FROM a.{table} EXCEPT ALL SELECT * FROM b.{table})") + \
            _one(con, f"SELECT count(*) FROM (SELECT * FROM b.{table} EXCEPT ALL SELECT * FROM a.{table})")
    con.close()
    return out


def _segment(con, name: str) -> tuple[list[str], list[tuple]]:
    result = con.execute((SEGMENT_DIR / f"{name}.sql").read_text())
    return [d[0] for d in result.description], result.fetchall()


# --- generate -------------------------------------------------------------------------------

def test_same_seed_gives_identical_data_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    counts_a = sd.generate(a, 1_500, seed=3, now=FIXED_NOW)
    counts_b = sd.generate(b, 1_500, seed=3, now=FIXED_NOW)
    sd.generate(c, 1_500, seed=4, now=FIXED_NOW)
    assert counts_a == counts_b
    assert set(_differences(a, b).values()) == {0}
    assert all(diff > 0 for diff in _differences(a, c).values())


def test_counts_and_schema(warehouse, con):
    counts = {t: _one(con, f"SELECT count(*) FROM {t}") for t in sd.TABLES}
    assert counts["customers"] == 2_000
    assert counts["orders"] > 2_000 and counts["page_views"] > counts["customers"] and counts["conversions"] > 0
    types = dict(_rows(con, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'customers'"))
    assert types["customer_id"] == "BIGINT" and types["date_of_birth"] == "DATE"
    assert types["ads_consent"] == "BOOLEAN" and types["created_at"] == "TIMESTAMP"
    assert _one(con, "SELECT data_type FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'amount'") \
        == "DECIMAL(10,2)"
    assert _one(con, "SELECT count(*) - count(DISTINCT customer_id) FROM customers") == 0
    # every timestamp is in the past, activity within ~180 days, orders after sign-up
    assert _one(con, "SELECT count(*) FROM orders WHERE ordered_at > now() AT TIME ZONE 'UTC'") == 0
    assert _one(con, "SELECT min(ordered_at) FROM orders") > datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=181)
    assert _one(con, """SELECT count(*) FROM orders o JOIN customers c USING (customer_id)
                        WHERE o.ordered_at < c.created_at""") == 0
    ids = [r[0] for r in _rows(con, "SELECT conversion_id FROM conversions ORDER BY converted_at, conversion_id")]
    assert ids == sorted(ids), "conversion ids increase with time"


def test_generate_replaces_the_file(tmp_path):
    path = tmp_path / "w.duckdb"
    sd.generate(path, 300, now=FIXED_NOW)
    Path(f"{path}.wal").write_bytes(b"stale")
    counts = sd.generate(path, 200, now=FIXED_NOW)
    assert counts["customers"] == 200 and not Path(f"{path}.wal").exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert _one(con, "SELECT count(*) FROM customers") == 200
    assert [p.name for p in tmp_path.iterdir()] == ["w.duckdb"]


def test_emails_are_messy_like_a_crm(con):
    emails = [r[0] for r in _rows(con, "SELECT email FROM customers")]
    present = [e for e in emails if e is not None]
    assert len(present) < len(emails), "some emails are NULL"
    assert any(e != e.strip() for e in present), "stray spaces"
    assert any(e.strip() != e.strip().lower() for e in present), "stray upper case"
    invalid = [e for e in present if "@" not in e or e.strip() in ("", "n/a", "none")]
    assert 0 < len(invalid) < 0.05 * len(emails)
    valid = [e.strip().lower() for e in present if "@" in e and "." in e.split("@")[-1] and "," not in e]
    assert len(valid) > 0.9 * len(emails)
    assert len(set(valid)) == len(valid), "valid emails are unique after trim + lower case"


def test_phones_mix_countries_formats_and_mostly_validate(con):
    rows = _rows(con, "SELECT phone, country FROM customers")
    assert any(phone is None for phone, _ in rows)
    valid_regions, valid, invalid, present = set(), 0, 0, 0
    for phone, country in rows:
        if phone is None:
            continue
        present += 1
        region = {"UK": "GB"}.get((country or "").strip().upper(), (country or "").strip().upper()) or "US"
        try:
            number = phonenumbers.parse(phone, region)
            ok = phonenumbers.is_valid_number(number)
        except phonenumbers.NumberParseException:
            ok = False
        if ok:
            valid += 1
            valid_regions.add(phonenumbers.region_code_for_number(number))
        else:
            invalid += 1
    assert valid / present >= 0.9
    assert invalid > 0, "some deliberately invalid phones"
    assert {"US", "GB", "DE", "FR", "BR", "IN", "AU", "CA"} <= valid_regions
    phones = {phone for phone, _ in rows if phone}
    assert any(p.startswith("+") for p in phones) and any(p.startswith("(") for p in phones)
    assert any(p.startswith("00") for p in phones) and any(p[:1].isdigit() for p in phones)


def test_names_places_and_consent_are_messy(con):
    names = [r[0] for r in _rows(con, "SELECT first_name || ' ' || last_name FROM customers WHERE first_name IS NOT NULL AND last_name IS NOT NULL")]
    assert any(any(ord(ch) > 127 for ch in n) for n in names), "accents"
    assert any(n.isupper() for n in names) and any(n != n.strip() or "  " in n for n in names)
    countries = {r[0] for r in _rows(con, "SELECT DISTINCT country FROM customers")}
    assert {"US", "GB", "DE", "FR", "BR", "IN", "AU", "CA"} <= countries
    assert "" in countries and any(c and c.islower() for c in countries)
    postal = [r[0] for r in _rows(con, "SELECT postal_code FROM customers WHERE upper(trim(country)) = 'US' AND postal_code IS NOT NULL")]
    assert any(len(p) == 10 and p[5] == "-" for p in postal), "ZIP+4"
    for column in ("ads_consent", "email_consent", "sms_consent"):
        values = {r[0] for r in _rows(con, f"SELECT DISTINCT {column} FROM customers")}
        assert values == {True, False, None}, column
    assert {r[0] for r in _rows(con, "SELECT DISTINCT gender FROM customers")} == {"M", "F", None}


# --- demo segments --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(sd.SEGMENTS))
def test_segment_returns_one_row_per_live_customer(con, name):
    columns, rows = _segment(con, name)
    assert columns == SEGMENT_COLUMNS
    ids = [r[0] for r in rows]
    assert len(ids) > 10 and len(ids) == len(set(ids))
    assert None not in ids
    deleted = {r[0] for r in _rows(con, "SELECT customer_id FROM customers WHERE deleted_at IS NOT NULL")}
    assert deleted and not deleted & set(ids)
    assert set(ids) == sd.segment_members(con, name), "the .sql file and sample_data.SEGMENTS agree"


def test_segment_files_have_a_comment_header():
    for name in sd.SEGMENTS:
        assert (SEGMENT_DIR / f"{name}.sql").read_text().startswith("-- ")


def test_segment_sizes_are_plausible(con):
    size = {name: len(sd.segment_members(con, name)) for name in sd.SEGMENTS}
    assert 0.01 <= size["cart_abandoners"] / 2_000 <= 0.04
    assert 0.06 <= size["high_value"] / 2_000 <= 0.15
    assert 0.05 <= size["churn_risk"] / 2_000 <= 0.2
    assert 0.05 <= size["recent_purchasers"] / 2_000 <= 0.2


def test_cart_abandoners_have_an_open_recent_cart_and_no_later_order(con):
    _, rows = _segment(con, "cart_abandoners")
    ids = [r[0] for r in rows]
    con.execute("CREATE TEMP TABLE ab AS SELECT unnest(?::BIGINT[]) AS customer_id", [ids])
    assert _one(con, """
        SELECT count(*) FROM ab WHERE NOT EXISTS (
            SELECT 1 FROM carts ca WHERE ca.customer_id = ab.customer_id AND ca.checked_out_at IS NULL
              AND ca.created_at >= (now() AT TIME ZONE 'UTC') - INTERVAL 24 HOUR)""") == 0
    assert _one(con, """
        SELECT count(*) FROM ab JOIN orders o USING (customer_id)
        WHERE o.status <> 'cancelled' AND o.ordered_at >= (
            SELECT max(created_at) FROM carts ca WHERE ca.customer_id = ab.customer_id AND ca.checked_out_at IS NULL)""") == 0
    # carts that were checked out, or a day old, do not make anyone an abandoner
    assert _one(con, """SELECT count(*) FROM carts WHERE customer_id IS NULL AND checked_out_at IS NULL""") > 0


def test_high_value_and_churn_rules(con):
    _, hv = _segment(con, "high_value")
    _, churn = _segment(con, "churn_risk")
    ltv = dict(_rows(con, "SELECT customer_id, sum(amount) FROM orders WHERE status IN ('completed','shipped','pending') GROUP BY 1"))
    assert all(ltv[r[0]] >= sd.HIGH_VALUE_THRESHOLD for r in hv)
    last = dict(_rows(con, "SELECT customer_id, max(ordered_at) FROM orders WHERE status <> 'cancelled' GROUP BY 1"))
    cutoff = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=90)
    assert all(last[r[0]] < cutoff for r in churn)


# --- mutate and add_conversion ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mutated(tmp_path_factory):
    base = tmp_path_factory.mktemp("mut")
    original, first, second = base / "orig.duckdb", base / "m1.duckdb", base / "m2.duckdb"
    sd.generate(original, 20_000)
    shutil.copy(original, first)
    shutil.copy(original, second)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    done = sd.mutate(first, 1.0, now=now)
    again = sd.mutate(second, 1.0, now=now)
    return original, first, second, done, again


def test_mutate_moves_each_segment_both_ways(mutated):
    original, first, _, done, _ = mutated
    assert 190 <= done["customers_inserted"] <= 200  # 1% of the live (not soft-deleted) customers
    assert done["emails_changed"] > 0 and done["consents_revoked"] > 0 and done["customers_deleted"] > 0
    with duckdb.connect(str(original), read_only=True) as a, duckdb.connect(str(first), read_only=True) as b:
        for name in sd.SEGMENTS:
            before, after = sd.segment_members(a, name), sd.segment_members(b, name)
            added, removed = len(after - before), len(before - after)
            assert added >= 1 and removed >= 1, name
            assert added <= 0.06 * len(before) and removed <= 0.06 * len(before), (name, added, removed, len(before))
        assert _one(b, "SELECT count(*) FROM customers") == 20_000 + done["customers_inserted"] - done["customers_deleted"]
        emails = [r[0] for r in _rows(b, "SELECT lower(trim(email)) FROM customers WHERE email LIKE '%_@_%._%'")]
        assert len(emails) == len(set(emails))
        ids = [r[0] for r in _rows(b, "SELECT conversion_id FROM conversions")]
        assert len(ids) == len(set(ids))


def test_mutate_is_deterministic(mutated):
    _, first, second, done, again = mutated
    assert done == again
    assert set(_differences(first, second).values()) == {0}


def test_mutate_twice_picks_different_customers(tmp_path):
    path = tmp_path / "w.duckdb"
    sd.generate(path, 3_000, now=FIXED_NOW)
    sd.mutate(path, 2.0, now=FIXED_NOW)
    with duckdb.connect(str(path), read_only=True) as con:
        first = {r[0] for r in _rows(con, "SELECT customer_id FROM customers WHERE updated_at = ?", [FIXED_NOW])}
    sd.mutate(path, 2.0, now=FIXED_NOW + timedelta(minutes=5))
    with duckdb.connect(str(path), read_only=True) as con:
        second = {r[0] for r in _rows(con, "SELECT customer_id FROM customers WHERE updated_at = ?", [FIXED_NOW + timedelta(minutes=5)])}
    assert first and second and len(first & second) < len(second) / 2


def test_add_conversion(tmp_path, warehouse):
    path = tmp_path / "w.duckdb"
    shutil.copy(warehouse, path)
    with duckdb.connect(str(path), read_only=True) as con:
        top = _one(con, "SELECT max(conversion_id) FROM conversions")
        abandoner = min(sd.segment_members(con, "cart_abandoners"))
    first = sd.add_conversion(path, 42, "signup")
    assert first == top + 1
    second = sd.add_conversion(path, abandoner, with_order=True)
    assert second == first + 1
    with duckdb.connect(str(path), read_only=True) as con:
        assert _rows(con, f"SELECT customer_id, type FROM conversions WHERE conversion_id = {second}") == [(abandoner, "purchase")]
        assert abandoner not in sd.segment_members(con, "cart_abandoners")
        assert abandoner in sd.segment_members(con, "recent_purchasers")
    with pytest.raises(ValueError):
        sd.add_conversion(path, 1, "refund")
