"""The demo campus (``config/demo.toml``) on ports chosen by the test, and a running
gateway on it with a center console and a command sender (:func:`demo_gateway`)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config.panels import Dc09Config
from gateway.config.patrol import NetworkReaderConfig, PatrolConfig, RouteConfig
from gateway.config.root import GatewayConfig, MetricsConfig, load_config
from gateway.config.views import BenchConfig
from gateway.daemon import Gateway, running
from simulators.broker import MosquittoBroker
from simulators.camera.server import SimulatedCamera
from simulators.center import CenterConsole
from simulators.center_commands import CommandSender
from simulators.modbus_module import SimulatedModule
from simulators.modules import relocate, simulated_modules
from tests.helpers import REPO_ROOT, TEST_KEY, assert_valid_event, signed_center

DEMO_CONFIG = REPO_ROOT / "config" / "demo.toml"
KEY = TEST_KEY
"""The demo site's command key (``config/demo-center.key``)."""


def demo_config_on(
    broker_port: int,
    modules: Mapping[str, SimulatedModule],
    *,
    cameras: Mapping[str, SimulatedCamera] | None = None,
    patrol_port: int | None = None,
    panel_port: int | None = None,
) -> GatewayConfig:
    """The demo config with its broker and modules moved to the given ports.

    Its ``[[cameras]]`` move to the ports of ``cameras`` and its ``network`` patrol
    reader listens on ``patrol_port``, its DC-09 receiver on ``panel_port``. Without
    them the config has no cameras (nor ``[[linkage]]``), no ``[patrol]`` and no
    ``[[panels]]``: a test of the alarm path neither waits for cameras nor binds the
    demo's fixed patrol and panel ports. The bench page and the metrics endpoint take
    free ports.

    The patrol routes' rounds are moved to start a minute before now (same period,
    all day): the demo's rounds start every quarter hour, and a scan within a
    reader's clock skew after a quarter is credited to the round that just ended
    (``gateway.patrol.rounds.match``: the earliest round wins), so a test scanning
    CP1 would otherwise pass or fail with the time of day.
    """
    cfg = relocate(
        load_config(DEMO_CONFIG),
        broker_port=broker_port,
        module_ports={module_id: sim.port for module_id, sim in modules.items()},
    )
    update: dict[str, object] = {"bench": BenchConfig(port=0), "metrics": MetricsConfig(port=0)}
    if cameras is None:
        update.update(cameras=[], linkage=[])
    else:
        update["cameras"] = [c.model_copy(update={"port": cameras[c.id].port}) for c in cfg.cameras]
    if panel_port is None:
        update.update(dc09=Dc09Config(), panels=[])
    else:
        listen = [a.model_copy(update={"port": panel_port}) for a in cfg.dc09.listen]
        update["dc09"] = cfg.dc09.model_copy(update={"listen": listen})
    if patrol_port is None:
        update["patrol"] = PatrolConfig()
    else:
        readers = [
            r.model_copy(update={"listen": r.listen.model_copy(update={"port": patrol_port})})
            if isinstance(r, NetworkReaderConfig)
            else r
            for r in cfg.patrol.readers
        ]
        routes = [_started_a_minute_ago(r, cfg.site.timezone) for r in cfg.patrol.routes]
        update["patrol"] = cfg.patrol.model_copy(update={"readers": readers, "routes": routes})
    return cfg.model_copy(update=update)


def _started_a_minute_ago(route: RouteConfig, timezone: str) -> RouteConfig:
    """``route`` with rounds all day from a minute before now (site local time)."""
    start = (dt.datetime.now(ZoneInfo(timezone)) - dt.timedelta(minutes=1)).strftime("%H:%M")
    schedule = route.schedule.model_copy(update={"start": start, "end": start})
    return route.model_copy(update={"schedule": schedule})


@contextlib.asynccontextmanager
async def simulated_campus() -> AsyncIterator[dict[str, SimulatedModule]]:
    """The demo's simulated modules, each on a free port, inputs at rest."""
    cfg = load_config(DEMO_CONFIG)
    async with simulated_modules(cfg, ports={m.id: 0 for m in cfg.modules}) as modules:
        yield modules


@dataclass
class Campus:
    """A running demo gateway, what the center received, and a way to command it."""

    gateway: Gateway
    center: CenterConsole
    commands: CommandSender
    modules: dict[str, SimulatedModule]

    def of(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        """The center's events of one type (and subject), in arrival order."""
        return [
            e for e in self.center.events if e["type"] == type_ and subject in (None, e["subject"])
        ]

    async def wait(self, type_: str, subject: str, state: str, within: float = 5.0) -> dict:
        """The first event of that type, subject and ``data.state`` (waiting for it)."""

        def match(e: dict[str, Any]) -> bool:
            return e["type"] == type_ and e["subject"] == subject and e["data"]["state"] == state

        await self.center.wait_for(lambda: any(match(e) for e in self.center.events), within)
        return next(e for e in self.center.events if match(e))

    async def ok(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a signed command; its result must be ``ok``."""
        result = await self.commands.send(name, params)
        assert result["status"] == "ok", result
        return result


@contextlib.asynccontextmanager
async def demo_gateway(
    broker: MosquittoBroker,
    outbox: Path,
    modules: dict[str, SimulatedModule],
    cfg: GatewayConfig | None = None,
) -> AsyncIterator[Campus]:
    """The gateway on ``cfg`` (the demo's on ``modules``), ready once every module is
    online at the center; every event the center got is checked against the schema."""
    cfg = cfg or demo_config_on(broker.port, modules)
    async with (
        signed_center(host=broker.host, port=broker.port) as center,
        CommandSender(broker.host, broker.port, "demo-school", "gw1", key=KEY) as commands,
        running(cfg, outbox_path=outbox) as gateway,
    ):
        campus = Campus(gateway, center, commands, modules)
        for module in modules:
            await campus.wait("device.online", module, "instant")
        yield campus
    assert center.invalid == 0
    for event in center.events:
        assert_valid_event(event)
