"""``identify_columns`` against ``identify_many``: every row of every corpus must come out identical.

The phone corpus is built from ``phonenumbers``' example numbers for every supported region and type,
in four formats, plus mutations, each with right, wrong, missing and aliased region hints. The fast
path must also take most clean rows, so a regression to "everything falls back" fails here too.
"""

from __future__ import annotations

import random

import duckdb
import phonenumbers
import pyarrow as pa
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from syncer.demo import sample_data
from syncer.identity.columnar import fallback_rows, identify_columns, to_identified
from syncer.identity.rows import UnsupportedKindError, identify_many

PLATFORMS = ("meta", "google", "google_data_manager", "plain")
FORMATS = (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL,
           PhoneNumberFormat.RFC3966)
TYPES = [getattr(PhoneNumberType, name) for name in dir(PhoneNumberType)
         if name.isupper() and name not in ("UNKNOWN", "FIXED_LINE_OR_MOBILE")]
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _assert_same(table: pa.Table, kinds, *, platform, region=None, region_column=None) -> pa.Table:
    result = identify_columns(table, kinds, platform=platform, region=region, region_column=region_column)
    expected = identify_many(table, kinds, platform=platform, region=region, region_column=region_column)
    assert result.num_rows == table.num_rows
    assert result.column_names == [*kinds, "reason", "dropped"]
    got = to_identified(result)
    bad = [(i, got[i], expected[i]) for i in range(len(got)) if got[i] != expected[i]]
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
    return result


def _mutations(text: str, rng: random.Random) -> list[str]:
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    out = []
    if digits:
        i = rng.choice(digits)
        out.append(text[:i] + str((int(text[i]) + rng.randint(1, 9)) % 10) + text[i + 1:])  # a digit changed
        out.append(text[:i] + text[i + 1:])  # a digit removed
        out.append(text[:i] + rng.choice("0123456789") + text[i:])  # a digit added
    return out


def _phone_corpus() -> tuple[list[object], list[object]]:
    """(phone values, region column values), deterministic, ~15k rows across every region."""
    rng = random.Random(20260301)
    phones: list[object] = []
    hints: list[object] = []
    for region in REGIONS:
        wrong = rng.choice(REGIONS)
        for num_type in TYPES:
            example = phonenumbers.example_number_for_type(region, num_type)
            if example is None:
                continue
            all_hints = (region, wrong, None, region.lower())
            for fmt in FORMATS:
                text = phonenumbers.format_number(example, fmt)
                variants = []  # mutations get one hint each, in turn; the clean text gets all four
                if fmt == PhoneNumberFormat.NATIONAL:
                    variants += _mutations(text, rng)
                if fmt == PhoneNumberFormat.E164:
                    variants += _mutations(text, rng) + ["00" + text[1:], text[1:]]
                    cc = str(example.country_code)
                    variants.append(f"+{cc} (0){text[1 + len(cc):]}")
                    if cc == "1":
                        variants.append("1" + text[2:])
                        variants.append("1-" + text[2:5] + "-" + text[5:])
                for hint in all_hints:
                    phones.append(text)
                    hints.append(hint)
                for variant in variants:
                    phones.append(variant)
                    hints.append(all_hints[len(phones) % 4])
    odd = ["", "   ", "\t", None, "+", "++1 650 253 0000", "+1 650 253 0000 ext. 12", "+1 650 253 0000 x12",
           "1-800-FLOWERS", "(650) 253-0000#", "+1\u00a0650 253 0000", "\u200b+1 650 253 0000",
           "+1 650\t253 0000", "+1 (650) 253-0000.", "+1 650 253 0000)", "(+1) 650 253 0000", "0 0 44 20 7946 0958",
           "+0 650 253 0000", "+999 123 456", "12", "123", "+12", "+123", "1" * 20, "+" + "4" * 20,
           "+44 7911 123456", "07911 123456", "7911 123456", "447911123456", "0447911123456",
           "+61 412 345 678", "0412 345 678", "+55 11 91234-5678", "011 91234 5678", "(11) 91234-5678",
           "+7 912 345 67 89", "8 912 345 67 89", "+39 06 6982 1234", "06 6982 1234", "+1 416 555 0123",
           "416 555 0123", "1 416 555 0123", "+1 441 295 1234", "+800 1234 5678", "+882 1234 5678",
           "+44 1624 123456", "+358 18 12345", "+262 269 12 34 56", "+590 590 12 34 56",
           "(650) 555-1212", "650.555.1212", "-650-555-1212-", ".(650) 555-1212", ")650 555 1212",
           "1-650-555-1212", "+1-650-555-1212", "001 650 555 1212", "011 44 20 7946 0958",
           # placeholders: one digit, runs, and the documented fictional ranges (and their neighbours)
           "0000000000", "5555555555", "+1 111 111 1111", "1234567890", "0123456789", "9876543210", "123456789",
           "+55 12 3456-7890", "+1 234 567 8901", "(212) 555-0100", "+1 212 555 0199", "+1 212 555 0200",
           "(800) 555-0100", "07700 900123", "+44 113 496 0123", "020 7946 0123", "020 7946 1123", "0491 570 006",
           "+61 2 5550 1234", "+61 491 570 007"]
    for text in odd:
        for hint in ("US", "GB", "AU", "CA", "BR", "RU", "uk", "United States", "Narnia", "", None):
            phones.append(text)
            hints.append(hint)
    for number in (16505551212, 447911123456, 123, -5, 0):
        for hint in ("US", None):
            phones.append(number)
            hints.append(hint)
    return phones, hints


