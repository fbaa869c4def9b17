"""Quiet hours for marketing texts: when a phone number may be texted, in its recipient's local time.

Kept apart from the Twilio connector: it is a rule set about phone numbers and local time, not about
Twilio's API, and a connector that sends texts through another platform would need the same rules.

The window is 08:00-21:00 local (47 CFR 64.1200(c)(1)), narrowed for US numbers whose area code lies in a
stricter state: FL, OK, MD, MS, NJ (08-20), CT (09-20), TX (09-21, Sunday 12-21) and RI (09-18 weekdays,
10-17 weekends). Time zones come from ``phonenumbers.timezone``; a number that maps to several must be
inside the window in every one. State holidays are not modelled.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers

__all__ = ["has_time_zone", "in_quiet_hours"]

_FEDERAL = (8 * 60, 21 * 60)  # minutes after local midnight: [start, end)
_STATE_NAMES = {"Florida": "FL", "Oklahoma": "OK", "Maryland": "MD", "Mississippi": "MS", "New Jersey": "NJ",
                "Connecticut": "CT", "Texas": "TX", "Rhode Island": "RI"}
_AREA_CODES = {  # stricter states only; the geocoder's answer is used too, and both apply
    "FL": "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904 941 954",
    "OK": "405 539 572 580 918", "MD": "227 240 301 410 443 667", "MS": "228 601 662 769",
    "NJ": "201 551 609 640 732 848 856 862 908 973", "CT": "203 475 860 959", "RI": "401",
    "TX": "210 214 254 281 325 346 361 409 430 432 469 512 682 713 726 737 806 817 830 832 903 915 936 940"
          " 945 956 972 979",
}
_STATE_OF_AREA = {code: state for state, codes in _AREA_CODES.items() for code in codes.split()}


def _state_window(state: str, weekday: int) -> tuple[int, int]:
    """Allowed minutes [start, end) in a stricter state; weekday 0 = Monday."""
    if state in ("FL", "OK", "MD", "MS", "NJ"):
        return 8 * 60, 20 * 60
    if state == "CT":
        return 9 * 60, 20 * 60
    if state == "TX":
        return (12 * 60 if weekday == 6 else 9 * 60), 21 * 60
    if state == "RI":
        return (10 * 60, 17 * 60) if weekday >= 5 else (9 * 60, 18 * 60)
    return _FEDERAL


@lru_cache(maxsize=65_536)
def _locate(phone: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(IANA time zones, stricter US states) for an E.164 number; zones empty when unknown."""
    # imported here: loading the geocoder and time-zone data takes ~0.5 s, paid only when a text is due
    from phonenumbers import geocoder
    from phonenumbers import timezone as phone_timezone

    number = phonenumbers.parse(phone, None)
    zones = tuple(z for z in phone_timezone.time_zones_for_number(number) if z != phone_timezone.UNKNOWN_TIMEZONE)
    states: set[str] = set()
    if phonenumbers.region_code_for_number(number) == "US":
        where = geocoder.description_for_number(number, "en")
        states.add(_STATE_NAMES.get(where, where[-2:] if where[-4:-2] == ", " else ""))
        states.add(_STATE_OF_AREA.get(str(number.national_number)[:3], ""))
    return zones, frozenset(s for s in states if s in _AREA_CODES)


def in_quiet_hours(phone: str, now: datetime) -> bool:
    """True when texting ``phone`` at ``now`` falls outside the allowed window in any of its time zones.

    The window is 08:00-21:00 local, narrowed by every stricter state the number's area code belongs to.

    Raises:
        ValueError: the number maps to no known time zone (then nobody can say it is daytime there).
    """
    zones, states = _locate(phone)
    if not zones:
        raise ValueError("no time zone known for this number")
    moment = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    for zone in zones:
        local = moment.astimezone(ZoneInfo(zone))
        start, end = _FEDERAL
        for state in states:
            s, e = _state_window(state, local.weekday())
            start, end = max(start, s), min(end, e)
        if not start <= local.hour * 60 + local.minute < end:
            return True
    return False


def has_time_zone(phone: str) -> bool:
    """True when the E.164 ``phone`` maps to at least one known time zone (else nobody can say it is daytime there)."""
    return bool(_locate(phone)[0])
