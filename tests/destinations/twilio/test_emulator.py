"""The Twilio emulator's own promises: what the connector tests and the contract suite rely on."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlencode

from destinations.emulation import Request
from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_FROM, TwilioEmulator

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


# --- the message log ------------------------------------------------------------------------------

AUTH = {"authorization": "Basic " + base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:sandbox-twilio-key".encode()).decode()}
MESSAGES = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
DAY = 86_400.0
JUNE_10 = datetime(2025, 6, 10, 12, 0, tzinfo=timezone.utc).timestamp()


def call(emulator: TwilioEmulator, method: str, path: str, query: dict | None = None, form: dict | None = None):
    request = Request(method, path, urlencode(query or {}), urlencode(form or {}).encode(), AUTH)
    status, _, body = emulator.serve(request)
    return status, json.loads(body) if body else None


def log_of(days: dict[str, float | None]) -> TwilioEmulator:
    """An emulator whose log holds one message per (sid suffix -> moment sent, None: still queued), each
    created an hour before it was sent."""
    emulator = TwilioEmulator(key="sandbox-twilio-key")
    emulator.load_state({"messages": [
        {"sid": f"SM{suffix:0>32}", "to": PHONE if suffix != "9" else "+14155550009", "from": DEFAULT_FROM,
         "messaging_service_sid": None, "body": "hi", "at": (sent or JUNE_10) - 3600, "sent_at": sent,
         "status": "sent" if sent else "queued"} for suffix, sent in days.items()]})
    return emulator


def sids(page: dict) -> list[str]:
    return [m["sid"][-1] for m in page["messages"]]


def test_a_create_is_answered_as_twilio_does_and_the_log_shows_it_sent():
    emulator = TwilioEmulator(key="sandbox-twilio-key")
    status, created = call(emulator, "POST", MESSAGES, form={"To": PHONE, "From": DEFAULT_FROM, "Body": "hi"})
    assert (status, created["status"], created["date_sent"], created["direction"]) == (201, "queued", None, "outbound-api")
    assert parsedate_to_datetime(created["date_created"]).tzinfo is not None  # RFC 2822, GMT
    status, page = call(emulator, "GET", MESSAGES, {"To": PHONE})
    [listed] = page["messages"]
    assert (status, listed["sid"], listed["status"], listed["body"]) == (200, created["sid"], "sent", "hi")
    assert listed["date_sent"] is not None and page["next_page_uri"] is None and page["page_size"] == 50


def test_the_log_filters_by_recipient_and_sender_newest_first():
    emulator = log_of({"1": JUNE_10, "2": JUNE_10 + 60, "9": JUNE_10 + 120, "3": None})
    assert sids(call(emulator, "GET", MESSAGES, {"To": PHONE})[1]) == ["3", "2", "1"]  # not sent yet: first
    assert sids(call(emulator, "GET", MESSAGES, {"To": "+14155550009"})[1]) == ["9"]
    assert sids(call(emulator, "GET", MESSAGES, {"From": "+15005550001"})[1]) == []
    assert sids(call(emulator, "GET", MESSAGES)[1]) == ["3", "9", "2", "1"]


def test_date_sent_filters_compare_gmt_dates_and_never_match_a_message_not_sent_yet():
    emulator = log_of({"1": JUNE_10 - DAY, "2": JUNE_10, "3": JUNE_10 + DAY, "4": None})
    on = {"DateSent": "2025-06-10"}
    assert sids(call(emulator, "GET", MESSAGES, on)[1]) == ["2"]
    assert sids(call(emulator, "GET", MESSAGES, {"DateSent>": "2025-06-10"})[1]) == ["3", "2"]  # on or after
    assert sids(call(emulator, "GET", MESSAGES, {"DateSent<": "2025-06-10"})[1]) == ["2", "1"]  # on or before
    assert sids(call(emulator, "GET", MESSAGES, {"DateSent>": "2025-06-10T23:59:59Z"})[1]) == ["3", "2"]  # the SDK's form: its date
    for bad in ("10/06/2025", "2025-06-10 12:00", "yesterday"):
        status, body = call(emulator, "GET", MESSAGES, {"DateSent": bad})
        assert (status, body["code"]) == (400, 20001)


def test_the_log_pages_by_next_page_uri_until_it_is_null():
    emulator = log_of({str(i): JUNE_10 + i for i in range(1, 8)})
    seen, query, pages = [], {"To": PHONE, "PageSize": "3"}, 0
    while True:
        status, page = call(emulator, "GET", MESSAGES, query)
        assert status == 200 and page["page"] == pages and len(page["messages"]) <= 3
        seen += sids(page)
        pages += 1
        if page["next_page_uri"] is None:
            break
        path, _, raw = page["next_page_uri"].partition("?")
        assert path == MESSAGES and "PageToken=PA" in raw
        query = {k: v[-1] for k, v in parse_qs(raw).items()}
    assert (seen, pages) == (["7", "6", "5", "4", "3", "2", "1"], 3)
    for bad in ({"PageSize": "0"}, {"PageSize": "1001"}, {"PageSize": "x"}, {"PageToken": "PAnothing"}):
        assert call(emulator, "GET", MESSAGES, bad)[0] == 400


def test_a_queued_message_gets_its_date_sent_when_delivered():
    emulator = TwilioEmulator(key="sandbox-twilio-key")
    emulator.deliver_later = True
    call(emulator, "POST", MESSAGES, form={"To": PHONE, "From": DEFAULT_FROM, "Body": "hi"})
    [queued] = call(emulator, "GET", MESSAGES, {"To": PHONE})[1]["messages"]
    assert (queued["status"], queued["date_sent"]) == ("queued", None)
    emulator.deliver()
    [sent] = call(emulator, "GET", MESSAGES, {"To": PHONE})[1]["messages"]
    assert sent["status"] == "sent" and sent["date_sent"] is not None
