"""What ``syncer reconcile`` finds when it lays a platform's listed members over the ledger's ``held`` rows.

A listed member is *tied* to the held members it shares a value with, for any identifier kind the platform
recognises a person by (``Capabilities.match_keys``), or whose platform id the connector cached for them
(Klaviyo's profile ids). Two members sharing a value are one person on the platform, so one listed person
may tie to several held members. Then, precisely:

- **missing**: a held member no listed member ties to. The platform does not hold what we believe it holds.
- **extra**: a listed member tied to no held member: someone on the platform we never sent (added by hand,
  by another tool, or left over from before the ledger).
- **changed**: a held member tied only by listed members that *contradict* it: for some match-key kind the
  listing reports, its value is none of the values we sent for that kind to the members it ties to. The
  usual cause is a person edited on the platform, say a profile whose email was changed by hand: still on
  the list under the profile id we know, no longer with the email we sent. Such a member is not missing
  (the person is on the list) and the listed entry is not an extra (we know who it is).

A platform that lists only one identifier and no stable id (Mailchimp lists emails, Iterable emails or
userIds) cannot tell a changed email from a member who left and a stranger who came: there a changed email
is one missing and one extra. Values compare exactly: connectors list identifiers in the format we send
them (``destinations.base.ListedMember``). Keys starting with ``_`` (the ``_consent`` marker) never match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from destinations.base import ListedMember

__all__ = ["Drift", "HeldIndex", "compare"]


class HeldIndex:
    """The held members of one sync, indexed by each match-key value and by cached platform id."""

    def __init__(self, match_keys: Iterable[str]) -> None:
        self.match_keys = tuple(sorted(k for k in match_keys if not k.startswith("_")))
        self.values: dict[str, dict[str, str]] = {}  # member key -> its match-key values as sent
        self._by_value: dict[tuple[str, str], list[str]] = {}
        self._by_id: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def add(self, member_key: str, identifiers: Mapping[str, str]) -> None:
        values = {kind: identifiers[kind] for kind in self.match_keys if identifiers.get(kind)}
        self.values[member_key] = values
        for kind, value in values.items():
            self._by_value.setdefault((kind, value), []).append(member_key)

    def add_platform_ids(self, ids: Mapping[str, str]) -> None:
        """Platform ids a connector cached per member key (only those of held members count). A cached value
        may carry a suffix after ``#`` (Klaviyo keeps the digest of the identifiers an id was resolved from);
        the id is what comes before it."""
        for member_key, cached in ids.items():
            platform_id = cached.partition("#")[0]
            if member_key in self.values and platform_id:
                self._by_id.setdefault(platform_id, []).append(member_key)

    def tied(self, member: ListedMember) -> set[str]:
        keys = {k for kind in self.match_keys if member.identifiers.get(kind)
                for k in self._by_value.get((kind, member.identifiers[kind]), ())}
        if member.platform_id:
            keys.update(self._by_id.get(member.platform_id, ()))
        return keys

    def contradicts(self, member: ListedMember, tied: set[str]) -> bool:
        """The listing reports, for a kind we sent, a value none of the tied members was sent."""
        for kind in self.match_keys:
            value = member.identifiers.get(kind)
            if not value:
                continue
            sent = {self.values[k][kind] for k in tied if kind in self.values[k]}
            if sent and value not in sent:
                return True
        return False


@dataclass
class Drift:
    """The comparison of one audience: member keys (never identifiers) and the extras as listed."""

    held: int = 0
    listed: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[ListedMember] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.missing or self.changed or self.extra)


def compare(index: HeldIndex, listed: Iterable[ListedMember]) -> Drift:
    """Lay the listed members over the held ones; see the module docstring for what each figure means."""
    drift = Drift(held=len(index))
    present: set[str] = set()
    contradicted: set[str] = set()
    for member in listed:
        drift.listed += 1
        tied = index.tied(member)
        if not tied:
            drift.extra.append(member)
        elif index.contradicts(member, tied):
            contradicted |= tied
        else:
            present |= tied
    drift.changed = sorted(contradicted - present)
    drift.missing = sorted(k for k in index.values if k not in present and k not in contradicted)
    return drift
