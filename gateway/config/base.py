"""What every config model shares: strictness and the shape of an id.

STYLE.md rule 10: an unknown key is an error (``extra="forbid"``), and a loaded
config never changes (``frozen=True``).
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import ConfigError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
"""A zone, area, module, camera, checkpoint or reader id: 1-64 of ``A-Za-z0-9_.-``."""


FilePath = Annotated[Path, Field(strict=False)]
"""A file the config names: a TOML string."""


class Strict(BaseModel):
    """Base of every config model: unknown keys refused, instances frozen, values of
    the type written (review of 2026-12-05: ``input = true`` was input 1, ``latch =
    "yes"`` was true, ``debounce_ms = "100"`` was 100). TOML arrays are taken as the
    tuples the models hold; an integer is a number where a float is asked."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def files_resolved(self, base: Path, *fields: str) -> Self:
        """A copy whose relative file ``fields`` (``key_file``, ``password_file``) are
        resolved against ``base``, the config file's folder; absolute ones and unset
        ones stay as they are."""
        update = {
            name: base / path
            for name in fields
            if (path := getattr(self, name)) is not None and not path.is_absolute()
        }
        return self.model_copy(update=update) if update else self

    @model_validator(mode="before")
    @classmethod
    def _arrays_as_tuples(cls, data: Any) -> Any:
        """TOML has arrays, not tuples: a list value is offered as a tuple (strict
        pydantic takes no list for a tuple); its items keep their types."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: tuple(v)
            if isinstance(v, list) and k in fields and _tuple(fields[k].annotation)
            else v
            for k, v in data.items()
        }


def _tuple(annotation: Any) -> bool:
    """True when ``annotation`` is a tuple type (or one of a union's members is)."""
    if get_origin(annotation) is tuple or annotation is tuple:
        return True
    return get_origin(annotation) in (Union, UnionType) and any(
        _tuple(a) for a in get_args(annotation)
    )


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
