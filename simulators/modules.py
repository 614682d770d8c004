"""Simulated I/O modules for every ``[[modules]]`` of a gateway config.

Inputs start in their zones' normal state — a normally-closed (``NC``) loop is
closed, a normally-open contact is open, an end-of-line loop reads the middle of
its normal band — so a campus starts quiet, as a healthy one does. Modules that
share one TCP address are units behind one simulated TCP-to-RTU converter
(:class:`~simulators.modbus_line.SimulatedLine`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from gateway.config.alarm import EolLine, PairedLine
from gateway.config.modbus_profiles import PROFILES
from gateway.config.root import GatewayConfig, ModuleConfig
from gateway.config.transports import TcpTransport
from simulators.modbus_line import SimulatedLine
from simulators.modbus_module import SimulatedModule


def normal_inputs(cfg: GatewayConfig, module_id: str) -> dict[int, bool]:
    """Channel → closed, for every digital zone input of ``module_id`` at rest."""
    rest: dict[int, bool] = {}
    for zone in cfg.zones:
        if zone.module != module_id or isinstance(zone.line, EolLine):
            continue
        rest[zone.input] = zone.contact == "NC"
        if isinstance(zone.line, PairedLine):
            rest[zone.line.tamper_input] = zone.line.tamper_contact == "NC"
    return rest


def normal_analog(cfg: GatewayConfig, module_id: str) -> dict[int, int]:
    """Analog channel → raw value in the middle of the normal band, for EOL zones at rest."""
    return {
        z.input: sum(z.line.normal) // 2
        for z in cfg.zones
        if z.module == module_id and isinstance(z.line, EolLine)
    }


@contextlib.asynccontextmanager
async def simulated_modules(
    cfg: GatewayConfig, *, ports: Mapping[str, int] | None = None
) -> AsyncIterator[dict[str, SimulatedModule]]:
    """Start a :class:`SimulatedModule` for every TCP module of ``cfg``; stop them on exit.

    Modules that share one host and port become units of one
    :class:`~simulators.modbus_line.SimulatedLine` (a TCP-to-RTU converter).

    Args:
        cfg: the gateway config whose modules to simulate.
        ports: module id → port to bind instead of the configured one (0 = any free);
            for a converter, the port of its first module.

    Raises:
        OSError: a port cannot be bound (the message names it).
    """
    modules: dict[str, SimulatedModule] = {}
    groups: dict[tuple[str, int], list[ModuleConfig]] = {}
    for module in cfg.modules:
        if isinstance(module.transport, TcpTransport):
            key = (module.transport.host, module.transport.port)
            groups.setdefault(key, []).append(module)
    async with contextlib.AsyncExitStack() as stack:
        for (host, configured), members in groups.items():
            port = configured if ports is None else ports.get(members[0].id, 0)
            sims = {m.id: _at_rest(cfg, m, host, port) for m in members}
            server: SimulatedModule | SimulatedLine = sims[members[0].id]
            if len(members) > 1:
                server = SimulatedLine({m.unit: sims[m.id] for m in members}, host=host, port=port)
            try:
                await stack.enter_async_context(server)
            except OSError as exc:
                names = "+".join(sims)
                raise OSError(
                    exc.errno, f"module {names}: cannot serve on port {port}: {exc}"
                ) from exc
            modules.update(sims)
        yield modules


def _at_rest(cfg: GatewayConfig, module: ModuleConfig, host: str, port: int) -> SimulatedModule:
    """The module's simulator (not started) with every zone input at rest."""
    profile = PROFILES[module.profile]
    sim = SimulatedModule(
        profile,
        host=host,
        port=port,
        unit=module.unit,
        active_low=profile.active_low != module.active_low,
    )
    for channel, closed in normal_inputs(cfg, module.id).items():
        sim.set_input(channel, closed=closed)
    for channel, value in normal_analog(cfg, module.id).items():
        sim.set_analog(channel, value)
    return sim


def relocate(
    cfg: GatewayConfig, *, broker_port: int | None = None, module_ports: Mapping[str, int]
) -> GatewayConfig:
    """A copy of ``cfg`` pointing at a broker port and module ports chosen at run time."""

    def moved(module: ModuleConfig) -> ModuleConfig:
        if module.id not in module_ports or not isinstance(module.transport, TcpTransport):
            return module
        transport = module.transport.model_copy(update={"port": module_ports[module.id]})
        return module.model_copy(update={"transport": transport})

    update: dict[str, object] = {"modules": [moved(m) for m in cfg.modules]}
    if broker_port is not None:
        update["broker"] = cfg.broker.model_copy(update={"port": broker_port})
    return cfg.model_copy(update=update)