@pytest.fixture(scope="module")
def phone_table() -> pa.Table:
    phones, hints = _phone_corpus()
    text = [p if not isinstance(p, int) else str(p) for p in phones]
    return pa.table({"phone": pa.array(text, pa.string()), "country": pa.array(hints, pa.string())})


@pytest.mark.parametrize("platform", PLATFORMS)
def test_phone_corpus_matches_identify_many(phone_table, platform):
    # meta (digits) and plain (E.164) get every row; the Google sets hash plain's text, so a share will do.
    if platform.startswith("google"):
        phone_table = phone_table.take(list(range(platform == "google", phone_table.num_rows, 6)))
    result = _assert_same(phone_table, ["phone"], platform=platform, region_column="country")
    assert fallback_rows(result) < 0.8 * phone_table.num_rows  # most mutations are invalid, so fall back


@pytest.mark.parametrize("fmt", [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL])
def test_example_numbers_take_the_fast_path(fmt):
    phones, hints = [], []
    for region in REGIONS:
        for num_type in TYPES:
            example = phonenumbers.example_number_for_type(region, num_type)
            if example is not None:
                phones.append(phonenumbers.format_number(example, fmt))
                hints.append(region)
    table = pa.table({"phone": phones, "country": hints})
    result = _assert_same(table, ["phone"], platform="google", region_column="country")
    share = 0.05 if fmt != PhoneNumberFormat.NATIONAL else 0.35
    assert fallback_rows(result) < share * table.num_rows


@pytest.mark.parametrize("region", ["GB", None])
def test_phone_corpus_with_a_default_region(phone_table, region):
    sample = phone_table.take(list(range(len(region or ""), phone_table.num_rows, 5)))
    _assert_same(sample, ["phone"], platform="meta", region=region, region_column="country")
    _assert_same(sample.drop_columns(["country"]), ["phone"], platform="plain", region=region)


def test_integer_phone_column_matches():
    table = pa.table({"phone": pa.array([16505551212, 447911123456, 123, None, -5, 6505551212], pa.int64())})
    _assert_same(table, ["phone"], platform="meta", region="US")
    _assert_same(table, ["phone"], platform="plain", region=None)


