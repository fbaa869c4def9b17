"""Reading Twilio's message log: did a text in doubt go out?

A send cut short (the sender killed mid-request, a read timeout, HTTP 500) may or may not have created a
Message. Twilio's list resource answers it ("Read multiple Message resources",
twilio.com/docs/messaging/api/message-resource; query names as twilio-python's ``MessageList.page`` sends
them)::

    GET /2010-04-01/Accounts/{AccountSid}/Messages.json?To=+14155550001&PageSize=1000
        -> {"messages": [...], "next_page_uri": "/2010-04-01/...&PageToken=PA...", "page": 0, ...}

Filters ``To``, ``From``, ``DateSent``, ``DateSent<``, ``DateSent>`` (GMT dates ``YYYY-MM-DD``: on, on or
before, on or after), ``PageSize`` 1-1000 (default 50); the next page is each page's ``next_page_uri``, null
on the last; messages come newest first. Each Message carries ``sid``, ``to``, ``from``,
``messaging_service_sid``, ``body``, ``direction``, ``status``, ``date_created`` and ``date_sent`` (RFC 2822,
GMT); ``date_sent`` is "when Twilio sent the message", so a message still queued has none.

So the log is filtered by ``To`` only, never by ``DateSent`` (it would hide a queued text, the one in
doubt), and each message is matched here: outbound, our sender, our body, created no earlier than the claim
(less a minute of clock skew between us and Twilio). Any status counts: a text Twilio failed to deliver was
still sent once as far as we can know, and sending again is what must never happen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from destinations.responses import PlatformResponse
from syncer.errors import ConfigError, RateLimited, SyncError, TransientError

__all__ = ["LOG_PAGE_SIZE", "find_in_log"]

LOG_PAGE_SIZE = 1000  # Twilio's largest page: the messages to one number fit in one or two
_MAX_PAGES = 20  # beyond 20,000 messages to one number the log is not read through: the text stays in doubt
_CLOCK_SKEW_S = 60.0


def find_in_log(session: requests.Session, url: str, *, phone: str, body: str, sender: tuple[str, str], since: float,
                timeout: tuple[float, float], classify: Callable[[PlatformResponse], SyncError | None],
                name: str) -> str | None:
    """The SID of an outbound message to ``phone`` with ``body`` from ``sender`` (field, value) created at or
    after ``since`` (epoch seconds), reading the list at ``url`` page by page; None when there is none.

    Raises:
        TransientError: Twilio could not be read, or holds more messages to the number than are read.
        ConfigError: Twilio refused the credentials or the account.
    """
    floor = since - _CLOCK_SKEW_S
    params: dict[str, Any] | None = {"To": phone, "PageSize": LOG_PAGE_SIZE}
    root = url.split("/2010-04-01/", 1)[0]
    for _ in range(_MAX_PAGES):
        page = _read(session, url, params, timeout, classify, name)
        for message in page.get("messages") or []:
            if isinstance(message, dict) and _ours(message, phone, body, sender, floor):
                return str(message.get("sid") or "")
        next_uri = page.get("next_page_uri")
        if not next_uri:
            return None
        url, params = root + str(next_uri), None  # the next page's query is Twilio's, as given
    raise TransientError(f"Twilio's message log of destination '{name}' holds more than"
                         f" {_MAX_PAGES * LOG_PAGE_SIZE} messages to one number; the text in doubt is not resent")


def _read(session: requests.Session, url: str, params: dict[str, Any] | None, timeout: tuple[float, float],
          classify: Callable[[PlatformResponse], SyncError | None], name: str) -> dict[str, Any]:
    try:
        response = session.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:  # its text holds the URL, and the URL the phone: never chain it
        raise TransientError(f"Cannot read Twilio's message log of destination '{name}' ({type(exc).__name__})") from None
    try:
        answer = response.json() if response.content else None
    except ValueError:
        answer = None
    failure = classify(PlatformResponse(response.status_code, answer, response.headers))
    if isinstance(failure, (ConfigError, RateLimited)):
        raise failure
    if failure is not None or not isinstance(answer, dict):
        raise TransientError(f"Twilio's message log of destination '{name}' answered HTTP {response.status_code}"
                             " without a page of messages", detail=getattr(failure, "detail", None))
    return answer


def _ours(message: dict[str, Any], phone: str, body: str, sender: tuple[str, str], floor: float) -> bool:
    field, value = sender
    if message.get("to") != phone or message.get("body") != body or message.get(field) != value:
        return False
    if not str(message.get("direction") or "").startswith("outbound"):
        return False
    created = _epoch(message.get("date_created"))
    return created is None or created >= floor  # a date we cannot read: counted as ours, never resent


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() if moment.tzinfo else None
