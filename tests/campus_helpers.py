"""The demo campus (``config/demo.toml``) on ports chosen by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from gateway.config import GatewayConfig, load_config
from simulators.modbus_module import SimulatedModule
from simulators.modules import relocate, simulated_modules
from tests.helpers import REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "config" / "demo.toml"


def demo_config_on(broker_port: int, modules: Mapping[str, SimulatedModule]) -> GatewayConfig:
    """The demo config with its broker and modules moved to the given ports."""
    return relocate(
        load_config(DEMO_CONFIG),
        broker_port=broker_port,
        module_ports={module_id: sim.port for module_id, sim in modules.items()},
    )


@contextlib.asynccontextmanager
async def simulated_campus() -> AsyncIterator[dict[str, SimulatedModule]]:
    """The demo's simulated modules, each on a free port, inputs at rest."""
    cfg = load_config(DEMO_CONFIG)
    async with simulated_modules(cfg, ports={m.id: 0 for m in cfg.modules}) as modules:
        yield modules
