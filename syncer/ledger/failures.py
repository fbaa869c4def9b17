"""What the ledger keeps of the error that failed a sync: its class, whose fault, and a scrubbed detail.

A ``SyncError``'s ``detail`` holds the platform's own words (HTTP status, error code, trace id, the start
of the body). Connectors already redact it, but a body can echo what we sent, so every detail passes
``scrub_detail`` before it is logged, stored in ``sync_runs.error_detail``, printed or shown in Dagster:

- the value of every environment variable that holds a secret (named by a destination's ``*_env`` field,
  or with a name like ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*API_KEY*``) becomes ``<secret>``;
- ``Authorization``-style credentials and secret query parameters become ``<secret>``;
- emails, phone numbers and long hashes become ``<redacted>`` (``destinations.http.redact``);
- control characters (a body's line breaks, terminal escapes) and runs of whitespace become one space, and
  the text is cut to ``DETAIL_LIMIT`` characters after the masking, so a cut never leaves half a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from destinations.http import redact

__all__ = ["DETAIL_LIMIT", "failure_fields", "scrub_detail", "secret_env_names"]

DETAIL_LIMIT = 1000
"""Characters of detail kept per failed sync run: a status line, an error code, a trace id, a body's start."""

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|_KEY$|_SID$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # terminal escapes and line breaks from a body: never printed or logged raw
_MIN_SECRET = 6  # shorter values ("1", "true", a port) would mask ordinary words and prove nothing
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic)\s+(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_SECRET_PARAM = re.compile(  # token=..., "token": "..." (a query string, a form, a JSON body); not "token: expired"
    r"((?:access_?token|api_?key|apikey|token|secret|password|signature|client_secret)(?:=|[\"']\s*:\s*[\"']))"
    r"[^\s&\"',}]+", re.IGNORECASE)


def secret_env_names(configs: Iterable[Any]) -> list[str]:
    """The environment variables named by the ``*_env`` fields of destination configs (pydantic models or dicts)."""
    names: list[str] = []

    def walk(data: Any) -> None:
        if isinstance(data, Mapping):
            for key, value in data.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                    names.append(value)
                else:
                    walk(value)
        elif isinstance(data, (list, tuple)):
            for value in data:
                walk(value)

    for config in configs:
        walk(config.model_dump() if hasattr(config, "model_dump") else config)
    return sorted(set(names))


def _secret_values(env_names: Iterable[str]) -> list[str]:
    """Values of the named variables and of every variable whose name looks secret; longest first, so a
    secret that contains another is masked whole."""
    named = set(env_names)
    values = {value for name, value in os.environ.items()
              if (name in named or _SECRET_NAME.search(name)) and len(value) >= _MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def scrub_detail(text: str | None, *, env_names: Iterable[str] = (), limit: int = DETAIL_LIMIT) -> str | None:
    """``text`` without secrets, PII, line breaks or more than ``limit`` characters; None when empty.

    Args:
        env_names: variables whose values are secrets beyond those the name pattern finds (the project's
            ``*_env`` fields, from ``secret_env_names``).
    """
    if not text:
        return None
    for value in _secret_values(env_names):
        text = text.replace(value, "<secret>")
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} <secret>", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}<secret>", text)
    text = " ".join(_CONTROL.sub(" ", redact(text)).split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text or None


def failure_fields(exc: BaseException, scrub: Callable[[str | None], str | None] = scrub_detail) -> dict[str, str | None]:
    """The ledger's error columns for ``exc``: ``error_class``, ``error_fault`` and the scrubbed ``error_detail``."""
    return {
        "error_class": type(exc).__name__,
        "error_fault": getattr(exc, "fault", "caller"),
        "error_detail": scrub(getattr(exc, "detail", None)),
    }
