"""The two signatures `syncer serve` checks: Twilio's on its webhooks, and ours on event posts.

Twilio (``X-Twilio-Signature``): base64 of HMAC-SHA1 keyed with the account's Auth Token over the full URL
Twilio called (scheme, host, path and query string, exactly as configured in Twilio) followed by every POST
parameter sorted by name (a case-sensitive, code-point sort), each written as name then value with no
separator; a name given several times contributes each of its values, sorted. Twilio is not consistent about
the port (a ``:443``/``:80`` may or may not be in the signed URL), so, like Twilio's own validator, the URL is
checked with and without it. The comparison takes constant time. Sources:
https://www.twilio.com/docs/usage/webhooks/webhooks-security ("Authenticate with signatures"),
https://www.twilio.com/docs/usage/security#validating-requests, and twilio-python's ``RequestValidator``
(https://github.com/twilio/twilio-python/blob/main/twilio/request_validator.py: ``compute_signature``
sorts names, then each name's values; ``validate`` tries the URL with ``add_port`` and ``remove_port``),
whose test vector (token ``12345``, ``https://mycompany.com/myapp.php?foo=1&bar=2``, five call parameters
→ ``RSOYDt4T1cUTdK1PDd93/VVr8B8=``) our tests check. A webhook matched by a Twilio "Webhooks Rule" is signed
with that rule's shared key instead (header ``X-Twilio-Webhooks-Signature-Settings``): not supported here.

Event posts (``X-Syncer-Signature: t=<unix seconds>,v1=<hex>``), Stripe's scheme: ``v1`` is the hex
HMAC-SHA256, keyed with the shared secret, of ``"<t>." + raw body``. Several ``v1`` may be given (a secret
being rotated); one must match. A ``t`` more than ``TOLERANCE_S`` away from our clock is refused, so a
captured post cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["TOLERANCE_S", "event_signature", "event_signature_problem", "twilio_signature", "twilio_signature_valid"]

TOLERANCE_S = 300.0


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a POST of ``params`` (name, value pairs) to ``url``."""
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    data = url + "".join(name + value for name in sorted(by_name) for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twilio_signature_valid(auth_token: str, url: str, params: list[tuple[str, str]], signature: str) -> bool:
    """Whether ``signature`` is Twilio's for this POST, with or without the default port in ``url``."""
    given = signature.encode("utf-8")
    return any(hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode("ascii"), given)
               for candidate in _with_and_without_port(url))


def _with_and_without_port(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    without = parts._replace(netloc=prefix + host).geturl()
    with_port = parts._replace(netloc=f"{prefix}{host}:{port}").geturl()
    return (url,) + tuple(u for u in (without, with_port) if u != url)


def event_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Syncer-Signature`` header value for posting ``body`` at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_event_mac(secret, body, timestamp)}"


def event_signature_problem(secret: str, header: str | None, body: bytes, *, now: float,
                            tolerance: float = TOLERANCE_S) -> str | None:
    """Why ``header`` does not sign ``body`` (short words, for a log line), or None when it does."""
    if not header:
        return "no X-Syncer-Signature header"
    timestamp, macs = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value.strip().lower().encode("utf-8"))
    if timestamp is None or not macs:
        return "malformed X-Syncer-Signature header (expected t=<unix seconds>,v1=<hex>)"
    if abs(now - timestamp) > tolerance:
        return f"signature timestamp is {now - timestamp:+.0f} s from now, outside the {tolerance:.0f} s tolerance"
    expected = _event_mac(secret, body, timestamp).encode("ascii")
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        return "signature does not match"
    return None


def _event_mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
