"""What every destination file shares: the base of each platform's config model.

Each platform's model (``destinations/<platform>/config.py``) subclasses ``DestinationConfigBase``,
adds ``type: Literal["<type>"]`` (the discriminator of the config union built from the registry) and
names its secrets as environment variables in fields ending in ``_env``, checked by ``env_names``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from syncer.environment import ENV_NAME

__all__ = ["DestinationConfigBase", "env_name", "env_names"]


class DestinationConfigBase(BaseModel):
    """Fields every destination file may set; unknown keys fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    description: str = ""
    endpoint: str | None = Field(None, description="Override of the API base URL (the local sandbox, a proxy).")
    requests_per_second: float | None = Field(None, gt=0, description="Cap on our request rate to this account.")
    owners: list[str] = Field(default_factory=list)


def env_name(value: str | None) -> str | None:
    """Accept the NAME of an environment variable only: a secret never goes in a file."""
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(
            "expected the NAME of an environment variable (like META_ACCESS_TOKEN), got a value that is not one;"
            " secrets never go in files"
        )
    return value


def env_names(*fields: str):
    """A validator checking that ``fields`` hold environment variable names (``_check_env = env_names(...)``)."""
    return field_validator(*fields)(classmethod(lambda cls, v: env_name(v)))
