"""Twilio's inbound-message webhook: which destination a reply is for, and whether it opts out or back in.

Twilio posts every reply to a number (or Messaging Service) to its incoming-message webhook, form-encoded, with
``AccountSid``, ``From`` (the member's phone, E.164), ``To`` (our sender), ``MessagingServiceSid`` when a
service received it, ``Body``, and ``OptOutType`` (STOP, START or HELP) when a Messaging Service with Advanced
Opt-Out matched one of its own keywords (https://www.twilio.com/docs/messaging/guides/webhook-request,
https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out).

Keywords: Twilio's default opt-out handling takes a reply whose whole text, trimmed and in any case, is
STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT, and since 14 May 2025 also REVOKE and OPTOUT (the FCC's
revocation rule; no spaces: "OPT OUT" is not one); START, YES and UNSTOP opt back in. "STOP PLEASE" is not a
keyword. Sources: https://help.twilio.com/articles/223134027-Twilio-support-for-opt-out-keywords-SMS-STOP-filtering,
https://www.twilio.com/en-us/blog/update-to-fcc-s-sms-opt-out-keywords.

Destination: the reply's ``AccountSid`` selects the configured accounts; if several destinations share the
account, the ones whose sender (``from_number`` = ``To``, or ``messaging_service_sid`` = ``MessagingServiceSid``)
received the reply. A STOP reaching none of their senders still opts the phone out of every destination of
the account (a person who said stop to the brand is not texted again); a START lifts only the opt-out of the
destinations whose sender received it, as Twilio lifts its own block for that sender only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from syncer.environment import resolve_secret

__all__ = ["OPT_IN_KEYWORDS", "OPT_OUT_KEYWORDS", "TwilioAccount", "opt_action", "target_destinations",
           "twilio_accounts"]

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})


@dataclass(frozen=True)
class TwilioAccount:
    """One configured twilio_sms destination as the webhook sees it: its account, token and sender."""

    destination: str
    account_sid: str
    auth_token: SecretStr
    from_number: str | None
    messaging_service_sid: str | None


def twilio_accounts(project, names: list[str] | None) -> list[TwilioAccount]:
    """The twilio_sms destinations named (None: all of them), their SID and token read from the environment.

    Raises:
        ConfigError: an Account SID or Auth Token variable is not set.
    """
    chosen = names if names is not None else sorted(n for n, c in project.destinations.items() if c.type == "twilio_sms")
    accounts = []
    for name in chosen:
        config = project.destinations[name]
        sid = resolve_secret(config.account_sid_env, what=f"destination {name} (Account SID)")
        token = resolve_secret(config.auth_token_env, what=f"destination {name} (Auth Token)")
        accounts.append(TwilioAccount(name, sid.get_secret_value(), token, config.from_number,
                                      config.messaging_service_sid))
    return accounts


def opt_action(params: dict[str, str]) -> Literal["opt_out", "opt_in"] | None:
    """What a reply asks for: Advanced Opt-Out's verdict when Twilio sent one, else the default keywords."""
    verdict = params.get("OptOutType", "").strip().upper()
    if verdict == "STOP":
        return "opt_out"
    if verdict == "START":
        return "opt_in"
    word = params.get("Body", "").strip().upper()
    return "opt_out" if word in OPT_OUT_KEYWORDS else "opt_in" if word in OPT_IN_KEYWORDS else None


def target_destinations(accounts: list[TwilioAccount], params: dict[str, str], action: str) -> list[str]:
    """The destinations a reply's opt-out or opt-in applies to (``accounts``: those of its AccountSid)."""
    to, service = params.get("To"), params.get("MessagingServiceSid")
    by_sender = [a.destination for a in accounts
                 if (a.from_number and a.from_number == to) or (a.messaging_service_sid and a.messaging_service_sid == service)]
    if by_sender or action == "opt_in":
        return by_sender
    return [a.destination for a in accounts]
