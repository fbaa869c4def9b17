"""Values read from the environment at run time: secrets (never from files) and ${VAR} in URLs; and a URL's scheme."""

from __future__ import annotations

import os
import re

from pydantic import SecretStr

from syncer.errors import ConfigError

__all__ = ["ENV_NAME", "expand_env", "resolve_secret", "scheme_of"]

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def scheme_of(url: str) -> str:
    """``snowflake`` of ``snowflake://...``, ``postgresql`` of ``postgresql+psycopg://...``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def resolve_secret(env_name: str, *, what: str) -> SecretStr:
    """Read a secret from the environment at run time; raise ``ConfigError`` naming the variable."""
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} is not set; export it before running")
    return SecretStr(value)


def expand_env(url: str) -> str:
    """Replace ${VAR} and ${VAR:-default} from the environment; raise ``ConfigError`` naming a missing one."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} (used in a URL) is not set")

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}", sub, url)
