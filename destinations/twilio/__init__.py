"""Twilio SMS: one text per entry into a segment (sync mode: trigger), claimed before it is sent."""

from destinations.spec import DestinationSpec
from destinations.twilio.config import CAPABILITIES, TwilioSmsConfig

_SANDBOX_AUDIENCE = "cart_reminder"

SPEC = DestinationSpec(
    type="twilio_sms",
    config=TwilioSmsConfig,
    connector="destinations.twilio.connector:TwilioSmsDestination",
    capabilities=CAPABILITIES,
    emulator="destinations.twilio.emulator:TwilioEmulator",
    mount="twilio",
    # what the emulator accepts by default (its DEFAULT_ACCOUNT_SID, and Emulator's default key)
    sandbox_secrets={"SANDBOX_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1", "SANDBOX_TWILIO_KEY": "sandbox-twilio-key"},
    seed_audience=None,  # Twilio keeps no lists: an audience is a message in the destination file
    sandbox_destination=lambda base_url: {
        "type": "twilio_sms", "endpoint": base_url,
        "account_sid_env": "SANDBOX_TWILIO_ACCOUNT_SID", "auth_token_env": "SANDBOX_TWILIO_KEY",
        "from_number": "+15005550006",  # the emulator's sender (Twilio's magic test number)
        "messages": {_SANDBOX_AUDIENCE: "Your cart misses you. Reply STOP to opt out."},
        # Quiet hours are judged at a fixed daytime instant, so the suite's members (US phones, area code
        # 415: California, 08:00-21:00 local) are texted at any wall-clock hour: Wednesday 10:00 there.
        "sandbox_time": "2025-06-11T10:00:00-07:00",
    },
    sandbox_audience=_SANDBOX_AUDIENCE,
    # Twilio keeps no membership: the "audience" holds whoever was texted its message
    sandbox_holds=lambda emulator, audience_id, identifiers: bool(
        identifiers.get("phone") and emulator.sent_to(identifiers["phone"])),
    # the person texted STOP: Twilio refuses every later send to the number (21610)
    sandbox_refuse=lambda emulator, identifiers: emulator.opt_out(identifiers["phone"]),
)
