"""The demo campus (``config/demo.toml``) on ports chosen by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from gateway.config.patrol import NetworkReaderConfig, PatrolConfig
from gateway.config.root import GatewayConfig, load_config
from simulators.camera.server import SimulatedCamera
from simulators.modbus_module import SimulatedModule
from simulators.modules import relocate, simulated_modules
from tests.helpers import REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "config" / "demo.toml"


def demo_config_on(
    broker_port: int,
    modules: Mapping[str, SimulatedModule],
    *,
    cameras: Mapping[str, SimulatedCamera] | None = None,
    patrol_port: int | None = None,
) -> GatewayConfig:
    """The demo config with its broker and modules moved to the given ports.

    Its ``[[cameras]]`` move to the ports of ``cameras`` and its ``network`` patrol
    reader listens on ``patrol_port``. Without them the config has no cameras (nor
    ``[[linkage]]``) and no ``[patrol]``: a test of the alarm path neither waits for
    cameras nor binds the demo's fixed patrol port.
    """
    cfg = relocate(
        load_config(DEMO_CONFIG),
        broker_port=broker_port,
        module_ports={module_id: sim.port for module_id, sim in modules.items()},
    )
    update: dict[str, object] = {}
    if cameras is None:
        update.update(cameras=[], linkage=[])
    else:
        update["cameras"] = [c.model_copy(update={"port": cameras[c.id].port}) for c in cfg.cameras]
    if patrol_port is None:
        update["patrol"] = PatrolConfig()
    else:
        readers = [
            r.model_copy(update={"listen": r.listen.model_copy(update={"port": patrol_port})})
            if isinstance(r, NetworkReaderConfig)
            else r
            for r in cfg.patrol.readers
        ]
        update["patrol"] = cfg.patrol.model_copy(update={"readers": readers})
    return cfg.model_copy(update=update)


@contextlib.asynccontextmanager
async def simulated_campus() -> AsyncIterator[dict[str, SimulatedModule]]:
    """The demo's simulated modules, each on a free port, inputs at rest."""
    cfg = load_config(DEMO_CONFIG)
    async with simulated_modules(cfg, ports={m.id: 0 for m in cfg.modules}) as modules:
        yield modules
