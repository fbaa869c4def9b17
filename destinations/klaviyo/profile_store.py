"""The Klaviyo emulator's profiles, under Klaviyo's identity model: one profile per email, per phone
number and per external id.

Klaviyo calls ``email``, ``phone_number`` and ``external_id`` profile identifiers: each value names at
most one profile, and a profile needs at least one of them
(https://developers.klaviyo.com/en/docs/update_profile_properties_via_api,
https://developers.klaviyo.com/en/reference/profiles). How each endpoint meets a value another profile
already holds:

- Create Profile (``POST /api/profiles``, https://developers.klaviyo.com/en/reference/create_profile):
  refused with HTTP 409 ``duplicate_profile`` ("A profile already exists with one of these identifiers."),
  ``meta.duplicate_profile_id`` naming the profile that holds it. The envelope is the one Klaviyo sends, as
  recorded in PostHog's Klaviyo destination test (PostHog/posthog:
  posthog/cdp/templates/klaviyo/test_template_klaviyo.py) and explained by Klaviyo staff at
  https://community.klaviyo.com/developer-group-64/409-a-profile-already-exists-with-one-of-these-identifiers-15864.
- Update Profile (``PATCH /api/profiles/{id}``, https://developers.klaviyo.com/en/reference/update_profile):
  setting an identifier to a value another profile holds is the same 409; ``null`` clears a field.
- Create or Update Profile (``POST /api/profile-import``,
  https://developers.klaviyo.com/en/reference/create_or_update_profile) and the Bulk Import Profiles job
  (https://developers.klaviyo.com/en/docs/use_klaviyos_bulk_profile_import_api) upsert: the profile the
  identifiers match is updated and takes the identifiers it lacks ("If you provide an existing profile's
  email address and a new phone number ..., the matching profile's phone number will be updated"), else a
  profile is created. Identifiers naming two different profiles cannot become one profile: the upsert is
  refused with the same 409 (``DuplicateProfile`` here). Klaviyo does not document the bulk job's answer
  to such a row; the sandbox reports it as that row's import error (code ``duplicate_profile``) and changes
  nothing, the strict reading. The bulk job never clears a field with ``null``.
- Bulk Subscribe Profiles (https://developers.klaviyo.com/en/reference/bulk_subscribe_profiles) names
  people by email and phone number: the sandbox subscribes the profile they match first, else creates
  one. Add and Remove Profiles to/from List (https://developers.klaviyo.com/en/reference/add_profiles_to_list)
  take profile ids only, so a list holds profiles, never identifiers.

An upsert matches on email, then external id, then phone number (``MATCH_ORDER``); emails compare
case-insensitively. Klaviyo's optional multi-email profiles (secondary addresses, an account setting the
bulk import guide mentions) are not modelled: one email per profile, as accounts have by default. Consent
is kept per profile and never changed here.

Custom properties (``attributes.properties``, any JSON object) are merged into the profile's, key by key.
The bulk import "does not support setting fields to null to clear them. Only fields explicitly provided
with non-null values will be updated" (the bulk import guide above); a property is removed with Update
Profile's ``meta.patch_properties.unset`` (a key or a list of keys: "Remove a key or keys (and their
values) completely from properties", the ProfileMetaPatchProperties schema of
https://developers.klaviyo.com/en/reference/update_profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ATTRIBUTES", "DuplicateProfile", "IDENTIFIERS", "MATCH_ORDER", "MissingIdentifier", "ProfileStore"]

IDENTIFIERS = ("email", "phone_number", "external_id")
MATCH_ORDER = ("email", "external_id", "phone_number")
ATTRIBUTES = ("email", "phone_number", "external_id", "first_name", "last_name")


class DuplicateProfile(Exception):
    """A value of ``field`` is held by another profile, ``profile_id``: Klaviyo's 409 ``duplicate_profile``."""

    def __init__(self, field: str, profile_id: str) -> None:
        super().__init__(f"{field} is held by profile {profile_id}")
        self.field, self.profile_id = field, profile_id


class MissingIdentifier(Exception):
    """The change would leave a profile without email, phone number and external id."""


