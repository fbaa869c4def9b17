"""Secrets written into config files: found, reported without being echoed, and kept out of other messages.

Secrets belong in environment variables named by ``*_env`` keys. ``secret_problems`` reports:

- keys that name a secret (token, password, api_key...) without the ``_env`` suffix, unless the
  model really has such a key;
- values that look like real credentials (Meta, Stripe, Slack, Google, GitHub, AWS, Mailchimp,
  Klaviyo keys, JWTs, private keys), with a reminder to rotate them;
- ``*_env`` keys holding what looks like the secret itself rather than a variable's name;
- URLs with a literal password or secret query parameter (``${VAR}`` is fine).

It also returns the paths it claimed, so ``syncer.project.messages`` does not pile a second message
on the same key. ``is_sensitive`` tells that module which values never to quote back.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from pydantic import BaseModel

from syncer.project.introspection import model_at
from syncer.project.problems import KeyPath, Problem, dotted
from syncer.project.yaml_source import YamlDoc

__all__ = ["is_sensitive", "secret_problems"]


_SECRET_KEY = re.compile(r"token|secret|password|passwd|api_?key|credential|private_key", re.IGNORECASE)
_ENV_KEY = re.compile(r"_env(_var|_name)?$", re.IGNORECASE)
_CREDENTIALS = (
    ("a Meta access token", re.compile(r"EAA[A-Za-z0-9]{17,}")),
    ("a Stripe secret key", re.compile(r"(sk|rk)_(live|test)_[A-Za-z0-9]{8,}")),
    ("a Slack token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{8,}")),
    ("a Google API key", re.compile(r"AIza[0-9A-Za-z_\-]{30,}")),
    ("a Google OAuth token", re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}")),
    ("a GitHub token", re.compile(r"(gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}")),
    ("an AWS access key", re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}")),
    ("a Mailchimp API key", re.compile(r"[0-9a-f]{32}-us\d{1,2}")),
    ("a Klaviyo private key", re.compile(r"pk_[A-Za-z0-9]{30,}")),
    ("a JSON Web Token", re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")),
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://\S*\s*")
_URL_PASSWORD = re.compile(r"://[^/@:\s]+:(?!\$\{)[^/@\s]+@")
_URL_SECRET_PARAM = re.compile(r"[?&]([^=&#]*(?:password|token|secret|api_?key)[^=&#]*)=(?!\$\{)[^&#]+", re.IGNORECASE)
_ROTATE = "rotate it if this file was ever shared or committed"


def _credential_kind(value: str) -> str | None:
    """What kind of real credential ``value`` looks like, or None."""
    text = value.strip()
    if _PRIVATE_KEY.search(text):
        return "a private key"
    return next((kind for kind, pattern in _CREDENTIALS if pattern.fullmatch(text)), None)


def _looks_like_blob(value: str) -> bool:
    """A long hex or base64 run: a secret pasted where an environment variable's NAME belongs."""
    if len(value) < 32 or not re.fullmatch(r"[A-Za-z0-9+/=_.\-]+", value):
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return True
    has_digit, has_alpha = re.search(r"\d", value), re.search(r"[A-Za-z]", value)
    return bool(has_digit and has_alpha and ("_" not in value or re.search(r"[a-z]", value)))


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _ENV_KEY.search(key)


def _secret_key_message(key: str, model: type[BaseModel] | None) -> str:
    what = next((w for w in ("token", "secret", "password", "credential") if w in key.lower()), "key")
    fields = list(model.model_fields) if model else []
    if f"{key}_env" in fields or model is None:
        return (
            f"literal secret in a config file: write '{key}_env: SOME_ENV_VAR' and export the {what}"
            " in that variable"
        )
    env_keys = [name for name in fields if name.endswith("_env")]
    where = f" (here: {', '.join(env_keys)})" if env_keys else ""
    return (
        f"literal secret in a config file: secrets come from environment variables named by *_env keys{where};"
        f" '{key}' is not a key here"
    )


def secret_problems(doc: YamlDoc, schema: Any) -> tuple[list[Problem], set[KeyPath]]:
    """Secrets written into the file, and the paths they claim (other errors there are dropped)."""
    problems: list[Problem] = []
    claimed: set[KeyPath] = set()
    for path, value in _walk(doc.data):
        key = path[-1] if path and isinstance(path[-1], str) else ""
        if any(path[: i] in claimed for i in range(len(path))):
            continue
        message = None
        if key and _is_secret_key(key):
            model = model_at(schema, doc.data, path[:-1])
            if model is None or key not in model.model_fields:
                message = _secret_key_message(key, model)
        if message is None and isinstance(value, str):
            message = _secret_value_message(key, value)
        if message:
            problems.append(Problem(doc.file, doc.line(path), dotted(path), message))
            claimed.add(path)
    return problems, claimed


def _secret_value_message(key: str, value: str) -> str | None:
    kind = _credential_kind(value)
    if key.endswith("_env") and (kind or _looks_like_blob(value)):
        return (
            f"'{key}' must hold the NAME of an environment variable (like META_ACCESS_TOKEN), but this looks"
            f" like the secret itself; export the secret in a variable and write its name here; {_ROTATE}"
        )
    if kind:
        return (
            f"this looks like a real credential ({kind}); secrets never go in config files: export it in an"
            f" environment variable and write that variable's NAME in a *_env key; {_ROTATE}"
        )
    if not _URL.fullmatch(value):
        return None
    if _URL_PASSWORD.search(value):
        return (
            "the URL holds a literal password; write it as ${ENV_VAR}"
            " (e.g. postgresql://user:${PG_PASSWORD}@host/db) and export the password in that variable"
        )
    param = _URL_SECRET_PARAM.search(value)
    if param:
        return (
            f"the URL holds a literal '{param.group(1)}'; write it as {param.group(1)}=${{ENV_VAR}}"
            " and export the value in that variable"
        )
    return None


def _walk(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    if path:
        yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, path + (index,))


def is_sensitive(path: KeyPath, value: Any) -> bool:
    """Whether a value must not be echoed in a message: it sits under a secret or env key, or looks like one."""
    key = path[-1] if path and isinstance(path[-1], str) else ""
    if key.endswith("_env") or _is_secret_key(key):
        return True
    return isinstance(value, str) and bool(_credential_kind(value) or _secret_value_message("", value))
