"""`syncer serve`'s endpoint: Twilio's inbound STOP webhooks and signed event posts, recorded in the ledger.

``app`` (the Starlette app and its routes), ``signatures`` (Twilio's ``X-Twilio-Signature`` and our
``X-Syncer-Signature``), ``twilio`` (opt-out keywords, which destination a reply is for) and ``events``
(the event post's body). The events themselves are kept by ``syncer.ledger.inbound``.
"""

from syncer.inbound.app import EMPTY_TWIML, ServedRoute, create_app
from syncer.inbound.signatures import event_signature, twilio_signature

__all__ = ["EMPTY_TWIML", "ServedRoute", "create_app", "event_signature", "twilio_signature"]
