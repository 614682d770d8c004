"""What every config model shares: strictness and the shape of an id.

STYLE.md rule 10: an unknown key is an error (``extra="forbid"``), and a loaded
config never changes (``frozen=True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import ConfigError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
"""A zone, area, module, camera, checkpoint or reader id: 1-64 of ``A-Za-z0-9_.-``."""


class Strict(BaseModel):
    """Base of every config model: unknown keys refused, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(path: Path, field: str, what: str) -> bytes:
    """The secret in ``path`` (file content, surrounding whitespace stripped).

    Args:
        path: the file (already resolved against the config file's folder).
        field: the dotted config field naming it, for the error.
        what: what the secret is (``the HMAC key``), for the error.

    Raises:
        ConfigError: the file cannot be read or is empty (the secret is never shown).
    """
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what}: {exc.strerror}", file=str(path), field=field
        ) from exc
    if not secret:
        raise ConfigError(f"{what} file is empty", file=str(path), field=field)
    return secret
