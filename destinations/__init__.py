"""One connector per platform, behind the interface in ``destinations.base``.

Connectors are imported lazily by type name so that loading a project (``syncer validate``) never
pays for an SDK import.
"""

from __future__ import annotations

import importlib

from destinations.base import (
    AudienceRef,
    BatchResult,
    Capabilities,
    Destination,
    Member,
    RowOutcome,
    RowStatus,
)

__all__ = [
    "AudienceRef", "BatchResult", "Capabilities", "Destination", "Member", "RowOutcome", "RowStatus",
    "DESTINATION_TYPES", "destination_class", "build_destination",
]

DESTINATION_TYPES: dict[str, str] = {
    "meta_audience": "destinations.meta_audience:MetaAudienceDestination",
    "google_customer_match": "destinations.google_customer_match:GoogleCustomerMatchDestination",
    "klaviyo_list": "destinations.klaviyo:KlaviyoListDestination",
    "mailchimp_audience": "destinations.mailchimp:MailchimpAudienceDestination",
    "braze": "destinations.braze:BrazeDestination",
    "iterable_list": "destinations.iterable:IterableListDestination",
    "attentive": "destinations.attentive:AttentiveDestination",
    "twilio_sms": "destinations.twilio_sms:TwilioSmsDestination",
    "fake": "destinations.fake:FakeDestination",
}


def destination_class(type_name: str) -> type[Destination]:
    module_name, _, class_name = DESTINATION_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_destination(name: str, config) -> Destination:
    """Instantiate the connector for a destination config; secrets are read from the environment now."""
    from syncer.project.config import expand_env

    cls = destination_class(config.type)
    if config.endpoint:
        config = config.model_copy(update={"endpoint": expand_env(config.endpoint)})
    instance = cls(config)
    instance.name = name
    return instance
