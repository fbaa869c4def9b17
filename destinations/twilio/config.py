"""The config model of a Twilio SMS destination file (``destinations/<name>.yml``) and what it accepts."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, model_validator

from destinations.base import Capabilities
from destinations.config import DestinationConfigBase, env_names

__all__ = ["CAPABILITIES", "TwilioSmsConfig", "reaches_twilio"]

CAPABILITIES = Capabilities(
    platform="plain",
    identifiers=frozenset({"phone"}),
    max_batch=50,
    can_remove=False,  # a text cannot be taken back
    channel="sms",
    consent_marker=True,
    at_most_once=True,  # creating a message has no idempotency key: a resend is a second text
)


class TwilioSmsConfig(DestinationConfigBase):
    """A Twilio account that texts a member once when they enter a segment (sync mode: trigger)."""

    type: Literal["twilio_sms"]
    account_sid_env: str = Field(description="Environment variable holding the Account SID.")
    auth_token_env: str = Field(description="Environment variable holding the auth token.")
    from_number: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$", description="Sender number in E.164 (or use messaging_service_sid).")
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$", description="Messaging Service that sends (handles opt-out keywords).")
    messages: dict[str, str] = Field(description="Message body per sync audience_id, e.g. {cart_reminder: 'You left items in your cart...'}.")
    status_callback: str | None = Field(None, description="URL Twilio calls with each message's delivery status (StatusCallback).")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for Twilio's answer to one send; after that the text may have gone out, so it is never resent blindly: Twilio's message log decides (see log_settle_s).")
    log_settle_s: float = Field(120.0, ge=0, description="Seconds after a text was claimed before Twilio's message log is trusted to say whether it went out. A send cut short (a crash, a timeout) may still be taken by Twilio for a while; until then the member waits, and after it the log decides: found, the text counts as sent; not found, it is sent now.")
    sandbox_time: AwareDatetime | None = Field(None, description="Sandbox and CI only: judge quiet hours at this instant (ISO 8601 with a UTC offset) instead of the wall clock, so a run against an emulator answers the same at any hour. Refused unless 'endpoint' points somewhere other than Twilio's API.")

    _check_env = env_names("account_sid_env", "auth_token_env")

    @model_validator(mode="after")
    def _sender_and_bodies(self) -> "TwilioSmsConfig":
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("give from_number (E.164) or messaging_service_sid: Twilio needs a sender")
        for audience_id, body in self.messages.items():
            if not body.strip():
                raise ValueError(f"messages.{audience_id} is empty; Twilio refuses a message without a body")
            if len(body) > 1600:
                raise ValueError(f"messages.{audience_id} has {len(body)} characters; Twilio accepts at most 1600")
        return self

    @model_validator(mode="after")
    def _sandbox_time_off_twilio(self) -> "TwilioSmsConfig":
        # a frozen clock must never decide when real people are texted (checked again, with ${VAR}s
        # expanded, when the connector is built)
        if self.sandbox_time is not None and reaches_twilio(self.endpoint):
            raise ValueError(SANDBOX_TIME_ON_TWILIO)
        return self


SANDBOX_TIME_ON_TWILIO = ("sandbox_time is for a sandbox or CI endpoint only: remove it, or point 'endpoint' at the"
                          " emulator; against Twilio, quiet hours are judged by the wall clock")


def reaches_twilio(endpoint: str | None) -> bool:
    """True when ``endpoint`` (None: the default) is Twilio's own API, where real people get the texts."""
    host = (urlsplit(endpoint).hostname or "") if endpoint else "api.twilio.com"
    return host == "twilio.com" or host.endswith(".twilio.com")
