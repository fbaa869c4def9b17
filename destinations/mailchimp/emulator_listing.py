"""The Mailchimp emulator's read-back routes and the hand edits tests make to its state.

Routes (mixed into ``MailchimpEmulator``)::

    GET /3.0/lists/{list_id}/tag-search?name=&count=&offset=
        {tags: [{id, name}], total_items}: tags whose name starts with ``name`` (all without it)
    GET /3.0/lists/{list_id}/segments/{segment_id}/members?count=&offset=&include_cleaned=
        &include_transactional=&include_unsubscribed=
        {members: [member], total_items, _links}: a tag's or static segment's contacts, by contact

As Mailchimp documents them: ``count`` defaults to 10 and may not exceed 1,000 (400 "Invalid Resource"
above), ``offset`` defaults to 0; cleaned, transactional and unsubscribed contacts are left out unless their
``include_*`` flag is ``true`` (so a reader that forgets them misses every non-subscribed contact a sync
tagged). Sources: https://mailchimp.com/developer/marketing/api/list-segment-members/list-members-in-segment/
and https://mailchimp.com/developer/marketing/api/list-tags/search-for-tags-on-a-list-by-name/ (name
"compared to each tag as a prefix"; from Mailchimp's OpenAPI as republished by api-evangelist/mailchimp).

Hand edits, as a person in Mailchimp's web app makes them (named and shaped as the Klaviyo emulator's, so
a test edits any listing platform the same way; "list" is the sync's audience, here a tag or static segment):

- ``remove_from_list(audience_id, email)``: the contact loses the tag (or leaves the static segment) and
  stays in the audience;
- ``add_to_list(audience_id, email=...)``: a contact (created subscribed when new) gets the tag or joins the
  segment;
- ``change_email(email, new_email)``: the contact's email changes in every audience holding it; like a
  PATCH of ``email_address`` its id (the MD5 of the email) changes with it, its ``contact_id``, tags and
  segments stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from destinations.emulation import Request, Response
from destinations.mailchimp.audience import parse_audience

__all__ = ["ListingRoutes", "MAX_COUNT"]

MAX_COUNT = 1000
_HIDDEN_UNLESS = {"cleaned": "include_cleaned", "transactional": "include_transactional", "unsubscribed": "include_unsubscribed"}


class ListingRoutes:
    """Read-back routes and hand edits; ``MailchimpEmulator`` provides the state, the helpers and the
    problem responses (``not_found``, ``invalid``) and ``digest`` (a contact's id) used here."""

    lists: dict[str, dict[str, Any]]
    lock: Any
    not_found: Callable[[], Exception]
    invalid: Callable[[str, str], Exception]
    digest: Callable[[str], str]

    # ----- routes ---------------------------------------------------------------------------------
    def _get_tag_search(self, request: Request, list_id: str) -> Response:
        audience = self._list(list_id)
        params = request.params()
        count, offset = _paging(params, self.invalid)
        prefix = params.get("name", [""])[0]
        # tags are static segments by name (one id space, as in Mailchimp)
        tags = [{"id": int(k), "name": s["name"]} for k, s in sorted(audience["segments"].items(), key=lambda i: int(i[0]))
                if s["name"].startswith(prefix)]
        return Response(200, {"tags": tags[offset:offset + count], "total_items": len(tags)})

    def _get_segment_members(self, request: Request, list_id: str, segment_id: str) -> Response:
        audience = self._list(list_id)
        segment = audience["segments"].get(segment_id)
        if segment is None:
            raise self.not_found()
        params = request.params()
        count, offset = _paging(params, self.invalid)
        shown = [digest for digest in segment["members"] if digest in audience["members"]
                 and _shown(audience["members"][digest]["status"], params)]
        page = [self._member(list_id, digest) for digest in shown[offset:offset + count]]
        return Response(200, {"members": page, "total_items": len(shown), "_links": []})

    # ----- hand edits -------------------------------------------------------------------------------
    def remove_from_list(self, audience_id: str, email: str) -> str | None:
        """Take the contact out of the tag or static segment ``audience_id`` names (it stays in the audience);
        returns its id, None when the audience has no such contact."""
        with self.lock:
            segment, digest = self._target(audience_id), self.digest(email)
            found = segment["members"].pop(digest, False) is None
            return digest if found or digest in self.lists[audience_id.strip().partition(":")[0]]["members"] else None

    def add_to_list(self, audience_id: str, *, email: str) -> str:
        """Put a contact (a new one is subscribed) in the tag or static segment ``audience_id`` names; returns
        its id."""
        with self.lock:
            list_id = audience_id.strip().partition(":")[0]
            members = self.lists[list_id]["members"]
            digest = self.digest(email)
            members.setdefault(digest, {"email_address": email, "status": "subscribed", "merge_fields": {},
                                        "contact_id": uuid.uuid4().hex})
            self._target(audience_id)["members"][digest] = None
            return digest

    def change_email(self, email: str, new_email: str) -> str:
        """Change a contact's email in every audience holding it; returns its new id (the MD5 of the new
        email). KeyError when no audience has the contact, ValueError when the new email is taken."""
        with self.lock:
            before, after = self.digest(email), self.digest(new_email)
            holding = [a for a in self.lists.values() if before in a["members"]]
            if not holding:
                raise KeyError("no contact has that email")
            if any(after in a["members"] for a in holding):
                raise ValueError("that email is already a list member")
            for audience in holding:
                member = audience["members"].pop(before)
                audience["members"][after] = dict(member, email_address=new_email)
                for segment in audience["segments"].values():
                    if segment["members"].pop(before, False) is None:
                        segment["members"][after] = None
            return after

    # ----- helpers ----------------------------------------------------------------------------------
    def _target(self, audience_id: str) -> dict[str, Any]:
        target = parse_audience(audience_id)
        if target.kind == "segment":
            return self.lists[target.list_id]["segments"][target.target]
        return self._tag_segment(target.list_id, target.target, create=True)


def _paging(params: dict[str, list[str]], invalid: Callable[[str, str], Exception]) -> tuple[int, int]:
    try:
        count = int(params.get("count", ["10"])[0])
        offset = int(params.get("offset", ["0"])[0])
    except ValueError:
        raise invalid("count", "count and offset are integers.") from None
    if not 1 <= count <= MAX_COUNT:
        raise invalid("count", f"Schema describes integer, maximum {MAX_COUNT}, {count} given.")
    if offset < 0:
        raise invalid("offset", "Schema describes integer, minimum 0.")
    return count, offset


def _shown(status: str, params: dict[str, list[str]]) -> bool:
    flag = _HIDDEN_UNLESS.get(status)
    return flag is None or params.get(flag, ["false"])[0].lower() == "true"
