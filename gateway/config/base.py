"""What every config model shares: strictness and the shape of an id.

STYLE.md rule 10: an unknown key is an error (``extra="forbid"``), and a loaded
config never changes (``frozen=True``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
"""A zone, area, module, camera, checkpoint or reader id: 1-64 of ``A-Za-z0-9_.-``."""


class Strict(BaseModel):
    """Base of every config model: unknown keys refused, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