class ProfileStore:
    """Profiles by id, with an index per identifier that keeps every value on one profile."""

    def __init__(self, profiles: Mapping[str, Mapping[str, Any]] | None = None, next_id: int = 1) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self._index: dict[str, dict[str, str]] = {field: {} for field in IDENTIFIERS}
        self.next_id = next_id
        for profile_id, profile in (profiles or {}).items():
            self.profiles[profile_id] = dict(profile)
            for field in IDENTIFIERS:
                if profile.get(field):
                    self._index[field][_key(field, profile[field])] = profile_id

    def find(self, field: str, value: Any) -> str | None:
        """The id of the profile holding ``value`` as ``field``; None when none does."""
        if field not in self._index or not isinstance(value, str) or not value:
            return None
        return self._index[field].get(_key(field, value))

    def owners(self, attributes: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field, profile id) for each identifier in ``attributes`` some profile holds, in match order."""
        found = ((field, self.find(field, attributes.get(field))) for field in MATCH_ORDER)
        return [(field, owner) for field, owner in found if owner is not None]

    def create(self, attributes: Mapping[str, Any]) -> str:
        """A new profile; ``DuplicateProfile`` when one of its identifiers is held (Create Profile)."""
        held = self.owners(attributes)
        if held:
            raise DuplicateProfile(*held[0])
        if not any(attributes.get(field) for field in IDENTIFIERS):
            raise MissingIdentifier
        profile_id = f"01HZ{self.next_id:022d}"
        self.next_id += 1
        self.profiles[profile_id] = dict.fromkeys(ATTRIBUTES) | {"email_consent": "NEVER_SUBSCRIBED", "sms_consent": "NEVER_SUBSCRIBED",
                                                                 "properties": {}}
        self._apply(profile_id, attributes)
        return profile_id

    def update(self, profile_id: str, attributes: Mapping[str, Any]) -> None:
        """Set the given fields (``None`` clears one), as Update Profile does.

        Raises:
            KeyError: no such profile.
            DuplicateProfile: a new identifier value is held by another profile; nothing changes.
            MissingIdentifier: the profile would be left without any identifier; nothing changes.
        """
        profile = self.profiles[profile_id]
        for field, owner in self.owners(attributes):
            if owner != profile_id:
                raise DuplicateProfile(field, owner)
        after = {field: attributes.get(field, profile.get(field)) for field in IDENTIFIERS}
        if not any(after.values()):
            raise MissingIdentifier
        self._apply(profile_id, attributes)

    def upsert(self, attributes: Mapping[str, Any], profile_id: str | None = None) -> tuple[str, bool]:
        """Update the profile the identifiers (or ``profile_id``) name, else create one; returns (id, created).

        Raises:
            KeyError: ``profile_id`` names no profile.
            DuplicateProfile: the identifiers name two different profiles; nothing changes.
            MissingIdentifier: no identifier and no ``profile_id``.
        """
        held = self.owners(attributes)
        if profile_id is not None and profile_id not in self.profiles:
            raise KeyError(profile_id)
        target = profile_id or (held[0][1] if held else None)
        clash = next(((field, owner) for field, owner in held if owner != target), None)
        if clash is not None:
            raise DuplicateProfile(*clash)
        if target is None:
            return self.create(attributes), True
        self.update(target, attributes)
        return target, False

    def unset_properties(self, profile_id: str, keys: list[str]) -> None:
        """``meta.patch_properties.unset`` of Update Profile: the keys and their values leave ``properties``."""
        for key in keys:
            self.profiles[profile_id].setdefault("properties", {}).pop(key, None)

    def _apply(self, profile_id: str, attributes: Mapping[str, Any]) -> None:
        profile = self.profiles[profile_id]
        # custom properties merge key by key, kept as the JSON values sent; a null never clears one (the bulk
        # import documents it; Update Profile clears a property only through meta.patch_properties.unset)
        given = attributes.get("properties") or {}
        profile.setdefault("properties", {}).update({k: v for k, v in given.items() if v is not None})
        for field in ATTRIBUTES:
            if field not in attributes:
                continue
            value = attributes[field]
            value = str(value) if value not in (None, "") else None
            if field in self._index:
                if profile.get(field):
                    self._index[field].pop(_key(field, profile[field]), None)
                if value is not None:
                    self._index[field][_key(field, value)] = profile_id
            profile[field] = value


def _key(field: str, value: str) -> str:
    return value.lower() if field == "email" else value
