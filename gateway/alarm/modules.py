"""The Modbus I/O modules of the alarm system, as a stage of the daemon.

Modules on one physical line (one serial port, or units behind one TCP-to-RTU
converter) share one connection and one task, ``driver[modbus_io:<line>]``
(:func:`drivers.modbus_io.line_poller.build_lines`); each module's debounce and
analog channels come from the zones wired to it. Readings go to ``sink`` (the
rules' queue: a poller never waits for the disk); outputs (sirens, strobes) are
switched through the module's poller, between its polls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from drivers.modbus_io.line_poller import LinePoller, build_lines
from drivers.modbus_io.poller import ModulePoller
from gateway.config.alarm_checks import analog_inputs, input_debounce
from gateway.config.root import GatewayConfig
from gateway.events.observation import HealthState, ObservationSink
from gateway.runtime.stage import StageTask, device_task


class ModuleStage:
    """Every ``[[modules]]`` of a gateway, grouped into lines.

    Args:
        cfg: the gateway config (``modules``, ``zones``, ``zone_types``).
        sink: where every poller's observations go.

    Attributes:
        lines: one poller task per physical line.
        pollers: module id → its poller (its inputs, health and outputs).
    """

    family = "modbus_io"

    def __init__(self, cfg: GatewayConfig, sink: ObservationSink) -> None:
        self.lines: list[LinePoller] = build_lines(
            cfg.modules,
            sink,
            debounce_ms=lambda m: input_debounce(cfg.zones, cfg.zone_types, m),
            analog_channels=lambda m: analog_inputs(cfg.zones, m),
        )
        self.pollers: dict[str, ModulePoller] = {
            p.cfg.id: p for line in self.lines for p in line.pollers
        }

    def tasks(self) -> Sequence[StageTask]:
        """One task per line."""
        return [device_task(self.family, line.name, line.run) for line in self.lines]

    def health(self) -> Mapping[str, HealthState]:
        """Module id → its poller's health."""
        return {module_id: p.health for module_id, p in self.pollers.items()}

    def protocol_errors(self) -> Mapping[str, int]:
        """Module id → malformed or refused replies since start."""
        return {module_id: p.protocol_errors for module_id, p in self.pollers.items()}

    def last_seen(self) -> Mapping[str, datetime | None]:
        """Module id → its last successful read."""
        return {module_id: p.last_seen for module_id, p in self.pollers.items()}

    async def write_output(self, module_id: str, channel: int, on: bool) -> None:
        """Switch a coil through its module's poller (between polls, on its line).

        Raises:
            KeyError: no such module.
            DeviceUnavailable: the module did not confirm the write.
        """
        await self.pollers[module_id].write_output(channel, on)
