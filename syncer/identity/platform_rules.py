"""The four rule sets (``PLATFORM_RULES``): for each platform, which normaliser each kind gets and which kinds are hashed.

A ``RuleSet`` is data: adding a platform flavour means adding one table here, not touching the code
that runs it (``syncer.identity.rows``). What each set is for (meta, google, google_data_manager, plain)
is summarised in ``syncer.identity.rows``'s docstring; what each normaliser does, with the platform pages
it follows, is in ``syncer.identity.normalisers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from syncer.identity import normalisers as n
from syncer.identity.emails import email, email_data_manager
from syncer.identity.kinds import IDENTIFIER_KINDS, UnsupportedKindError
from syncer.identity.normalisers import Normaliser
from syncer.identity.phones import e164, e164_digits

__all__ = ["PLATFORM_RULES", "RuleSet", "normaliser_for", "rules_for"]


@dataclass(frozen=True)
class RuleSet:
    """How one platform wants each identifier kind: a normaliser per supported kind, and which kinds it hashes.

    ``address_group`` lists kinds that only count together (Google's address identifier needs first
    name, last name, country and postal code); ``identify`` drops a partial group as ``incomplete_address``.
    """

    name: str
    normalisers: Mapping[str, Normaliser]
    hashed: frozenset[str]
    address_group: tuple[str, ...] = ()

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.normalisers)


_GOOGLE_ADDRESS = ("first_name", "last_name", "country", "postal_code")

_META = RuleSet(
    name="meta",
    normalisers=MappingProxyType({
        "email": email, "phone": e164_digits, "first_name": n.name_letters,
        "last_name": n.name_letters, "postal_code": n.postal_meta, "city": n.city_letters,
        "state": n.state_meta, "country": n.country_lower, "madid": n.madid,
        "external_id": n.external_id, "date_of_birth": n.dob_compact, "gender": n.gender,
    }),
    hashed=frozenset(IDENTIFIER_KINDS) - {"madid", "external_id"},
)
_GOOGLE = RuleSet(
    name="google",
    normalisers=MappingProxyType({
        "email": email, "phone": e164, "first_name": n.name_no_space,
        "last_name": n.name_no_space_no_punct, "postal_code": n.postal_clear,
        "country": n.country_upper, "madid": n.madid, "external_id": n.external_id,
    }),
    hashed=frozenset({"email", "phone", "first_name", "last_name"}),
    address_group=_GOOGLE_ADDRESS,
)
_GOOGLE_DATA_MANAGER = RuleSet(
    name="google_data_manager",
    normalisers=MappingProxyType({
        "email": email_data_manager, "phone": e164, "first_name": n.name_trimmed_lower,
        "last_name": n.name_trimmed_lower, "postal_code": n.postal_clear,
        "country": n.country_upper, "madid": n.madid,
    }),
    hashed=frozenset({"email", "phone", "first_name", "last_name"}),
    address_group=_GOOGLE_ADDRESS,
)
_PLAIN = RuleSet(
    name="plain",
    normalisers=MappingProxyType({
        "email": email, "phone": e164, "first_name": n.name_plain, "last_name": n.name_plain,
        "postal_code": n.postal_clear, "city": n.city_plain, "state": n.state_plain,
        "country": n.country_upper, "madid": n.madid, "external_id": n.external_id,
        "date_of_birth": n.dob_iso, "gender": n.gender,
    }),
    hashed=frozenset(),
)

PLATFORM_RULES: Mapping[str, RuleSet] = MappingProxyType(
    {rules.name: rules for rules in (_META, _GOOGLE, _GOOGLE_DATA_MANAGER, _PLAIN)}
)


def rules_for(platform: str) -> RuleSet:
    """The rule set named ``platform``; ValueError listing the known ones otherwise."""
    try:
        return PLATFORM_RULES[platform]
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}; expected one of {sorted(PLATFORM_RULES)}") from None


def normaliser_for(rules: RuleSet, kind: str) -> Normaliser:
    """The normaliser ``rules`` uses for ``kind``; UnsupportedKindError if the kind is unknown or not taken."""
    try:
        return rules.normalisers[kind]
    except KeyError:
        if kind not in IDENTIFIER_KINDS:
            raise UnsupportedKindError(f"unknown identifier kind {kind!r}") from None
        raise UnsupportedKindError(f"platform {rules.name!r} takes no {kind!r} identifier") from None
