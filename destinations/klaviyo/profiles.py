"""Matching Klaviyo profiles back to our members: by identifier, by import row, and the reason a row failed.

Klaviyo keeps one profile per email, per phone number and per external id, and matches a profile on
email, then external_id, then phone number (``MATCH_ORDER``); emails case-insensitively. A profile
import job reports its profiles in no particular order and its failed rows by the index in
``source.pointer`` (``/data/attributes/profiles/data/{i}/...``), so both are mapped back to members
here; reasons name the field, never its value. ``identity_digest`` says which identifiers a cached
profile id was resolved from, and ``listed_identifiers`` turns a listed profile back into identifiers in
the format the connector is sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from destinations.base import Member
from destinations.klaviyo.config import ATTRIBUTES

__all__ = ["DUPLICATE_CODE", "MATCH_ORDER", "errored_member", "folded", "identity_digest", "index_profile", "listed_identifiers", "match",
           "row_reason"]

MATCH_ORDER = ("email", "external_id", "phone")  # identifiers Klaviyo matches a profile on, in its order
DUPLICATE_CODE = "duplicate_profile"  # Klaviyo's code for identifiers another profile holds
_IMPORT_ROW = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/attributes/?([a-z_]*))?")


def folded(kind: str, value: str) -> str:
    """``value`` as Klaviyo compares it: emails case-insensitively, everything without outer spaces."""
    return value.strip().lower() if kind == "email" else value.strip()


def identity_digest(member: Member) -> str:
    """A short digest of the member's key and the identifiers Klaviyo matches a profile on, as it compares
    them: it stays while they stay, and changes with the email, phone or external id. Salted with the
    member key, so the digests of two members sharing an email tell nothing of it."""
    values = [member.member_key, *(folded(kind, member.identifiers.get(kind) or "") for kind in MATCH_ORDER)]
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:16]


def listed_identifiers(profile: Mapping[str, Any]) -> dict[str, str]:
    """A profile's identifiers as the connector is sent them: email lower-cased, phone in E.164 (Klaviyo
    stores it so), external id as is; identifiers the profile lacks are left out."""
    attributes = profile.get("attributes") or {}
    found = {kind: attributes.get(ATTRIBUTES[kind]) for kind in MATCH_ORDER}
    return {kind: folded(kind, value) for kind, value in found.items() if isinstance(value, str) and value.strip()}


def index_profile(index: dict[tuple[str, str], str], profile: Mapping[str, Any]) -> None:
    """Add a JSON:API profile to ``index``: (identifier kind, folded value) -> profile id."""
    attributes = profile.get("attributes") or {}
    for kind in MATCH_ORDER:
        value = attributes.get(ATTRIBUTES[kind])
        if isinstance(value, str) and value and profile.get("id"):
            index[(kind, folded(kind, value))] = str(profile["id"])


def match(index: Mapping[tuple[str, str], str], member: Member) -> str | None:
    """The id of the member's profile in ``index``, in Klaviyo's match order; None when none matches."""
    for kind in MATCH_ORDER:
        value = member.identifiers.get(kind)
        if value and (kind, folded(kind, value)) in index:
            return index[(kind, folded(kind, value))]
    return None


def errored_member(error: Mapping[str, Any], members: Sequence[Member]) -> Member | None:
    """The member an import error is about: by the row index in its pointer, else by its original payload."""
    found = _IMPORT_ROW.match(str((error.get("source") or {}).get("pointer") or ""))
    if found and int(found.group(1)) < len(members):
        return members[int(found.group(1))]
    payload = error.get("original_payload") or {}
    for member in members:
        if any(payload.get(ATTRIBUTES[k]) and folded(k, str(payload[ATTRIBUTES[k]])) == folded(k, member.identifiers.get(k) or "")
               for k in MATCH_ORDER):
            return member
    return None


def row_reason(error: Mapping[str, Any]) -> str:
    """A short code for a row's error, from the field its pointer names (never the value)."""
    pointer = str((error.get("source") or {}).get("pointer") or "")
    field = pointer.rstrip("/").rsplit("/", 1)[-1]
    if field == "email":
        return "klaviyo_invalid_email"
    if field == "phone_number":
        return "klaviyo_invalid_phone"
    if field == "id":
        return "klaviyo_unknown_profile"
    code = re.sub(r"[^a-z0-9_]", "_", str(error.get("code") or "error").lower())[:40]
    return f"klaviyo_{code}"
