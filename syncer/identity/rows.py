"""Identity normalisation and hashing: one raw warehouse value in, the exact form each platform matches on out.

What it does
    ``normalise(kind, raw, platform=...)`` turns a raw value (an email, a phone, a name...) into the
    text the platform documents *before* hashing; ``encode`` then hashes it (lowercase hex SHA-256 of
    the UTF-8 bytes) where the platform hashes that kind, and passes it through where it does not.
    ``identify`` does that for every identifier kind of one row and says which values were dropped and
    why; ``identify_many`` is the batch form used by the engine. Nothing here logs, and no exception
    message or reason ever carries a raw value: reasons are short codes (``REASONS``).

Rule sets (``PLATFORM_RULES``)
    ``meta``      Custom Audiences multi-key schema. Every kind hashed except MADID and EXTERN_ID.
    ``google``    Google Ads API Customer Match (``OfflineUserDataJobService``, the API our connector
                  drives): email, phone, first/last name hashed; ``country_code``, ``postal_code``,
                  ``mobile_id`` (madid) and ``third_party_user_id`` (external_id) sent in clear.
                  city, state, gender and date_of_birth are not Customer Match fields.
    ``google_data_manager``  the same members through the Data Manager API (required for most new
                  Customer Match integrations from 1 April 2026, see specs section 2); it differs from
                  ``google`` in the Gmail rule and in names (see ``syncer.identity.normalisers``). Offered so
                  the connector can switch without touching this module.
    ``plain``     normalised, never hashed, for ESP and SMS tools: email trimmed and lowercased, phone
                  E.164 with ``+``, names and city with their case kept, country upper-case ISO alpha-2,
                  date of birth ISO ``YYYY-MM-DD`` (what Braze and Klaviyo take).

Where the parts live (this module is the public face; import from here)
    ``syncer.identity.kinds``  kinds, reason codes, the two errors, raw value -> trimmed text.
    ``syncer.identity.normalisers``       one normaliser per kind and platform flavour; its docstring holds the
                                 per-kind rules and the platform pages they follow.
    ``syncer.identity.emails``            email addresses: RFC 5321/5322 rules, NFKC, IDNA (``idna``).
    ``syncer.identity.phones``            phone numbers to E.164 (``phonenumbers``).
    ``syncer.identity.placeholders``      values no person owns (``1234567890``, 555-0100): ``placeholder``.
    ``syncer.identity.countries``         the ISO 3166 table, country aliases and US states (``resolve_country``).
    ``syncer.identity.platform_rules``    the four ``RuleSet`` tables above.
    Here: ``normalise``/``encode``/``split_dob`` for one value, ``identify``/``identify_many`` for rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from syncer.identity.countries import resolve_country
from syncer.identity.kinds import IDENTIFIER_KINDS, REASONS, InvalidIdentifier, UnsupportedKindError, raw_text, sha256
from syncer.identity.normalisers import Normaliser, dob_parts
from syncer.identity.platform_rules import PLATFORM_RULES, RuleSet, normaliser_for, rules_for

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "IDENTIFIER_KINDS",
    "PLATFORM_RULES",
    "REASONS",
    "Identified",
    "InvalidIdentifier",
    "RuleSet",
    "UnsupportedKindError",
    "encode",
    "identify",
    "identify_many",
    "normalise",
    "resolve_country",
    "split_dob",
]


def _default_region(region: str | None) -> str | None:
    if region is None or (isinstance(region, str) and not region.strip()):
        return None
    code = resolve_country(region)
    if code is None:
        raise ValueError("region must be an ISO 3166-1 alpha-2 country code")
    return code


# --- single values -------------------------------------------------------------------------------


def normalise(kind: str, raw: object, *, platform: str, region: str | None = None) -> str:
    """The text the platform wants for this kind, before any hashing.

    Args:
        kind: one of ``IDENTIFIER_KINDS``.
        raw: the warehouse value (str, int, float, date...).
        platform: a key of ``PLATFORM_RULES``.
        region: ISO alpha-2 country: the phone's default region, and the country that decides
            US-only rules for postal_code and state.

    Raises:
        InvalidIdentifier: the value is unusable; ``missing`` for None or blank.
        UnsupportedKindError: the platform has no such field.
        ValueError: unknown platform, or ``region`` is not a country.
    """
    normaliser = normaliser_for(rules_for(platform), kind)
    reg = _default_region(region)
    try:
        return normaliser(raw_text(raw, kind), reg)
    except InvalidIdentifier as exc:
        if exc.kind is None:
            raise InvalidIdentifier(exc.reason, kind) from None
        raise


def encode(kind: str, raw: object, *, platform: str, region: str | None = None) -> str:
    """``normalise``, then lowercase hex SHA-256 where the platform hashes the kind; pass-through elsewhere."""
    value = normalise(kind, raw, platform=platform, region=region)
    return sha256(value) if kind in rules_for(platform).hashed else value


def split_dob(value: object, *, hashed: bool = True) -> tuple[str, str, str]:
    """Meta's multi-key DOBY, DOBM and DOBD for one date of birth.

    Args:
        value: a date, or text in any form ``normalise("date_of_birth", ...)`` accepts.
        hashed: False returns the normalised parts (``"1997"``, ``"02"``, ``"16"``) instead of their digests.

    Returns:
        (YYYY, MM, DD), each the lowercase hex SHA-256 of the zero-padded part unless ``hashed`` is False.

    Raises:
        InvalidIdentifier: ``missing``, ``invalid_dob`` or ``ambiguous_dob``.
    """
    try:
        year, month, day = dob_parts(raw_text(value, "date_of_birth"))
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(exc.reason, "date_of_birth") from None
    parts = (f"{year:04d}", f"{month:02d}", f"{day:02d}")
    if not hashed:
        return parts
    return (sha256(parts[0]), sha256(parts[1]), sha256(parts[2]))


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identified:
    """The encoded identifiers of one row.

    ``identifiers`` maps kind to encoded value and holds only values the platform can take.
    ``dropped`` maps kind to reason for values that were given but unusable; missing or blank values
    are not listed. ``reason`` is None when the row can be sent; otherwise the row is rejected with it
    (the first dropped reason, else ``no_identifier``).
    """

    identifiers: dict[str, str]
    dropped: dict[str, str]
    reason: str | None


@dataclass(frozen=True)
class _Plan:
    kinds: tuple[str, ...]
    steps: tuple[tuple[str, Normaliser, bool, bool], ...]  # kind, normaliser, hashed, is_phone
    country_index: int | None
    address_group: tuple[str, ...]


@lru_cache(maxsize=128)
def _plan(platform: str, kinds: tuple[str, ...]) -> _Plan:
    rules = rules_for(platform)
    if not kinds:
        raise ValueError("kinds must name at least one identifier kind")
    if len(set(kinds)) != len(kinds):
        raise ValueError("kinds must not repeat")
    steps = tuple((kind, normaliser_for(rules, kind), kind in rules.hashed, kind == "phone") for kind in kinds)
    group = rules.address_group if set(kinds) & set(rules.address_group) else ()
    country_index = kinds.index("country") if "country" in kinds else None
    return _Plan(kinds, steps, country_index, group)


_PHONE_CACHE_MAX = 500_000


def _cached_phone(normaliser: Normaliser, hashed: bool) -> Normaliser:
    """Memoise phone parsing (the slow part) by (text, region) for one batch; the cache dies with the batch."""
    cache: dict[tuple[str, str | None], str] = {}

    def phone(text: str, region: str | None) -> str:
        key = (text, region)
        hit = cache.get(key)
        if hit is None:
            try:
                value = normaliser(text, region)
                hit = sha256(value) if hashed else value
            except InvalidIdentifier as exc:
                hit = "!" + exc.reason  # encoded phones never start with "!"
            if len(cache) >= _PHONE_CACHE_MAX:
                cache.clear()
            cache[key] = hit
        if hit[0] == "!":
            raise InvalidIdentifier(hit[1:], "phone")
        return hit

    return phone


def _row_encoder(
    plan: _Plan, default_region: str | None, *, cache_phone: bool
) -> Callable[[Sequence[object], object], Identified]:
    """Build the per-row function once per call, with everything it needs bound to locals."""
    steps = plan.steps
    if cache_phone:
        steps = tuple(
            (kind, _cached_phone(fn, hashed), False, True) if is_phone else (kind, fn, hashed, is_phone)
            for kind, fn, hashed, is_phone in steps
        )
    countries: dict[object, str | None] = {}
    country_index, group = plan.country_index, plan.address_group
    text_of, sha, invalid = raw_text, sha256, InvalidIdentifier

    def country(value: object) -> str | None:
        if value is None:
            return None
        try:
            return countries[value]
        except KeyError:
            code = countries[value] = resolve_country(value)
            return code
        except TypeError:  # unhashable value in a country column
            return None

    def encode_row(values: Sequence[object], region_value: object) -> Identified:
        phone_region = country(region_value) or default_region
        address_region = phone_region
        if country_index is not None:
            address_region = country(values[country_index]) or phone_region
        identifiers: dict[str, str] = {}
        dropped: dict[str, str] = {}
        for (kind, fn, hashed, is_phone), raw in zip(steps, values):
            try:
                value = fn(text_of(raw, kind), phone_region if is_phone else address_region)
            except invalid as exc:
                if exc.reason != "missing":
                    dropped[kind] = exc.reason
                continue
            identifiers[kind] = sha(value) if hashed else value
        if group:
            _drop_partial_group(group, identifiers, dropped)
        if identifiers:
            return Identified(identifiers, dropped, None)
        return Identified(identifiers, dropped, next(iter(dropped.values()), "no_identifier"))

    return encode_row


def _drop_partial_group(group: tuple[str, ...], identifiers: dict[str, str], dropped: dict[str, str]) -> None:
    present = [kind for kind in group if kind in identifiers]
    if present and len(present) < len(group):
        for kind in present:
            del identifiers[kind]
            dropped[kind] = "incomplete_address"


def identify(
    row: Mapping[str, object],
    kinds: Sequence[str],
    *,
    platform: str,
    region: str | None = None,
    region_column_value: object = None,
) -> Identified:
    """Encode every kind of one row for ``platform``; see ``Identified`` for what comes back.

    Args:
        row: identifier kind -> raw value; absent keys count as missing.
        kinds: the kinds to use, in priority order (the first dropped reason becomes the row's reason).
        platform: a key of ``PLATFORM_RULES``.
        region: the segment's default country (ISO alpha-2) for phones and address rules.
        region_column_value: the row's own country; used for the phone when it is a known country.

    Raises:
        UnsupportedKindError: a kind is unknown or the platform has no field for it.
        ValueError: unknown platform, bad ``region``, empty or repeated ``kinds``.
    """
    plan = _plan(platform, tuple(kinds))
    encode_row = _row_encoder(plan, _default_region(region), cache_phone=False)
    get = row.get
    return encode_row([get(kind) for kind in plan.kinds], region_column_value)


def identify_many(
    rows: pyarrow.Table | pyarrow.RecordBatch | Iterable[Mapping[str, object]],
    kinds: Sequence[str],
    *,
    platform: str,
    region: str | None,
    region_column: str | None = None,
) -> list[Identified]:
    """``identify`` for a batch: a ``pyarrow.Table`` (or RecordBatch) whose columns are named by kind, or an
    iterable of mappings. ``region_column`` names the column holding each row's country. Phone parses
    are memoised per call. Results are in row order.
    """
    plan = _plan(platform, tuple(kinds))
    encode_row = _row_encoder(plan, _default_region(region), cache_phone=True)
    if hasattr(rows, "column_names") and hasattr(rows, "num_rows"):
        return _identify_table(rows, plan, encode_row, region_column)
    return _identify_mappings(rows, plan, encode_row, region_column)


def _identify_table(
    table: Any, plan: _Plan, encode_row: Callable[[Sequence[object], object], Identified], region_column: str | None
) -> list[Identified]:
    n = table.num_rows
    names = set(table.column_names)
    if region_column is not None and region_column not in names:
        raise ValueError(f"region column {region_column!r} is not in the table")
    columns = [table.column(kind).to_pylist() if kind in names else [None] * n for kind in plan.kinds]
    regions = table.column(region_column).to_pylist() if region_column is not None else [None] * n
    return [encode_row(values, region) for values, region in zip(zip(*columns), regions)]


def _identify_mappings(
    rows: Iterable[Mapping[str, object]],
    plan: _Plan,
    encode_row: Callable[[Sequence[object], object], Identified],
    region_column: str | None,
) -> list[Identified]:
    kinds = plan.kinds
    out: list[Identified] = []
    append = out.append
    for row in rows:
        get = row.get
        append(encode_row([get(kind) for kind in kinds], get(region_column) if region_column else None))
    return out
