"""The Twilio emulator's own promises: what the connector tests and the contract suite rely on."""

from __future__ import annotations

import json

from destinations.emulation import Request
from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, TwilioEmulator

PHONE = "+14155550001"


def test_consent_is_the_numbers_opt_out_state():
    emulator = TwilioEmulator()
    assert emulator.consent_of("cart_reminder", {"phone": PHONE}) == "opted_in"
    emulator.opt_out(PHONE)  # they texted STOP
    assert emulator.consent_of("another_campaign", {"phone": PHONE}) == "opted_out"  # per number, not per message
    emulator.opt_in(PHONE)  # START
    assert emulator.consent_of("cart_reminder", {"phone": PHONE}) == "opted_in"
    assert emulator.consent_of("cart_reminder", {"email": "p@example.com"}) is None


def test_a_throttle_is_twilios_429_with_code_20429_and_the_wait():
    emulator = TwilioEmulator()
    assert emulator.throttle_next(7.0) == 7.0
    request = Request("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json", "", b"", {})
    status, headers, body = emulator.serve(request)
    assert (status, headers["Retry-After"], json.loads(body)["code"]) == (429, "7", 20429)
    assert emulator.request_count == 1
