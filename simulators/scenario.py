"""Scripted scenarios for the simulated campus: timed actions on simulated devices.

File format (TOML): ``[[steps]]`` with ``at`` (seconds from the scenario start),
``action``, an optional ``note`` printed when the step runs, and per action:

* ``press``, ``release`` (buttons: closed while pressed), ``open``, ``close``
  (loops and contacts), ``power_cycle``, ``analog`` — on a simulated I/O module:
  ``module``, ``channel`` (not for ``power_cycle``), ``value`` (the raw 0..65535 of
  an ``analog`` step: an end-of-line loop), ``off_seconds`` (only ``power_cycle``);
* ``camera`` — a simulated ONVIF camera's analytics: ``camera`` (its id),
  ``trigger`` (``motion``, ``tamper``, ``field``, ``input`` are states, ``line``
  a pulse) and ``clear = true`` to end a state;
* ``patrol`` — a guard's scan sent live through the phone-app bridge (the
  config's first ``network`` patrol reader): ``checkpoint`` (a checkpoint id: its
  tag is sent) or ``tag`` (any tag, e.g. one no checkpoint has), and ``guard``
  (a guard id; the config's first guard when omitted);
* ``panel`` — an alarm panel's report over SIA DC-09: ``panel`` (a ``[[panels]]``
  id), ``cid`` (qualifier and Contact ID code, ``1130``) or ``sia`` (a SIA code),
  ``zone`` and ``partition``.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config.patrol import NetworkReaderConfig
from gateway.config.root import GatewayConfig
from gateway.events.observation import utcnow
from simulators.camera.server import SimulatedCamera
from simulators.dc09_panel import SimulatedPanel
from simulators.modbus_module import SimulatedModule
from simulators.patrol_readers import PhoneApp, ReaderLinkError


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    note: str = ""


class ModuleStep(_Step):
    """An input or the power of a simulated I/O module."""

    action: Literal["press", "release", "open", "close", "power_cycle", "analog"]
    module: str
    channel: int | None = Field(default=None, ge=0)
    value: int | None = Field(default=None, ge=0, le=65535)
    off_seconds: float = Field(default=3.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _channel_needed(self) -> ModuleStep:
        if (self.action == "power_cycle") != (self.channel is None):
            raise ValueError("channel is required for every action but power_cycle")
        if (self.action == "analog") != (self.value is not None):
            raise ValueError("value is required for analog steps, and only for them")
        return self


class CameraStep(_Step):
    """A simulated camera's analytics event (``campus-sim camera ctl trigger``)."""

    action: Literal["camera"]
    camera: str
    trigger: Literal["motion", "tamper", "field", "input", "line"]
    clear: bool = False


class PatrolStep(_Step):
    """A guard's scan through the phone-app bridge."""

    action: Literal["patrol"]
    checkpoint: str | None = None
    tag: str | None = None
    guard: str | None = None

    @model_validator(mode="after")
    def _one_tag(self) -> PatrolStep:
        if (self.checkpoint is None) == (self.tag is None):
            raise ValueError("a patrol step names a checkpoint or a tag, not both")
        return self


class PanelStep(_Step):
    """A report of a simulated DC-09 alarm panel."""

    action: Literal["panel"]
    panel: str
    cid: str | None = Field(default=None, pattern=r"^[136]\d{3}$")
    sia: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    zone: int = Field(default=0, ge=0, le=999)
    partition: int = Field(default=1, ge=0, le=99)

    @model_validator(mode="after")
    def _one_code(self) -> PanelStep:
        if (self.cid is None) == (self.sia is None):
            raise ValueError("a panel step sends a cid or a sia code, not both")
        return self


AnyStep = ModuleStep | CameraStep | PatrolStep | PanelStep
Step = Annotated[AnyStep, Field(discriminator="action")]


class StepNotDelivered(RuntimeError):
    """A simulated device's message was not acknowledged by the gateway."""


class Scenario(BaseModel):
    """A scenario file: its steps (run in ``at`` order)."""

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


