"""The Klaviyo emulator's profile routes: Get Profiles, Create Profile, Update Profile and Create or
Update Profile, and how a profile is rendered as JSON:API.

A mixin of ``destinations.klaviyo.emulator.KlaviyoEmulator``. Identity conflicts are the profile store's
(``destinations.klaviyo.profile_store``, which cites Klaviyo's pages), answered here as Klaviyo's 409
``duplicate_profile`` with ``meta.duplicate_profile_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from destinations.emulation import Request, Response
from destinations.klaviyo import emulator_wire as wire
from destinations.klaviyo.profile_store import ATTRIBUTES, DuplicateProfile, MissingIdentifier, ProfileStore

__all__ = ["LIST_MEMBER_FIELDS", "ProfileRoutes"]

# fields[profile] of Get Profiles for List: the top-level names Klaviyo documents (a dotted name such as
# location.city selects part of one); those the sandbox does not model are answered as null
LIST_MEMBER_FIELDS = frozenset({
    "created", "email", "external_id", "first_name", "id", "image", "joined_group_at", "last_event_date", "last_name",
    "locale", "location", "organization", "phone_number", "predictive_analytics", "properties", "subscriptions",
    "title", "updated"})


class ProfileRoutes:
    """Profile routes over the emulator's profile store."""

    name: str
    store: ProfileStore

    if TYPE_CHECKING:
        @property
        def profiles(self) -> dict[str, dict[str, Any]]: ...

    # ----- profiles ---------------------------------------------------------------------------------
    def _get_profiles(self, request: Request) -> Response:
        params = request.params()
        if not params.get("filter", [""])[0]:
            return wire.offset_page(request, self.name, [self._resource(p, request) for p in self.profiles], wire.MAX_PAGE)
        field, values = wire.parse_filter(params["filter"][0])
        if field == "id":
            found = [p for p in values if p in self.profiles]
        else:
            found = [p for p in (self.store.find(field, v) for v in values) if p]
        found = list(dict.fromkeys(found))
        return wire.offset_page(request, self.name, [self._resource(p, request) for p in found], wire.MAX_PAGE)

    def _post_profiles(self, request: Request) -> Response:
        """Create Profile: 409 ``duplicate_profile`` when an identifier is held (see ``profile_store``)."""
        attributes = wire.profile_body(request, with_id=False)[1]
        try:
            profile_id = self.store.create(attributes)
        except DuplicateProfile as exc:
            raise wire.duplicate(exc) from None
        return Response(201, {"data": self._resource(profile_id, request)})

    def _patch_profile(self, request: Request, profile_id: str) -> Response:
        """Update Profile: ``null`` clears a field; an identifier another profile holds is a 409."""
        given_id, attributes = wire.profile_body(request, with_id=True)
        if given_id != profile_id:
            raise wire.KlaviyoError(409, "conflict", "Conflict.", "The id in the body does not match the id in the URL.", "/data/id")
        if profile_id not in self.profiles:
            raise wire.KlaviyoError(404, "not_found", "Not found.", f"A profile with id {profile_id} does not exist.")
        self._update(profile_id, attributes)
        self.store.unset_properties(profile_id, wire.unset_keys(request))
        return Response(200, {"data": self._resource(profile_id, request)})

    def _post_profile_import(self, request: Request) -> Response:
        """Create or Update Profile: an upsert by id or identifiers; 201 created, 200 updated."""
        profile_id, attributes = wire.profile_body(request, with_id=None)
        if profile_id is not None and profile_id not in self.profiles:
            raise wire.KlaviyoError(404, "not_found", "Not found.", f"A profile with id {profile_id} does not exist.", "/data/")
        try:
            profile_id, created = self.store.upsert(attributes, profile_id)
        except DuplicateProfile as exc:
            raise wire.duplicate(exc) from None
        except MissingIdentifier:
            raise wire.no_identifier() from None
        return Response(201 if created else 200, {"data": self._resource(profile_id, request)})

    def _update(self, profile_id: str, attributes: Mapping[str, Any]) -> None:
        try:
            self.store.update(profile_id, attributes)
        except DuplicateProfile as exc:
            raise wire.duplicate(exc) from None
        except MissingIdentifier:
            raise wire.no_identifier() from None

    def _resource(self, profile_id: str, request: Request, *, fields: frozenset[str] | None = None,
                  joined: str | None = None) -> dict[str, Any]:
        """A profile as JSON:API; ``fields`` is a validated sparse fieldset (Get Profiles for List), else the
        profile endpoints' own ``fields[profile]`` keeps the attributes modelled here."""
        profile = self.profiles[profile_id]
        params = request.params()
        if fields is None:
            wanted = params.get("fields[profile]", [""])[0]
            keys = [k for k in wanted.split(",") if k in ATTRIBUTES] if wanted else list(ATTRIBUTES)
            attributes = {k: profile.get(k) for k in keys}
        else:
            modelled = {k: profile.get(k) for k in ATTRIBUTES} | {"joined_group_at": joined}
            attributes = {k: modelled.get(k) for k in (fields or LIST_MEMBER_FIELDS - {"id", "subscriptions", "predictive_analytics"})}
        if "subscriptions" in params.get("additional-fields[profile]", [""])[0] or "subscriptions" in (fields or ()):
            attributes["subscriptions"] = {
                "email": {"marketing": {"consent": profile["email_consent"]}},
                "sms": {"marketing": {"consent": profile["sms_consent"]}},
            }
        attributes.pop("id", None)
        return {"type": "profile", "id": profile_id, "attributes": attributes,
                "links": {"self": f"{wire.base_url(request, self.name)}/api/profiles/{profile_id}/"}}
