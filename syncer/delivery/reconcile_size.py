"""Reconciling an audience whose platform tells only its size (``destinations.base.HasPlatformCounts``).

A platform's size counts *people it matched*, not rows we sent, and it says it approximately:

- **Meta** reports ``approximate_count_lower_bound`` and ``approximate_count_upper_bound`` (-1 while not
  computed), and its reference shows them as a band around the size (4,900 to 5,100 for about 5,000, so
  +-2%); changes "take up to 24 hours" to show. Sources:
  https://developers.facebook.com/docs/marketing-api/reference/custom-audience (fields, example) and
  https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users (the 24 h).
- **Google** sizes a user list (``size_for_search`` / ``size_for_display``, null until computed) and
  documents sizes as ranges (``UserListSizeRange``: under 500, 500 to 1,000, 1,000 to 10,000, 10,000 to
  50,000, ...): a size is read as the range it falls in. Source:
  https://developers.google.com/google-ads/api/reference/rpc/v24/UserListSizeRangeEnum.UserListSizeRange

The check, with ``tolerance`` the platform's range widened to at least ``MIN_TOLERANCE`` of the size:

- ``empty``: the ledger holds members and the platform counts nobody;
- ``above``: the platform counts more people than the ledger holds members, beyond the tolerance. Matching
  only loses rows, so these are people we never sent (added by hand) or removes that did not land;
- ``below``: the share of held members the platform counts (its match rate) fell below what the last
  reconcile read (the baseline), beyond the tolerance: members dropped outside the syncer. Without a
  baseline nothing is called below (a match rate of 60% is normal); this reading becomes the baseline;
- ``unreadable``: the platform has no size yet; ``ok`` otherwise.

A flag is a signal, never a repair: the platform may still be applying recent changes (Meta: 24 h).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

__all__ = ["MIN_TOLERANCE", "SizeCheck", "SizeRange", "check_size", "read_range"]

MIN_TOLERANCE = 0.02  # the band of Meta's own example (4,900-5,100 around 5,000)
# UserListSizeRange, in users: each range's (low, high); a size is read as the range it falls in
_GOOGLE_RANGES = ((0, 500), (500, 1_000), (1_000, 10_000), (10_000, 50_000), (50_000, 100_000), (100_000, 300_000),
                  (300_000, 500_000), (500_000, 1_000_000), (1_000_000, 2_000_000), (2_000_000, 3_000_000),
                  (3_000_000, 5_000_000), (5_000_000, 10_000_000), (10_000_000, 20_000_000), (20_000_000, 30_000_000),
                  (30_000_000, 50_000_000))


@dataclass(frozen=True)
class SizeRange:
    low: int
    high: int


@dataclass(frozen=True)
class SizeCheck:
    verdict: str  # ok | above | below | empty | unreadable
    held: int
    platform: SizeRange | None
    expected: SizeRange | None  # what the ledger (and the baseline's match rate) predict
    note: str

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def drift(self) -> bool:
        return self.verdict in ("above", "below", "empty")


def read_range(counts: Mapping[str, int]) -> SizeRange | None:
    """The platform's size as a range, or None when it has none yet."""
    low, high = counts.get("approximate_count_lower_bound"), counts.get("approximate_count_upper_bound")
    if isinstance(low, int) and isinstance(high, int):
        return SizeRange(low, high) if low >= 0 and high >= low else None
    for key in ("size_for_search", "size_for_display"):
        if isinstance(counts.get(key), int) and counts[key] >= 0:
            return _google_range(counts[key])
    return None


def _google_range(size: int) -> SizeRange:
    for low, high in _GOOGLE_RANGES:
        if size < high:
            return SizeRange(low, high)
    return SizeRange(_GOOGLE_RANGES[-1][1], max(size, _GOOGLE_RANGES[-1][1]))


def check_size(counts: Mapping[str, int], held: int, baseline: Mapping | None = None) -> SizeCheck:
    """Compare the platform's size with the ``held`` count (and the ``baseline``: the last check's
    ``held`` and ``platform``, from ``SizeCheck.as_dict``)."""
    platform = read_range(counts)
    if platform is None:
        return SizeCheck("unreadable", held, None, None, "the platform has not computed the audience's size yet")
    if held and platform.high == 0:
        return SizeCheck("empty", held, platform, SizeRange(1, held), f"the platform counts nobody; the ledger holds {held}")
    ceiling = math.ceil(held * (1 + MIN_TOLERANCE))
    if platform.low > ceiling:
        return SizeCheck("above", held, platform, SizeRange(0, held),
                         f"the platform counts at least {platform.low} people, more than the {held} members we sent:"
                         " people added outside the syncer, or removes that did not land")
    expected = _expected(held, baseline)
    if expected is None:
        return SizeCheck("ok", held, platform, SizeRange(0, held), "first size reading: kept as the baseline")
    if platform.high < expected.low:
        return SizeCheck("below", held, platform, expected,
                         f"the platform counts at most {platform.high} people where the last reading's match rate predicts"
                         f" at least {expected.low}: members dropped outside the syncer (or changes still being applied)")
    if platform.low > expected.high:
        return SizeCheck("above", held, platform, expected,
                         f"the platform counts at least {platform.low} people where the last reading's match rate predicts"
                         f" at most {expected.high}: people added outside the syncer")
    return SizeCheck("ok", held, platform, expected, "within the platform's approximation")


def _expected(held: int, baseline: Mapping | None) -> SizeRange | None:
    """The size ``held`` members should show at the baseline's match rate, widened by the tolerance."""
    if not baseline or not baseline.get("held") or not baseline.get("platform"):
        return None
    then, seen = baseline["held"], baseline["platform"]
    low = math.floor(held * seen["low"] / then * (1 - MIN_TOLERANCE))
    high = math.ceil(held * seen["high"] / then * (1 + MIN_TOLERANCE))
    return SizeRange(low, min(high, math.ceil(held * (1 + MIN_TOLERANCE))))