@dataclass(slots=True)
class CampusDevices:
    """The simulated devices a scenario acts on.

    Attributes:
        modules: simulated I/O modules by id.
        cameras: simulated cameras by id.
        app: the phone-app bridge to the gateway's network patrol reader, or None.
        tags: checkpoint id → its tag.
        guard: the guard id patrol steps use when they name none.
    """

    modules: Mapping[str, SimulatedModule] = field(default_factory=dict)
    cameras: Mapping[str, SimulatedCamera] = field(default_factory=dict)
    app: PhoneApp | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    guard: str | None = None
    panels: Mapping[str, SimulatedPanel] = field(default_factory=dict)

    def missing(self, step: AnyStep) -> str | None:
        """Why ``step`` cannot run here (a device it names is absent), or None."""
        if isinstance(step, ModuleStep):
            return None if step.module in self.modules else f"no module {step.module!r}"
        if isinstance(step, CameraStep):
            return None if step.camera in self.cameras else f"no camera {step.camera!r}"
        if isinstance(step, PanelStep):
            return None if step.panel in self.panels else f"no panel {step.panel!r}"
        if self.app is None:
            return "no network patrol reader"
        if step.checkpoint is not None and step.checkpoint not in self.tags:
            return f"no checkpoint {step.checkpoint!r}"
        return None

    def describe(self, step: AnyStep) -> str:
        """The step's action and target, as the console prints it."""
        if isinstance(step, ModuleStep):
            kind = "AI" if step.action == "analog" else "DI"
            channel = f" {kind}{step.channel}" if step.channel is not None else ""
            return f"{step.action} {step.module}{channel}"
        if isinstance(step, CameraStep):
            return f"camera {step.camera} {step.trigger}" + (" cleared" if step.clear else "")
        if isinstance(step, PanelStep):
            code = f"Contact ID {step.cid}" if step.cid else f"SIA {step.sia}"
            return f"panel {step.panel} {code} zone {step.zone} partition {step.partition}"
        where = step.checkpoint or f"tag {step.tag}"
        return f"patrol {step.guard or self.guard or '-'} scans {where} via the phone app"

    async def apply(self, step: AnyStep, tg: asyncio.TaskGroup) -> None:
        """Do ``step`` (a power cycle runs on in ``tg``); :meth:`missing` said it can.

        Raises:
            ReaderLinkError: a patrol scan was not acknowledged by the gateway.
            StepNotDelivered: a panel's report was not acknowledged.
        """
        if isinstance(step, ModuleStep):
            module = self.modules[step.module]
            if step.action == "analog" and step.channel is not None and step.value is not None:
                module.set_analog(step.channel, step.value)
            elif step.channel is None:
                tg.create_task(module.power_cycle(step.off_seconds))
            else:
                module.set_input(step.channel, closed=step.action in ("press", "close"))
        elif isinstance(step, CameraStep):
            self.cameras[step.camera].trigger(step.trigger, not step.clear)
        elif isinstance(step, PanelStep):
            panel = self.panels[step.panel]
            if step.cid is not None:
                outcome = await panel.cid(step.cid, step.partition, step.zone)
            else:
                outcome = await panel.sia(step.sia or "", step.zone, area=step.partition)
            if not outcome.acked:
                raise StepNotDelivered(f"panel {step.panel}: {outcome.answer or 'no answer'}")
        elif self.app is not None:
            tag = self.tags[step.checkpoint] if step.checkpoint is not None else step.tag
            assert tag is not None  # PatrolStep's validator: a checkpoint or a tag
            await self.app.hit(tag, utcnow(), guard=step.guard or self.guard)


def phone_app(cfg: GatewayConfig) -> PhoneApp | None:
    """A phone-app bridge to the config's first ``network`` patrol reader, or None.

    A reader listening on every address is reached on the loopback (``0.0.0.0`` on
    127.0.0.1, ``::`` on ``::1``).
    """
    for reader in cfg.patrol.readers:
        if isinstance(reader, NetworkReaderConfig):
            host = reader.listen.host
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":  # asyncio binds "::" to IPv6 only
                host = "::1"
            return PhoneApp(host, reader.listen.port, key=reader.key(), reader_id=reader.id)
    return None


def campus_devices(
    cfg: GatewayConfig,
    modules: Mapping[str, SimulatedModule],
    cameras: Mapping[str, SimulatedCamera],
    panels: Mapping[str, SimulatedPanel] | None = None,
) -> CampusDevices:
    """The scenario's view of a running simulated campus for ``cfg`` (with its phone app)."""
    return CampusDevices(
        modules=modules,
        cameras=cameras,
        panels=panels or {},
        app=phone_app(cfg),
        tags={c.id: c.tag for c in cfg.patrol.checkpoints},
        guard=cfg.patrol.guards[0].id if cfg.patrol.guards else None,
    )


async def play(scenario: Scenario, devices: CampusDevices, say: Callable[[str], None]) -> None:
    """Run the steps at their times; a step naming an absent device, or a patrol scan the
    gateway does not acknowledge, is reported and skipped."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as tg:
        for step in sorted(scenario.steps, key=lambda s: s.at):
            await asyncio.sleep(max(0.0, start + step.at - loop.time()))
            problem = devices.missing(step)
            if problem is not None:
                say(f"SCENARIO t+{step.at:g}s: {problem}, step skipped")
                continue
            say(f"SCENARIO t+{step.at:g}s: {devices.describe(step)}  {step.note}".rstrip())
            try:
                await devices.apply(step, tg)
            except (ReaderLinkError, StepNotDelivered) as exc:
                say(f"SCENARIO t+{step.at:g}s: not delivered: {exc}")
