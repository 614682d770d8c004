"""Scripted scenarios for the simulated campus: timed actions on simulated modules.

File format (TOML): ``[[steps]]`` with ``at`` (seconds from the scenario start),
``module``, ``action`` (``press``, ``release``, ``open``, ``close``,
``power_cycle``, ``analog``), ``channel`` (not for ``power_cycle``), ``value`` (the
raw 0..65535 of an ``analog`` step: an end-of-line loop), ``off_seconds`` (only for
``power_cycle``) and an optional ``note`` printed when the step runs.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulators.modbus_module import SimulatedModule


class Step(BaseModel):
    """One timed action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    module: str
    action: Literal["press", "release", "open", "close", "power_cycle", "analog"]
    channel: int | None = Field(default=None, ge=0)
    value: int | None = Field(default=None, ge=0, le=65535)
    off_seconds: float = Field(default=3.0, ge=0, le=3600)
    note: str = ""

    @model_validator(mode="after")
    def _channel_needed(self) -> Step:
        if (self.action == "power_cycle") != (self.channel is None):
            raise ValueError("channel is required for every action but power_cycle")
        if (self.action == "analog") != (self.value is not None):
            raise ValueError("value is required for analog steps, and only for them")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[Step]


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file.

    Raises:
        ValueError: unreadable, bad TOML or a bad step (the message names the file).
    """
    try:
        return Scenario.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


async def play(
    scenario: Scenario,
    modules: Mapping[str, SimulatedModule],
    say: Callable[[str], None],
) -> None:
    """Run the steps at their times; a step naming an unknown module is reported, skipped."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as tg:
        for step in sorted(scenario.steps, key=lambda s: s.at):
            await asyncio.sleep(max(0.0, start + step.at - loop.time()))
            module = modules.get(step.module)
            if module is None:
                say(f"SCENARIO t+{step.at:g}s: no module {step.module!r}, step skipped")
                continue
            kind = "AI" if step.action == "analog" else "DI"
            target = step.module + (f" {kind}{step.channel}" if step.channel is not None else "")
            say(f"SCENARIO t+{step.at:g}s: {step.action} {target}  {step.note}".rstrip())
            if step.action == "analog" and step.channel is not None and step.value is not None:
                module.set_analog(step.channel, step.value)
            elif step.channel is None:
                tg.create_task(module.power_cycle(step.off_seconds))
            else:
                module.set_input(step.channel, closed=step.action in ("press", "close"))
