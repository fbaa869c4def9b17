"""Mailchimp audiences: membership as a tag or a static segment, never the subscription status."""

from collections.abc import Mapping
from typing import Any

from destinations.mailchimp.audience import parse_audience
from destinations.mailchimp.config import CAPABILITIES, MailchimpAudienceConfig
from destinations.spec import DestinationSpec


def _seed_audience(emulator: Any, config: MailchimpAudienceConfig, audience_id: str, name: str) -> None:
    """Make the audience (list) exist, and the static segment when the audience_id names one; a tag is
    created by its first add, as in Mailchimp."""
    target = parse_audience(audience_id, "tag" if config.membership == "tag" else "segment")
    emulator.create_list(target.list_id, name=name)
    if target.kind == "segment":
        emulator.create_segment(target.list_id, name, segment_id=int(target.target))


def _holds(emulator: Any, audience_id: str, identifiers: Mapping[str, str]) -> bool:
    """Whether the tag (or static segment) holds the contact of the email: a contact is its email, a phone
    only one of its merge fields."""
    email = identifiers.get("email")
    if not email:
        return False
    target = parse_audience(audience_id)
    held = (emulator.tag_members(target.list_id, target.target) if target.kind == "tag"
            else emulator.segment_members(target.list_id, target.target))
    return email.lower() in {e.lower() for e in held}


SPEC = DestinationSpec(
    type="mailchimp_audience",
    config=MailchimpAudienceConfig,
    connector="destinations.mailchimp.connector:MailchimpAudienceDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.mailchimp.emulator:MailchimpEmulator",
    mount="mailchimp",
    sandbox_secrets={"SANDBOX_MAILCHIMP_KEY": "sandbox-mailchimp-key"},
    seed_audience=_seed_audience,
    sandbox_destination=lambda base_url: {
        "type": "mailchimp_audience", "api_key_env": "SANDBOX_MAILCHIMP_KEY", "endpoint": base_url,
    },
    sandbox_audience="a1b2c3d4e5:tag:contract",
    sandbox_holds=_holds,
    # An address our rules take (RFC 6531 allows UTF-8 before the @) that Mailchimp refuses: it cannot
    # process non-ASCII characters in an address's prefix (mailchimp.com/help/international-characters-in-
    # mailchimp/), so the batch subscribe reports it as "looks fake or invalid".
    sandbox_refused_row={"email": "jörg.lee@example.com"},
)