EMAILS = ["John_Smith@gmail.com", "  JOHN_smith@GMAIL.com\t", "cloudy.sanfrancisco+shopping@gmail.com",
          "Cloudy.SanFrancisco@GoogleMail.com", "user.name+NYC@Example.com", "+tag@gmail.com", "...@gmail.com",
          ".+x@gmail.com", "a.b+c+d@googlemail.com", "a@gmail.co", "a@b", "a@b.c", "a@b.co", "@b.co", "a@.co",
          "a@@b.co", "a b@c.co", "a@b..co", "a@b.co.", "ÄBC@x.com", "äbc@x.com", "İ@x.com", "a@xn--p1ai.ru",
          "a@bü.de", "\u200ba@b.co", "a@b.co\u200b", "\u00a0a@b.co", "a@b.co\x1c", "\x1fa@b.co", "", "   ", None,
          "\n\t", "A@B.CO", "x@y.z1", "x@y.\u00e91", "a\tb@c.co", "ǅ@x.com", "ﬀ@x.com", "K@x.com",
          # malformed: lengths, URI and header forms, invisible and control characters, bad labels
          "a" * 300 + "@example.com", "a" * 64 + "@x.com", "a" * 65 + "@x.com", "mailto:x@y.com", "<x@y.com>",
          "jo\u200bhn@example.com", "jo\u00adhn@example.com", "jo\x00hn@example.com", "user@-example.com",
          "user@example-.com", ".dot@example.com", "dot.@example.com", "do..t@x.com", "a--b@x.com", "a@a-b.com",
          "a@b.c-d", "a@b.1c", "a@b.c1", "user@example.123", "user@1.2.3.4", "a@xn--zz.com", "a@xn--bcher-kva.de",
          "a@ab--cd.com", "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com", "a@" + ("b" * 60 + ".") * 4 + "com",
          "a@" + ("b" * 62 + ".") * 4 + "com", '"a"@x.com', "a@b_c.com",
          # Unicode forms: full-width, an IDN domain, an ideographic full stop
          "ｊｏｈｎ@ｅｘａｍｐｌｅ.ｃｏｍ", "Jörg@Bücher.DE", "a@例え。テスト", "a@bü\u200bcher.de",
          # placeholders
          "test@test.com", "noreply@shop.com", "No-Reply@Shop.com", "x@shop.test", "x@shop.localhost",
          "x@shop.invalid", "x@shop.example", "noreply+1@shop.com", "no.reply@gmail.com"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_emails_match_identify_many(platform):
    table = pa.table({"email": pa.array(EMAILS * 3, pa.string())})
    _assert_same(table, ["email"], platform=platform, region=None)


def _mixed_table(phone_table: pa.Table, rows: int = 3000) -> pa.Table:
    rng = random.Random(7)
    picks = [rng.randrange(phone_table.num_rows) for _ in range(rows)]
    sub = phone_table.take(picks)
    emails = [rng.choice(EMAILS) if rng.random() < 0.3 else f"member{i}@Example.com" for i in range(rows)]
    first = [rng.choice(["Zoë", "  Mary ", "", None, "O'Brien", "123"]) for _ in range(rows)]
    postal = [rng.choice(["94045", "94303-5300", "SW1A 1AA", "", None, "1234", "wc2h  8lg"]) for _ in range(rows)]
    country = [rng.choice(["US", "gb", "United Kingdom", "", None, "Narnia", "FR"]) for _ in range(rows)]
    return pa.table({"email": emails, "phone": sub.column("phone"), "country": country,
                     "region": sub.column("country"), "first_name": first, "postal_code": postal})


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("kinds", [["email", "phone"], ["phone", "email"]])
def test_email_and_phone_rows_match(phone_table, platform, kinds):
    _assert_same(_mixed_table(phone_table), kinds, platform=platform, region="US", region_column="region")


@pytest.mark.parametrize("platform", ["meta", "google", "google_data_manager", "plain"])
def test_other_kinds_fall_back_and_still_match(phone_table, platform):
    table = _mixed_table(phone_table, 800)
    kinds = ["email", "phone", "first_name", "postal_code", "country"]
    result = _assert_same(table, kinds, platform=platform, region=None, region_column="region")
    assert fallback_rows(result) == table.num_rows


def test_columns_the_fast_path_cannot_read_are_decided_value_by_value():
    table = pa.table({
        "phone": pa.array([16505551212.0, None, 1.5, float("nan"), 1234567890.0, 442071838750.0], pa.float64()),
        "email": pa.array([b"a@b.co", None, b"\xff", b"x", b"test@test.com", b"A@B.CO"], pa.binary()),
        "country": pa.array(["US", "US", None, "GB", "GB", None]).dictionary_encode(),
    })
    for platform in PLATFORMS:
        for kinds in (["email", "phone"], ["phone", "email"]):
            _assert_same(table, kinds, platform=platform, region="US", region_column="country")
            _assert_same(table, kinds, platform=platform, region=None)


def test_missing_columns_and_record_batches():
    table = pa.table({"email": ["a@b.co", None, "bad"]})
    _assert_same(table, ["email", "phone"], platform="meta", region="US")
    batch = table.to_batches()[0]
    assert to_identified(identify_columns(batch, ["email"], platform="plain", region=None)) == \
        identify_many(batch, ["email"], platform="plain", region=None)


def test_errors_are_identify_manys():
    table = pa.table({"email": ["a@b.co"]})
    for kwargs, error in [
        (dict(kinds=[], platform="meta", region=None), ValueError),
        (dict(kinds=["email", "email"], platform="meta", region=None), ValueError),
        (dict(kinds=["email"], platform="nope", region=None), ValueError),
        (dict(kinds=["gender"], platform="google", region=None), UnsupportedKindError),
        (dict(kinds=["email"], platform="meta", region="Narnia"), ValueError),
        (dict(kinds=["email"], platform="meta", region=None, region_column="country"), ValueError),
    ]:
        with pytest.raises(error):
            identify_many(table, **kwargs)
        with pytest.raises(error):
            identify_columns(table, **kwargs)


def _clean(rows: int) -> pa.Table:
    """The benchmark's warehouse shape: bench/run_bench.py's emails and US phones."""
    ids = range(1, rows + 1)
    return pa.table({
        "email": [f"member{i}@example.com" for i in ids],
        "phone": [f"+1 415 {200 + (i // 10000) % 800:03d} {i % 10000:04d}" for i in ids],
        "country": ["US"] * rows,
    })


@pytest.mark.parametrize("platform", PLATFORMS)
def test_clean_rows_never_fall_back(platform):
    table = _clean(4000)
    result = _assert_same(table, ["email", "phone"], platform=platform, region=None, region_column="country")
    assert fallback_rows(result) == 0


@pytest.fixture(scope="module")
def customers(tmp_path_factory) -> pa.Table:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    sample_data.generate(path, 2_000)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql("SELECT email, phone, first_name, postal_code, country FROM customers").to_arrow_table()
    finally:
        con.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sample_warehouse_matches(customers, platform):
    result = _assert_same(customers, ["email", "phone"], platform=platform, region="US", region_column="country")
    assert fallback_rows(result) < 0.35 * customers.num_rows
    _assert_same(customers, ["phone", "email", "first_name", "postal_code", "country"], platform=platform,
                 region=None, region_column="country")


def _random_emails(rows: int) -> list[str]:
    """Deterministic ASCII values made of the pieces the email rules turn on, most shaped like addresses."""
    rng = random.Random(6531)
    local_parts = ["ann", "b", "x1", "no", "reply", "noreply", "test", "-", "_", "+tag", ".", "..", ":", "<", "\x00",
                   " ", "A", "a--b"]
    labels = ["example", "gmail", "shop", "a", "b-c", "b--c", "xn--p1ai", "xn--zz", "-a", "a-", "1", "42", "a_b", "",
              "b" * 63, "b" * 64]
    tlds = ["com", "co", "de", "c", "1", "1c", "c1", "test", "localhost", "invalid", "c-", "-c", "xn--p1ai", ""]
    out = []
    for _ in range(rows):
        local = "".join(rng.choice(local_parts) for _ in range(rng.randint(0, 3)))
        domain = ".".join([rng.choice(labels) for _ in range(rng.randint(0, 3))] + [rng.choice(tlds)])
        out.append(local + rng.choice(["@", "@", "@", "@", "@", "@@", ""]) + domain)
    return out


@pytest.mark.parametrize("platform", PLATFORMS)
def test_random_ascii_emails_match_identify_many(platform):
    values = _random_emails(6000)
    result = _assert_same(pa.table({"email": values}), ["email"], platform=platform, region=None)
    assert fallback_rows(result) < 0.5 * len(values)  # the fast path decides most of them
