"""Mailchimp audiences: membership as a tag or a static segment, never the subscription status."""

from destinations.mailchimp.config import MailchimpAudienceConfig
from destinations.spec import DestinationSpec, load_object

SPEC = DestinationSpec(
    type="mailchimp_audience",
    config=MailchimpAudienceConfig,
    connector="destinations.mailchimp.connector:MailchimpAudienceDestination",
    capabilities=lambda config: load_object("destinations.mailchimp.connector:MailchimpAudienceDestination").capabilities,
    emulator="destinations.mailchimp.emulator:MailchimpEmulator",
    mount="mailchimp",
    sandbox_secrets={},
    seed_audience=None,
)
