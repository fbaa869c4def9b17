"""Identifiers as strict as the platforms: malformed emails and placeholder values never reach a platform.

Every bad value is checked through both paths a segment can take: the per-row rules
(``encode`` and ``identify_many``) and the columnar fast path (``identify_columns``), which must
drop it with the same reason and leave its identifier column empty. Expected digests were
computed outside the code under test with ``printf '%s' VALUE | sha256sum``.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from syncer.identity.columnar import fallback_rows, identify_columns, to_identified
from syncer.identity.rows import REASONS, InvalidIdentifier, encode, identify_many, normalise

PLATFORMS = ("meta", "google", "google_data_manager", "plain")

BAD_EMAILS = [
    ("a" * 300 + "@example.com", "invalid_email"),  # local part over 64 octets
    ("a" * 65 + "@example.com", "invalid_email"),
    ("mailto:x@y.com", "invalid_email"),
    ("<x@y.com>", "invalid_email"),
    ("John <x@y.com>", "invalid_email"),
    ("jo\u200bhn@example.com", "invalid_email"),  # zero-width space inside
    ("john@exam\u200bple.com", "invalid_email"),
    ("john@bü\u200bcher.de", "invalid_email"),  # UTS #46 alone would silently drop it
    ("jo\u00adhn@example.com", "invalid_email"),  # soft hyphen: invisible
    ("jo\x00hn@example.com", "invalid_email"),  # NUL byte
    ("john@example.com\x00", "invalid_email"),
    ("user@-example.com", "invalid_email"),
    ("user@example-.com", "invalid_email"),
    ("user@exa_mple.com", "invalid_email"),
    (".dot@example.com", "invalid_email"),
    ("dot.@example.com", "invalid_email"),
    ("do..t@example.com", "invalid_email"),
    ('"john"@example.com', "invalid_email"),
    ("user@example.123", "invalid_email"),  # all-digit top-level label
    ("user@192.168.0.1", "invalid_email"),
    ("user@[192.168.0.1]", "invalid_email"),
    ("a@" + "b" * 64 + ".com", "invalid_email"),  # a label over 63
    ("a@" + ("b" * 60 + ".") * 4 + "com", "valid"),  # 247: long but fine (the fast path defers it)
    ("a@" + ("b" * 62 + ".") * 4 + "com", "invalid_email"),  # domain over 253
    ("a" * 64 + "@" + ("b" * 60 + ".") * 3 + "b" * 6 + ".com", "invalid_email"),  # address over 254
    ("a@xn--zz.com", "invalid_email"),  # not a valid A-label
    ("a@ab--cd.com", "invalid_email"),  # reserved label form
    ("test@test.com", "placeholder"),
    ("Test@Test.com", "placeholder"),
    ("noreply@shop.com", "placeholder"),
    ("No-Reply@Shop.com", "placeholder"),
    ("do_not_reply@shop.co.uk", "placeholder"),
    ("member1@shop.test", "placeholder"),  # RFC 2606 reserved TLDs
    ("member1@shop.example", "placeholder"),
    ("member1@shop.invalid", "placeholder"),
    ("member1@shop.localhost", "placeholder"),
]


def _columnar(values: list[object], kind: str, platform: str, regions: list[object] | None = None):
    table = {kind: pa.array(values, pa.string())}
    if regions is not None:
        table["country"] = pa.array(regions, pa.string())
    result = identify_columns(pa.table(table), [kind], platform=platform, region=None,
                              region_column="country" if regions is not None else None)
    return result, to_identified(result)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_bad_emails_are_dropped_with_their_reason_by_both_paths(platform):
    bad = [(raw, reason) for raw, reason in BAD_EMAILS if reason != "valid"]
    for raw, reason in bad:
        with pytest.raises(InvalidIdentifier) as info:
            encode("email", raw, platform=platform)
        assert (raw, info.value.reason) == (raw, reason)
        assert raw not in str(info.value)
    raws = [raw for raw, _ in bad]
    rows = identify_many([{"email": raw} for raw in raws], ["email"], platform=platform, region=None)
    result, columns = _columnar(raws, "email", platform)
    assert result.column("email").null_count == len(raws)  # nothing reaches the identifiers
    for (raw, reason), by_row, by_column in zip(bad, rows, columns):
        assert by_row.identifiers == {} and by_row.dropped == {"email": reason} and by_row.reason == reason, raw
        assert by_column == by_row, raw


def test_a_long_but_valid_address_is_kept_by_both_paths():
    raw = "a@" + ("b" * 60 + ".") * 4 + "com"
    assert normalise("email", raw, platform="meta") == raw
    _, [by_column] = _columnar([raw], "email", "plain")
    assert by_column.identifiers == {"email": raw}


def test_placeholder_emails_are_decided_on_the_fast_path():
    raws = ["test@test.com", "noreply@shop.com", "member1@shop.test", "member2@shop.localhost",
            "member3@example.com", "member4@shop.com"]
    result, columns = _columnar(raws, "email", "meta")
    assert fallback_rows(result) == 0
    assert [ident.reason for ident in columns] == ["placeholder"] * 4 + [None, None]


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("Jörg@Bücher.DE", "jörg@bücher.de", "7caabf763674bd1027611ab39c3dc6ed917697a7c4be9c24a6a0c6b3eda5135b"),
        ("ｊｏｈｎ@ｅｘａｍｐｌｅ.ｃｏｍ", "john@example.com",
         "855f96e983f1f8e8be944692b6f719fd54329826cb62e98015efee8e2e071dd4"),
        ("ＪＯＨＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "john@example.com",
         "855f96e983f1f8e8be944692b6f719fd54329826cb62e98015efee8e2e071dd4"),
        # the ideographic full stop separates labels (UTS #46); the domain is hashed in Unicode
        ("a@例え。テスト", "a@例え.テスト", "e5cca8a7dee6088c548dfc1281d4e92fb25e94e615be9db2bb2f30d73c905cb6"),
    ],
)
@pytest.mark.parametrize("platform", ["meta", "google"])
def test_unicode_and_full_width_emails_normalise_to_the_address_the_person_owns(raw, normalised, digest, platform):
    assert normalise("email", raw, platform=platform) == normalised
    assert encode("email", raw, platform=platform) == digest
    _, [by_column] = _columnar([raw], "email", platform)
    assert by_column.identifiers == {"email": digest}


def test_an_address_written_in_punycode_is_kept_as_written():
    assert normalise("email", "Jörg@XN--Bcher-KVA.de", platform="plain") == "jörg@xn--bcher-kva.de"
    _, [by_column] = _columnar(["a@xn--bcher-kva.de"], "email", "plain")
    assert by_column.identifiers == {"email": "a@xn--bcher-kva.de"}


# --- phones ------------------------------------------------------------------------------------

PLACEHOLDER_PHONES = [  # raw, region
    ("0000000000", "US"), ("0000000000", "GB"), ("5555555555", "US"), ("+1 111 111 1111", None),  # one digit
    ("1234567890", "BR"), ("1234567890", "GB"), ("1234567890", "IN"), ("1234567890", "US"),  # ascending
    ("0123456789", "GB"), ("123456789", "GB"), ("+1 234 567 8901", None), ("090-1234-5678", "JP"),
    ("9876543210", "IN"), ("0987654321", "GB"),  # descending
    ("(212) 555-0100", "US"), ("+1 416 555 0199", None), ("1-650-555-0123", "US"),  # NANP fictional
    ("07700 900000", "GB"), ("07700 900999", "GB"), ("+44 20 7946 0958", None), ("020 7946 0000", "GB"),  # Ofcom
    ("0113 496 0500", "GB"), ("0161 496 0999", "GB"), ("0191 498 0123", "GB"), ("028 9649 6500", "GB"),
    ("029 2018 0123", "GB"), ("01632 960123", "GB"), ("0808 157 0123", "GB"), ("03069 990123", "GB"),
    ("0491 570 006", "AU"), ("+61 491 579 760", None), ("(02) 5550 1234", "AU"), ("(08) 7010 1270", "AU"),  # ACMA
]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_placeholder_phones_are_dropped_by_both_paths(platform):
    for raw, region in PLACEHOLDER_PHONES:
        with pytest.raises(InvalidIdentifier) as info:
            encode("phone", raw, platform=platform, region=region)
        assert (raw, region, info.value.reason) == (raw, region, "placeholder")
    raws = [raw for raw, _ in PLACEHOLDER_PHONES]
    regions = [region for _, region in PLACEHOLDER_PHONES]
    rows = identify_many(pa.table({"phone": raws, "country": pa.array(regions, pa.string())}), ["phone"],
                         platform=platform, region=None, region_column="country")
    result, columns = _columnar(raws, "phone", platform, regions)
    assert result.column("phone").null_count == len(raws)
    for raw, by_row, by_column in zip(raws, rows, columns):
        assert by_row.identifiers == {} and by_row.reason == "placeholder", raw
        assert by_column == by_row, raw


def test_valid_placeholder_phones_are_decided_on_the_fast_path():
    raws = ["+1 212 555 0100", "+44 20 7946 0958", "+44 113 496 0123", "+61 491 570 006", "+91 98765 43210",
            "+55 12 3456-7890", "+1 212 736 5000"]
    result, columns = _columnar(raws, "phone", "plain", [None] * len(raws))
    assert fallback_rows(result) == 0
    assert [ident.reason for ident in columns] == ["placeholder"] * 6 + [None]


REAL_PHONES = [  # raw, region, E.164: ordinary numbers, including ones next to the placeholder ranges
    ("(21) 99832-4417", "BR", "+5521998324417"), ("(11) 3456-7812", "BR", "+551134567812"),
    ("+55 11 91234-5678", None, "+5511912345678"),
    ("07911 123456", "GB", "+447911123456"), ("020 7183 8750", "GB", "+442071838750"),
    ("020 7946 1000", "GB", "+442079461000"), ("0161 496 1234", "GB", "+441614961234"),
    ("98201 47365", "IN", "+919820147365"), ("022 2345 6719", "IN", "+912223456719"),
    ("(650) 253-0000", "US", "+16502530000"), ("(212) 736-5000", "US", "+12127365000"),
    ("(212) 555-0200", "US", "+12125550200"), ("(212) 555-0099", "US", "+12125550099"),
    ("(650) 555-1212", "US", "+16505551212"),  # Meta's published example
    ("(800) 555-0100", "US", "+18005550100"),  # toll-free: Google's published example
    ("1-234-567-8910", "US", "+12345678910"),  # Meta's formatting example: not a run
    ("0491 570 007", "AU", "+61491570007"),
]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_real_numbers_next_to_the_placeholders_still_pass(platform):
    for raw, region, e164 in REAL_PHONES:
        expected = e164[1:] if platform == "meta" else e164
        assert normalise("phone", raw, platform=platform, region=region) == expected
    raws = [raw for raw, _, _ in REAL_PHONES]
    _, columns = _columnar(raws, "phone", platform, [region for _, region, _ in REAL_PHONES])
    assert [ident.identifiers for ident in columns] == [
        {"phone": encode("phone", raw, platform=platform, region=region)} for raw, region, _ in REAL_PHONES]


def test_a_number_outside_the_ranges_keeps_its_old_reason():
    with pytest.raises(InvalidIdentifier) as info:
        encode("phone", "07700 901000", platform="meta", region="GB")  # next to Ofcom's mobile range
    assert info.value.reason == "invalid_phone"


def test_placeholder_is_a_reason_code():
    assert "placeholder" in REASONS
