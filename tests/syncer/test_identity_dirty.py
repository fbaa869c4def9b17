"""Dirty data through the columnar path: the same answers as the per-row rules, decided without them.

Warehouses hold test numbers (``+1 555 ...``, plausible and invalid), extensions, letters,
Unicode digits and whitespace, leading zeros, numbers too short or too long, and the same values
many times. ``identify_columns`` must give exactly ``identify_many``'s answer for each of them
(compared value by value on a large random sample), and must decide the common ones itself, so
that dirty data costs what clean data costs.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from syncer.identity.columnar import fallback_rows, identify_columns, to_identified
from syncer.identity.distinct import SAMPLE
from syncer.identity.phone_text import STRIP
from syncer.identity.rows import identify_many

PLATFORMS = ("meta", "google", "google_data_manager", "plain")
_WIDE = str.maketrans("+0123456789", "＋０１２３４５６７８９")
_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")
_SPACES = [" ", "  ", "\t", "\u00a0", "\u2003", "\u3000", "\u200b", "\x1c", "\n", ""]
_EXTENSIONS = [" ext. 12", " x123", "#45", ";ext=7", " extension 8", " EXT 1234567", " x12345678", " ext",
               "x", " #", " X 9 "]
_REGIONS = ["US", "US", "GB", "CA", None, "DE", "AU", "Narnia", "fr"]


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(k))


def _phone(rng: random.Random) -> str:
    """One value shaped like the dirt warehouses hold; many are variations on a +1 555 test number."""
    base = rng.choice([
        f"+1 555 {_digits(rng, 3)} {_digits(rng, 4)}",
        f"(555) {_digits(rng, 3)}-{_digits(rng, 4)}",
        f"1-555-{_digits(rng, 3)}-{_digits(rng, 4)}",
        f"+1 {rng.choice(['212', '415', '800', '441', '876'])} {_digits(rng, 3)} {_digits(rng, 4)}",
        f"+{_digits(rng, rng.randint(0, 20))}",
        _digits(rng, rng.randint(0, 20)),
        f"0{_digits(rng, rng.randint(1, 12))}",
        f"00{_digits(rng, rng.randint(1, 14))}",
        f"+0{_digits(rng, 10)}",
        f"+44 7{_digits(rng, 9)}",
        f"+49 {_digits(rng, rng.randint(3, 13))}",
        f"+1 555 CALL {_digits(rng, 3)}",
        "1-800-FLOWERS",
        f"+1 212 555 01{_digits(rng, 2)}",
        "0000000000",
        "+1 111 111 1111",
    ])
    twist = rng.random()
    if twist < 0.15:
        base += rng.choice(_EXTENSIONS)
    elif twist < 0.3:
        base = base.translate(rng.choice([_WIDE, _ARABIC, _PERSIAN, _DEVANAGARI]))
    elif twist < 0.4:
        base = base.replace(" ", rng.choice(_SPACES))
    if rng.random() < 0.2:
        base = rng.choice(_SPACES) + base + rng.choice(_SPACES)
    return base


def _email(rng: random.Random, i: int) -> str:
    local = rng.choice([f"member{i}", f"Member.{i}", f"ｍｅｍｂｅｒ{i}", f"jörg{i}", f"δοκιμή{i}", f"a\u200bb{i}", "",
                        f"x{i}+tag", "noreply", f"İ{i}", f"ﬀ{i}", f"K{i}"])
    domain = rng.choice(["example.com", "Example.COM", "gmail.com", "ｅｘａｍｐｌｅ.ｃｏｍ", "bücher.de", "παράδειγμα.δοκιμή",
                         "例え。テスト", "exa mple.com", "b--c.com", "shop.test", "", "xn--bcher-kva.de"])
    at = rng.choice(["@", "@", "@", "@@", "＠", ""])
    value = local + at + domain
    if rng.random() < 0.3:
        value = rng.choice(_SPACES) + value + rng.choice(_SPACES)
    return value


@pytest.fixture(scope="module")
def dirty() -> pa.Table:
    rng = random.Random(16)
    rows = 12_000
    return pa.table({
        "email": [_email(rng, i) for i in range(rows)],
        "phone": [_phone(rng) for _ in range(rows)],
        "country": [rng.choice(_REGIONS) for _ in range(rows)],
    })


def _assert_same(table: pa.Table, kinds, **kwargs) -> pa.Table:
    result = identify_columns(table, kinds, **kwargs)
    got, expected = to_identified(result), identify_many(table, kinds, **kwargs)
    bad = [(i, got[i], expected[i]) for i in range(len(got)) if got[i] != expected[i]]
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
    return result


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dirty_phones_match_the_row_rules(dirty, platform):
    _assert_same(dirty.select(["phone", "country"]), ["phone"], platform=platform, region=None,
                 region_column="country")


@pytest.mark.parametrize("region", ["US", None])
def test_dirty_rows_match_the_row_rules(dirty, region):
    for platform in ("meta", "google_data_manager"):
        _assert_same(dirty, ["email", "phone"], platform=platform, region=region, region_column="country")
        _assert_same(dirty.drop_columns(["country"]), ["phone", "email"], platform=platform, region=region)


def test_test_numbers_are_refused_without_the_row_rules():
    rng = random.Random(555)
    phones = [f"+1 555 {_digits(rng, 3)} {_digits(rng, 4)}" for _ in range(3000)]
    phones += [f"(555) {_digits(rng, 3)}-{_digits(rng, 4)}" for _ in range(1000)]
    table = pa.table({"email": [f"member{i}@example.com" for i in range(4000)], "phone": phones,
                      "country": ["US"] * 4000})
    result = _assert_same(table, ["email", "phone"], platform="meta", region=None, region_column="country")
    assert fallback_rows(result) == 0
    assert set(result.column("dropped").to_pylist()) == {"phone:invalid_phone"}
    assert result.column("reason").null_count == 4000  # every member still goes, by email


def test_unusual_but_readable_phones_are_decided_without_the_row_rules():
    values = ["+1 650 253 0000 ext. 12", "+1 650 253 0000 x12", "+1 650 253 0000#7", "555-CALL-NOW",
              "1-800-FLOWERS", "＋１ ６５０ ２５３ ００００", "+١ ٦٥٠ ٢٥٣ ٠٠٠٠", "+1\u00a0650\u00a0253\u00a00000",
              "\u00a0(650) 253-0000\u3000", "+1 555 0100 1234 5678 9012", "+1 55", "+0 650 253 0000"]
    table = pa.table({"phone": values * 2, "country": ["US"] * len(values) + [None] * len(values)})
    result = _assert_same(table, ["phone"], platform="plain", region=None, region_column="country")
    assert fallback_rows(result) <= 4  # the two too-short or unknown-code values, with and without a region
    got = dict(zip(values, result.column("phone").to_pylist()))
    assert got["+1 650 253 0000 ext. 12"] == "+16502530000"
    assert got["＋１ ６５０ ２５３ ００００"] == "+16502530000"
    reasons = result.column("reason").to_pylist()
    assert reasons[values.index("555-CALL-NOW")] == "invalid_phone"
    assert reasons[len(values) + values.index("＋１ ６５０ ２５３ ００００")] == "phone_no_country"


def test_unicode_emails_that_fold_to_ascii_are_decided_without_the_row_rules():
    values = ["ｍｅｍｂｅｒ1@ｅｘａｍｐｌｅ.ｃｏｍ", "\u00a0ANNA.2@GMAIL.com\u00a0", "\u3000x@y.co", "ＴＥＳＴ@ｔｅｓｔ.ｃｏｍ",
              "ｍｅｍｂｅｒ＠ｅｘａｍｐｌｅ", "\u2003ab@c.co"]
    table = pa.table({"email": values})
    for platform in PLATFORMS:
        assert fallback_rows(_assert_same(table, ["email"], platform=platform, region=None)) == 0


def test_repeated_values_are_decided_once_and_joined_back():
    rng = random.Random(3)
    phones = [_phone(rng) for _ in range(60)]
    emails = [_email(rng, i) for i in range(40)]
    rows = 4 * SAMPLE + 1000  # large enough that the share of distinct values is sampled first
    table = pa.table({"email": [rng.choice(emails) for _ in range(rows)],
                      "phone": [rng.choice(phones) for _ in range(rows)],
                      "country": [rng.choice(_REGIONS) for _ in range(rows)]})
    _assert_same(table, ["email", "phone"], platform="meta", region="US", region_column="country")


def test_the_strip_set_is_what_str_strip_removes():
    assert set(STRIP) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
