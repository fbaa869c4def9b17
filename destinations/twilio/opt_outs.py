"""Opt-outs (STOP) of a Twilio destination, kept in the ledger through ``Destination.id_cache``.

Per destination, key ``sms_opt_out:<sha256 of the E.164 phone>`` (no phone number in another ledger table),
value ``opted_out`` or ``opted_in``; written when Twilio answers 21610 and by ``record_opt_out`` (an
inbound-STOP webhook handler) and ``record_opt_in`` (START).
"""

from __future__ import annotations

import hashlib
from typing import Any

import phonenumbers

__all__ = ["OPTED_IN", "OPTED_OUT", "opt_out_key", "record_opt_in", "record_opt_out"]

OPTED_OUT, OPTED_IN = "opted_out", "opted_in"


def opt_out_key(phone: str) -> str:
    """The ``id_cache`` key of a phone's opt-out state (hashed: no phone number in another ledger table)."""
    return "sms_opt_out:" + hashlib.sha256(phone.encode()).hexdigest()


def record_opt_out(ledger: Any, destination: str, phone: str) -> None:
    """Record an inbound STOP for ``phone`` (E.164) so ``destination`` never texts it again."""
    ledger.id_cache(destination).put_many({opt_out_key(_e164(phone)): OPTED_OUT})


def record_opt_in(ledger: Any, destination: str, phone: str) -> None:
    """Record an inbound START: ``phone`` may be texted again (if its consent is granted)."""
    ledger.id_cache(destination).put_many({opt_out_key(_e164(phone)): OPTED_IN})


def _e164(phone: str) -> str:
    number = phonenumbers.parse(phone, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
