"""Identity normalisation and hashing.

Every expected digest below is hard-coded. It was computed outside the code under test, with
``printf '%s' VALUE | sha256sum``, and where a platform publishes the digest (Meta's customer
information parameters page) it matches the published one.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from syncer.identity import rows as identity
from syncer.identity.rows import (
    IDENTIFIER_KINDS,
    PLATFORM_RULES,
    REASONS,
    Identified,
    InvalidIdentifier,
    UnsupportedKindError,
    encode,
    identify,
    identify_many,
    normalise,
    resolve_country,
    split_dob,
)

# --- golden cases from the platforms' own published examples -------------------------------------

# Meta, Conversions API "Customer Information Parameters": input, normalised form, expected SHA-256.
META_PUBLISHED = [
    ("email", "John_Smith@gmail.com", None, "john_smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("phone", "(650)555-1212", "US", "16505551212",
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("first_name", "Mary", None, "mary",
     "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("first_name", "Valéry", None, "valéry",
     "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
    ("first_name", "정", None, "정",
     "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
    ("date_of_birth", "2/16/1997", None, "19970216",
     "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"),
    ("country", "United States", None, "us",
     "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"),
]

# Meta's documented rules applied to the page's other examples (f for female, menlopark, ca, 94035)
# and to the Business Help Centre's phone examples; digests computed with sha256sum.
META_DOCUMENTED = [
    ("gender", "Female", None, "f", "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111"),
    ("city", "Menlo Park", None, "menlopark", "0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685"),
    ("state", "California", "US", "ca", "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126"),
    ("postal_code", "94035-1234", "US", "94035", "1794327a4d443904421f5ca1f3d72d0a62ba2f0770d80755ec2220fc0efb052e"),
    ("phone", "+44 844 412 4653", None, "448444124653",
     "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"),
    ("phone", "1-234-567-8910", "US", "12345678910",
     "63640264849a87c90356129d99ea165e37aa5fabc1fea46906df1a7ca50db492"),
    ("email", "  John_Smith@gmail.com\t", None, "john_smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    # "Valéry" typed with a combining accent (NFD) must hash like the published precomposed form.
    ("last_name", "Vale\u0301ry", None, "valéry",
     "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
]


@pytest.mark.parametrize(("kind", "raw", "region", "normalised", "digest"), META_PUBLISHED + META_DOCUMENTED)
def test_meta_matches_published_examples(kind, raw, region, normalised, digest):
    assert normalise(kind, raw, platform="meta", region=region) == normalised
    assert encode(kind, raw, platform="meta", region=region) == digest


# Google: Data Manager "Format user data" ((800)555-0100 -> +18005550100, the Gmail examples),
# google-ads 34.0.0 add_customer_match_user_list.py (+1 800 5550101, Alex/Quinn/US/94045, dana@),
# Google Ads Help hashed template (zoë, pérez).
GOOGLE_PUBLISHED = [
    ("phone", "(800)555-0100", "US", "+18005550100",
     "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"),
    ("phone", "+1 800 5550101", None, "+18005550101",
     "61d6c2976b5d92b1ad63073a12fddd26040cd980067d03a93dd1cc50f1a3ac68"),
    ("email", "dana@example.com", None, "dana@example.com",
     "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"),
    ("first_name", "Alex", None, "alex", "4135aa9dc1b842a653dea846903ddb95bfb8c5a10c504a7fa16e10bc31d1fdf0"),
    ("last_name", "Quinn", None, "quinn", "c512ca0c5c1e71be19f3356821e56732b5fb3ac894b0dbc5846d0b6920106fb3"),
    ("first_name", "Zoë", None, "zoë", "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450"),
    ("last_name", "Pérez", None, "pérez", "6654977d57dddd3c0329ca741b109ef6cd6430bedd00008aad213df25683d77f"),
    # Google Ads API keeps Gmail dots and +tags ("not required ... they'll still be accepted").
    ("email", "cloudy.sanfrancisco+shopping@gmail.com", None, "cloudy.sanfrancisco+shopping@gmail.com",
     "8dd4a9bf850242873c14976125edabc35096192b784626a5641a7d2de56e3c1e"),
]


@pytest.mark.parametrize(("kind", "raw", "region", "normalised", "digest"), GOOGLE_PUBLISHED)
def test_google_matches_published_examples(kind, raw, region, normalised, digest):
    assert normalise(kind, raw, platform="google", region=region) == normalised
    assert encode(kind, raw, platform="google", region=region) == digest


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com",
         "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com",
         "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac"),
        ("Cloudy.SanFrancisco@GoogleMail.com", "cloudysanfrancisco@googlemail.com",
         "332ed5427d17deb381928a719533e85046d68d7e45553abb805852b7d631fcb7"),
    ],
)
def test_google_data_manager_gmail_rule_matches_its_examples(raw, normalised, digest):
    assert normalise("email", raw, platform="google_data_manager") == normalised
    assert encode("email", raw, platform="google_data_manager") == digest


def test_gmail_dots_are_kept_for_meta_and_plain():
    raw = "Cloudy.SanFrancisco+shopping@gmail.com"
    assert normalise("email", raw, platform="meta") == "cloudy.sanfrancisco+shopping@gmail.com"
    assert encode("email", raw, platform="plain") == "cloudy.sanfrancisco+shopping@gmail.com"


def test_google_address_fields_pass_through_unhashed():
    assert encode("country", "us", platform="google") == "US"
    assert encode("country", "United Kingdom", platform="google") == "GB"
    assert encode("postal_code", " 94045 ", platform="google", region="US") == "94045"
    assert encode("postal_code", "94303-5300", platform="google", region="US") == "94303-5300"
    assert encode("postal_code", "943035300", platform="google", region="US") == "94303-5300"
    assert encode("postal_code", "wc2h  8lg", platform="google", region="GB") == "WC2H 8LG"


def test_split_dob_gives_metas_doby_dobm_dobd():
    assert split_dob("2/16/1997", hashed=False) == ("1997", "02", "16")
    assert split_dob(dt.date(1997, 2, 16)) == (
        "0985b889a1fe4f4e1fb925061ac6fb2247f10875f5fcbe63eec2ab55ed68970e",
        "a953f09a1b6b6725b81956e9ad0b1eb49e3ad40004c04307ef8af6246a054116",
        "b17ef6d19c7a5b1ee83b907c595526dcb1eb06db8227d650d5dda0a9f4ce8cd9",
    )


# --- phones across countries: Meta digits vs Google E.164 ------------------------------------------

# raw, segment region, E.164, sha256(E.164 without +) for Meta, sha256(E.164) for Google.
PHONES = [
    ("(650) 555-1212", "US", "+16505551212",
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
     "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"),
    ("16505551212", "US", "+16505551212",  # country code already present, no +
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
     "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"),
    (16505551212, "US", "+16505551212",  # BIGINT column
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
     "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"),
    ("07911 123456", "GB", "+447911123456",  # national trunk zero dropped
     "40b5c38342a9c584ec707e8679b003f8c779c6aaa138c976ef94e049cc05208f",
     "20b18ac9de7b3aad174961827d8e451c410af9aedfd1d699927f4b29b81aa1fa"),
    ("030 901820", "DE", "+4930901820",
     "c03f76216358b07b09a300613908002987efc1ae9a2ef2a85d57d5a971bf821a",
     "4db5829924ee5c466cbd9ac69b2a6af527f758614fa3b3aec8c89b16a709a678"),
    ("06 12 34 56 78", "FR", "+33612345678",
     "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661",
     "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8"),
    ("090-4217-3365", "JP", "+819042173365",
     "e6425c005667f7f1790fbf5c764ef189f6b8cc88ac51ff1ef11c3e50ec2b9897",
     "ea7ec5675d07944d933af9ba1025757420e1ff4fe5eff6585a3400ed5ff5d6a6"),
    ("0412 345 678", "AU", "+61412345678",
     "222e24d90b23ba2af558a2891bfa399f19a7eb9f33df34a7d6809b97c5a97246",
     "bc65da54a3ddbacfdc93a0400f0a2d78e41c2180c8255015e9616facfe56f58a"),
    ("(11) 91234-5678", "BR", "+5511912345678",
     "eeff2a7b3fdffa242c44700da8293d40c64a070956a3cdac36a4553dd4786704",
     "195563c1d879cb1564e2cdd6d89363ecb1f091ac0eeac094760f06139eae6077"),
    ("+91 98201 47365", "US", "+919820147365",  # explicit + beats the segment region
     "1a480a9bf261124b20a270a0fec01a4b21dd31baf87fddfc0665c76005848350",
     "4607836946ca367a5c08c641037f79f186d6759f9bc88f6b73a553150b219ca6"),
    ("0044 20 7183 8750", "US", "+442071838750",  # 00 prefix in a region whose IDD is 011
     "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417",
     "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d"),
    ("0044 20 7183 8750", None, "+442071838750",  # 00 prefix with no region at all
     "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417",
     "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d"),
    ("011 44 20 7183 8750", "US", "+442071838750",  # the US's own international prefix
     "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417",
     "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d"),
    ("+44 (0)20 7183 8750", None, "+442071838750",
     "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417",
     "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d"),
    ("+1 650 253 0000 ext. 123", None, "+16502530000",  # extension dropped
     "67d3cb9e9b1b64b913a5f2508beac167cfa7d3fb943f6a52e6767392d425a536",
     "3ad9f10d73829a714b1383221691d4dbf08484f3ceeae884f53053a1c7bb0a92"),
]


@pytest.mark.parametrize(("raw", "region", "e164", "meta_digest", "google_digest"), PHONES)
def test_phone_formats_differ_between_meta_and_google(raw, region, e164, meta_digest, google_digest):
    assert normalise("phone", raw, platform="meta", region=region) == e164[1:]
    assert normalise("phone", raw, platform="google", region=region) == e164
    assert encode("phone", raw, platform="plain", region=region) == e164
    assert encode("phone", raw, platform="meta", region=region) == meta_digest
    assert encode("phone", raw, platform="google", region=region) == google_digest
    assert meta_digest != google_digest


# --- invalid values: the right reason, and never the raw value ------------------------------------

INVALID = [
    ("email", "john.smith@", "meta", None, "invalid_email"),
    ("email", "john.smith.example.com", "google", None, "invalid_email"),
    ("email", "john@localhost", "meta", None, "invalid_email"),
    ("email", "john@@example.com", "plain", None, "invalid_email"),
    ("email", "john smith@example.com", "google_data_manager", None, "invalid_email"),
    ("email", "john@example.c", "meta", None, "invalid_email"),
    ("email", "+tag@gmail.com", "google_data_manager", None, "invalid_email"),
    ("phone", "12345", "meta", "US", "invalid_phone"),
    ("phone", "+1 555 987 6543", "google", None, "invalid_phone"),  # area code 555 does not exist
    ("phone", "07700 900123", "meta", "GB", "placeholder"),  # Ofcom drama range
    ("phone", "07911 123456", "meta", "US", "invalid_phone"),  # a UK number read as American
    ("phone", "1-800-FLOWERS", "google", "US", "invalid_phone"),  # vanity letters refused
    ("phone", "6505551212", "meta", None, "phone_no_country"),
    ("phone", "(650) 555-1212", "plain", None, "phone_no_country"),
    ("first_name", "12345", "meta", None, "invalid_name"),
    ("last_name", "--", "google", None, "invalid_name"),
    ("postal_code", "9403", "meta", "US", "invalid_postal_code"),  # lost its leading zero
    ("postal_code", "ABCDE", "google", "US", "invalid_postal_code"),
    ("postal_code", "SW1A/1AA", "meta", "GB", "invalid_postal_code"),
    ("city", "1234", "meta", None, "invalid_city"),
    ("state", "Narnia", "meta", "US", "invalid_state"),
    ("country", "Atlantis", "meta", None, "invalid_country"),
    ("country", "XX", "google", None, "invalid_country"),
    ("country", "ZZZ", "plain", None, "invalid_country"),
    ("madid", "not-a-uuid", "meta", None, "invalid_madid"),
    ("madid", "00000000-0000-0000-0000-000000000000", "google", None, "invalid_madid"),
    ("gender", "x", "meta", None, "invalid_gender"),
    ("date_of_birth", "03/04/1990", "meta", None, "ambiguous_dob"),
    ("date_of_birth", "1899-12-31", "meta", None, "invalid_dob"),
    ("date_of_birth", "1990-02-30", "plain", None, "invalid_dob"),
    ("date_of_birth", "next tuesday", "meta", None, "invalid_dob"),
    ("date_of_birth", dt.date.today() + dt.timedelta(days=1), "meta", None, "invalid_dob"),
]


@pytest.mark.parametrize(("kind", "raw", "platform", "region", "reason"), INVALID)
def test_invalid_values_are_rejected_with_reason_and_no_pii(kind, raw, platform, region, reason):
    with pytest.raises(InvalidIdentifier) as info:
        encode(kind, raw, platform=platform, region=region)
    assert info.value.reason == reason
    assert info.value.kind == kind
    assert reason in REASONS
    assert str(raw) not in str(info.value)
    assert str(raw) not in repr(info.value)


@pytest.mark.parametrize("raw", [None, "", "   ", "\u200b", float("nan")])
@pytest.mark.parametrize("kind", ["email", "phone", "first_name", "country", "madid"])
def test_blank_values_are_missing(kind, raw):
    with pytest.raises(InvalidIdentifier) as info:
        normalise(kind, raw, platform="meta", region="US")
    assert info.value.reason == "missing"


# --- per-kind rules that are not covered by a published example -----------------------------------


def test_meta_names_drop_spaces_punctuation_and_digits_but_keep_letters():
    assert normalise("first_name", " Mary-Ann ", platform="meta") == "maryann"
    assert normalise("last_name", "O'Brien 3rd", platform="meta") == "obrienrd"
    assert normalise("last_name", "Müller-Lüdenscheidt", platform="meta") == "müllerlüdenscheidt"


def test_google_first_name_drops_whitespace_and_last_name_also_punctuation():
    assert normalise("first_name", " Mary  Ann ", platform="google") == "maryann"
    assert normalise("first_name", "Jean-Luc", platform="google") == "jean-luc"
    assert normalise("last_name", "O'Brien-Smith", platform="google") == "obriensmith"
    assert normalise("first_name", " Mary  Ann ", platform="google_data_manager") == "mary  ann"


def test_meta_postal_code_and_state_are_country_aware():
    assert normalise("postal_code", "WC2H 8LG", platform="meta", region="GB") == "wc2h8lg"
    assert normalise("postal_code", "94035 1234", platform="meta") == "94035"  # ZIP+4 shape, no country
    assert normalise("postal_code", "00-950", platform="meta", region="PL") == "00950"
    assert normalise("state", "New York", platform="meta", region="US") == "ny"
    assert normalise("state", "TX", platform="meta") == "tx"
    assert normalise("state", "Ontario", platform="meta", region="CA") == "ontario"
    assert normalise("state", "Île-de-France", platform="meta", region="FR") == "îledefrance"


@pytest.mark.parametrize(
    ("raw", "code"),
    [("USA", "US"), ("United States of America", "US"), ("uk", "GB"), ("England", "GB"),
     ("deu", "DE"), ("Côte d'Ivoire", "CI"), ("the Netherlands", "NL"), ("South Korea", "KR"),
     (" fr ", "FR"), ("Narnia", None), ("", None), (None, None)],
)
def test_resolve_country_maps_codes_names_and_aliases(raw, code):
    assert resolve_country(raw) == code


def test_madid_and_external_id_are_never_hashed():
    upper = "AECE52E7-03EE-455A-B3C4-E57283966239"
    for platform in ("meta", "google", "plain"):
        assert encode("madid", upper, platform=platform) == upper.lower()
    assert encode("madid", "aece52e703ee455ab3c4e57283966239", platform="meta") == upper.lower()
    assert encode("external_id", " cust-42 ", platform="meta") == "cust-42"
    assert encode("external_id", 42, platform="google") == "42"


def test_plain_keeps_sendable_forms():
    assert encode("email", " Ada.Lee@Example.COM ", platform="plain") == "ada.lee@example.com"
    assert encode("first_name", "  Mary   Ann ", platform="plain") == "Mary Ann"
    assert encode("date_of_birth", "16/02/1997", platform="plain") == "1997-02-16"
    assert encode("date_of_birth", dt.datetime(1997, 2, 16, 8, 30), platform="plain") == "1997-02-16"
    assert encode("state", "new york", platform="plain", region="US") == "NY"
    assert encode("gender", "MALE", platform="plain") == "m"


def test_unsupported_kind_platform_and_region_fail_loudly():
    with pytest.raises(UnsupportedKindError):
        encode("city", "Paris", platform="google")
    with pytest.raises(UnsupportedKindError):
        encode("shoe_size", "42", platform="meta")
    with pytest.raises(ValueError, match="unknown platform"):
        encode("email", "a@example.com", platform="tiktok")
    with pytest.raises(ValueError, match="region"):
        encode("phone", "+16505551212", platform="meta", region="Narnia")
    with pytest.raises(InvalidIdentifier, match="phone_no_country"):
        encode("phone", "6505551212", platform="meta", region="")  # blank region means no region


def test_rule_sets_cover_every_kind_they_hash():
    assert set(PLATFORM_RULES) >= {"meta", "google", "plain"}
    assert PLATFORM_RULES["meta"].kinds == frozenset(IDENTIFIER_KINDS)
    assert PLATFORM_RULES["meta"].hashed == frozenset(IDENTIFIER_KINDS) - {"madid", "external_id"}
    assert PLATFORM_RULES["google"].hashed == {"email", "phone", "first_name", "last_name"}
    assert PLATFORM_RULES["plain"].hashed == frozenset()
    for rules in PLATFORM_RULES.values():
        assert rules.hashed <= rules.kinds


# --- identify ----------------------------------------------------------------------------------------


def test_identify_drops_the_bad_identifier_and_keeps_the_good_one():
    row = {"email": "ada.lee@", "phone": "(650)555-1212"}
    result = identify(row, ["email", "phone"], platform="meta", region="US")
    assert result == Identified(
        identifiers={"phone": "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"},
        dropped={"email": "invalid_email"},
        reason=None,
    )
    assert "ada.lee" not in repr(result)


def test_identify_rejects_a_row_with_nothing_usable():
    bad = identify({"email": "nope", "phone": "12"}, ["email", "phone"], platform="google", region="US")
    assert bad.identifiers == {}
    assert bad.dropped == {"email": "invalid_email", "phone": "invalid_phone"}
    assert bad.reason == "invalid_email"
    empty = identify({"email": None, "phone": "   "}, ["email", "phone"], platform="google", region="US")
    assert empty == Identified(identifiers={}, dropped={}, reason="no_identifier")
    absent = identify({}, ["email"], platform="plain")
    assert absent.reason == "no_identifier"


def test_identify_uses_the_rows_country_for_the_phone_when_valid():
    row = {"phone": "07911 123456"}
    uk = identify(row, ["phone"], platform="google", region="US", region_column_value="GB")
    assert uk.identifiers == {"phone": "20b18ac9de7b3aad174961827d8e451c410af9aedfd1d699927f4b29b81aa1fa"}
    by_name = identify(row, ["phone"], platform="google", region="US", region_column_value="United Kingdom")
    assert by_name.identifiers == uk.identifiers
    unknown = identify(row, ["phone"], platform="google", region="US", region_column_value="Narnia")
    assert unknown.reason == "invalid_phone"  # fell back to US, where this is not a number


def test_identify_uses_the_rows_country_for_address_rules():
    row = {"country": "US", "postal_code": "94035-1234", "state": "California"}
    us = identify(row, ["country", "postal_code", "state"], platform="meta", region="GB")
    assert us.identifiers["postal_code"] == "1794327a4d443904421f5ca1f3d72d0a62ba2f0770d80755ec2220fc0efb052e"
    assert us.identifiers["state"] == "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126"


def test_google_drops_a_partial_address_but_keeps_the_email():
    kinds = ["email", "first_name", "last_name", "country", "postal_code"]
    row = {"email": "dana@example.com", "first_name": "Alex", "last_name": "Quinn", "country": "US"}
    result = identify(row, kinds, platform="google", region="US")
    assert result.identifiers == {"email": "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"}
    assert result.dropped == {"first_name": "incomplete_address", "last_name": "incomplete_address",
                              "country": "incomplete_address"}
    assert result.reason is None
    full = identify({**row, "postal_code": "94045"}, kinds, platform="google", region="US")
    assert full.identifiers == {
        "email": "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3",
        "first_name": "4135aa9dc1b842a653dea846903ddb95bfb8c5a10c504a7fa16e10bc31d1fdf0",
        "last_name": "c512ca0c5c1e71be19f3356821e56732b5fb3ac894b0dbc5846d0b6920106fb3",
        "country": "US",
        "postal_code": "94045",
    }
    only_address = identify({"first_name": "Alex", "postal_code": "bad!"}, kinds[1:], platform="google", region="US")
    assert only_address.identifiers == {}
    assert only_address.reason == "invalid_postal_code"


# --- identify_many -------------------------------------------------------------------------------------

ROWS = [
    {"email": "John_Smith@gmail.com", "phone": "(650)555-1212", "cc": None},
    {"email": "bad@", "phone": "07911 123456", "cc": "GB"},
    {"email": None, "phone": "07911 123456", "cc": "US"},  # same phone, other region: not a cache hit
    {"email": None, "phone": "(650)555-1212", "cc": "Narnia"},
    {"email": "x", "phone": "12", "cc": None},
]


@pytest.mark.parametrize("platform", ["meta", "google", "plain"])
def test_identify_many_matches_identify_row_by_row(platform):
    kinds = ["email", "phone"]
    expected = [
        identify(row, kinds, platform=platform, region="US", region_column_value=row["cc"]) for row in ROWS
    ]
    table = pa.table({key: [row[key] for row in ROWS] for key in ("email", "phone", "cc")})
    assert identify_many(table, kinds, platform=platform, region="US", region_column="cc") == expected
    assert identify_many(iter(ROWS), kinds, platform=platform, region="US", region_column="cc") == expected
    assert expected[2].reason == "invalid_phone"
    assert expected[1].identifiers["phone"] != expected[0].identifiers["phone"]


def test_identify_many_golden_values_and_missing_columns():
    table = pa.table({"email": ["John_Smith@gmail.com", None], "phone": [16505551212, None]})
    results = identify_many(table, ["email", "phone", "madid"], platform="meta", region="US")
    assert results[0].identifiers == {
        "email": "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        "phone": "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    }
    assert results[1] == Identified(identifiers={}, dropped={}, reason="no_identifier")
    with pytest.raises(ValueError, match="region column"):
        identify_many(table, ["email"], platform="meta", region="US", region_column="country")


def test_public_names_are_exported():
    assert set(identity.__all__) == {
        "IDENTIFIER_KINDS", "PLATFORM_RULES", "REASONS", "Identified", "InvalidIdentifier", "RuleSet",
        "UnsupportedKindError", "encode", "identify", "identify_many", "normalise", "resolve_country",
        "split_dob",
    }
    for name in identity.__all__:
        assert hasattr(identity, name)
