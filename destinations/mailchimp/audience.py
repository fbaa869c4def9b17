"""What a Mailchimp sync's audience_id means: a tag or a static segment of one audience (list).

    "LIST_ID:tag:NAME"      the tag NAME on contacts of audience LIST_ID
    "LIST_ID:segment:ID"    the static segment ID of audience LIST_ID
    "LIST_ID:NAME"          a tag NAME (config ``membership: tag``, the default) or a static segment
                            id (``membership: static_segment``)

A bare LIST_ID is refused: membership of the audience itself could only be undone by archiving or
unsubscribing the contact. Read without the connector, so the sandbox can seed an audience from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncer.errors import ConfigError

__all__ = ["Membership", "parse_audience"]

_LIST_ID = re.compile(r"^[0-9a-zA-Z]{1,32}$")


@dataclass(frozen=True)
class Membership:
    """What a sync's audience_id means: a tag or a static segment of one audience (list)."""

    list_id: str
    kind: str  # "tag" or "segment"
    target: str  # tag name or segment id


def parse_audience(audience_id: str, default: str = "tag") -> Membership:
    """Read ``LIST_ID:tag:NAME``, ``LIST_ID:segment:ID`` or ``LIST_ID:NAME``; raise ``ConfigError`` otherwise."""
    list_id, sep, rest = audience_id.strip().partition(":")
    kind, explicit, target = rest.partition(":")
    if explicit and kind in ("tag", "segment"):
        rest = target
    else:
        kind = "tag" if default == "tag" else "segment"
    usage = "write it as 'LIST_ID:tag:NAME' or 'LIST_ID:segment:ID'"
    if not sep or not _LIST_ID.match(list_id):
        raise ConfigError(f"audience_id {audience_id!r} does not name a Mailchimp audience and a tag or static segment: {usage}"
                          " (a whole audience cannot be a sync's membership)")
    rest = rest.strip()
    if kind == "segment" and not rest.isdigit():
        raise ConfigError(f"audience_id {audience_id!r}: a static segment is given by its numeric id; {usage}")
    if kind == "tag" and not 0 < len(rest) <= 100:
        raise ConfigError(f"audience_id {audience_id!r}: a tag name has 1 to 100 characters; {usage}")
    return Membership(list_id, kind, rest)
