"""Simulated I/O modules for every ``[[modules]]`` of a gateway config.

Inputs start in their zones' normal state — a normally-closed (``NC``) loop is
closed, a normally-open contact is open — so a campus starts quiet, as a healthy
one does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from drivers.modbus_io.profiles import PROFILES
from gateway.config import GatewayConfig, ModuleConfig, TcpTransport
from simulators.modbus_module import SimulatedModule


def normal_inputs(cfg: GatewayConfig, module_id: str) -> dict[int, bool]:
    """Channel → closed, for every zone input of ``module_id`` at rest."""
    return {z.input: z.contact == "NC" for z in cfg.zones if z.module == module_id}


@contextlib.asynccontextmanager
async def simulated_modules(
    cfg: GatewayConfig, *, ports: Mapping[str, int] | None = None
) -> AsyncIterator[dict[str, SimulatedModule]]:
    """Start one :class:`SimulatedModule` per TCP module of ``cfg``; stop them on exit.

    Args:
        cfg: the gateway config whose modules to simulate.
        ports: module id → port to bind instead of the configured one (0 = any free).

    Raises:
        OSError: a port cannot be bound (the message names it).
    """
    modules: dict[str, SimulatedModule] = {}
    async with contextlib.AsyncExitStack() as stack:
        for module in cfg.modules:
            if not isinstance(module.transport, TcpTransport):
                continue
            port = module.transport.port if ports is None else ports.get(module.id, 0)
            sim = SimulatedModule(
                PROFILES[module.profile],
                host=module.transport.host,
                port=port,
                unit=module.unit,
                active_low=PROFILES[module.profile].active_low != module.active_low,
            )
            for channel, closed in normal_inputs(cfg, module.id).items():
                sim.set_input(channel, closed=closed)
            try:
                await stack.enter_async_context(sim)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"module {module.id}: cannot serve on port {port}: {exc}"
                ) from exc
            modules[module.id] = sim
        yield modules


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
