"""Twilio SMS: one text per entry into a segment (sync mode: trigger), claimed before it is sent."""

from destinations.spec import DestinationSpec, load_object
from destinations.twilio.config import TwilioSmsConfig

SPEC = DestinationSpec(
    type="twilio_sms",
    config=TwilioSmsConfig,
    connector="destinations.twilio.connector:TwilioSmsDestination",
    capabilities=lambda config: load_object("destinations.twilio.connector:TwilioSmsDestination").capabilities,
    emulator="destinations.twilio.emulator:TwilioEmulator",
    mount="twilio",
    sandbox_secrets={"SANDBOX_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1", "SANDBOX_TWILIO_KEY": "sandbox-twilio-key"},
    seed_audience=None,
)
