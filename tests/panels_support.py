"""Helpers shared by the DC-09 tests: a site with panels on ports the test chose, a
receiver on real sockets with a sink that keeps what it is handed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.dc09.receiver import Receiver
from drivers.dc09.transport import TcpListener, UdpListener
from gateway.config.panels import Dc09Config, ListenConfig, PanelConfig
from gateway.config.root import GatewayConfig
from gateway.daemon import Gateway, running
from gateway.events.observation import DeviceHealth, utcnow
from gateway.events.panel_observation import PanelMessage, PanelObservation, PanelRejected
from tests.helpers import SIGNED_COMMANDS

PANIC_ZONE_NAME = "东门红外"
ACCOUNT = "1234"
KEY_TEXT = "0123456789ABCDEF"


def panel(**overrides: Any) -> dict[str, Any]:
    """Panel ``east`` of account 1234: zone 3 is 东门红外 (E03), partition 1 is TEACH."""
    raw: dict[str, Any] = {
        "id": "east",
        "name": "东教学楼报警主机",
        "location": "东教学楼一层",
        "account": ACCOUNT,
        "supervision_s": 60,
        "area": "TEACH",
        "partitions": [{"number": 1, "area": "TEACH"}],
        "zones": [
            {"number": 3, "id": "E03", "name": PANIC_ZONE_NAME, "location": "东门"},
            {"number": 5, "id": "E05", "name": "东侧窗磁", "location": "一层东侧"},
        ],
    }
    raw.update(overrides)
    return raw


def site_config(
    *,
    broker_port: int = 1883,
    tcp_port: int | None = None,
    udp_port: int | None = None,
    panels: list[dict[str, Any]] | None = None,
    **dc09: Any,
) -> GatewayConfig:
    """A site whose ``[dc09]`` listens on 127.0.0.1 at the given ports, with ``panels``
    (its metrics endpoint and bench page on free ports)."""
    listen = [{"protocol": "tcp", "host": "127.0.0.1", "port": tcp_port}] if tcp_port else []
    if udp_port:
        listen.append({"protocol": "udp", "host": "127.0.0.1", "port": udp_port})
    return GatewayConfig.model_validate(
        {
            "commands": SIGNED_COMMANDS,
            "site": {"id": "dc09-school", "gateway": "gw1"},
            "broker": {"host": "127.0.0.1", "port": broker_port},
            "areas": [{"id": "TEACH", "name": "教学行政区"}],
            "dc09": {"listen": listen, **dc09},
            "panels": panels if panels is not None else [panel()],
            "metrics": {"port": 0},
            "bench": {"port": 0},
        }
    )


def key_file(tmp_path: Path, text: str = KEY_TEXT) -> Path:
    path = tmp_path / "panel.key"
    path.write_text(text + "\n", encoding="utf-8")
    return path


class Sink:
    """A panel sink that keeps what it is handed; ``hold`` makes it wait (a slow
    commit), ``fail`` (or ``fail_next`` messages) makes it fail (a commit that failed)."""

    def __init__(self) -> None:
        self.seen: list[PanelObservation] = []
        self.hold: asyncio.Event | None = None
        self.fail = False
        self.fail_next = 0
        self.waiting = 0
        self._changed = asyncio.Condition()

    async def __call__(self, obs: PanelObservation) -> None:
        if isinstance(obs, PanelMessage):
            if self.hold is not None:
                self.waiting += 1
                await self.hold.wait()
                self.waiting -= 1
            if self.fail or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                raise OSError("disk gone")
        async with self._changed:
            self.seen.append(obs)
            self._changed.notify_all()

    def messages(self) -> list[PanelMessage]:
        return [o for o in self.seen if isinstance(o, PanelMessage)]

    def rejected(self) -> list[PanelRejected]:
        return [o for o in self.seen if isinstance(o, PanelRejected)]

    def health(self) -> list[str]:
        return [o.state for o in self.seen if isinstance(o, DeviceHealth)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


@contextlib.asynccontextmanager
async def receiving(
    panels: list[PanelConfig],
    sink: Sink,
    *,
    dc09: Dc09Config | None = None,
    now: Callable[[], datetime] = utcnow,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[tuple[Receiver, TcpListener, UdpListener]]:
    """A receiver for ``panels`` listening on free TCP and UDP ports of 127.0.0.1,
    its supervision running; everything stopped afterwards."""
    cfg = dc09 or Dc09Config()
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    receiver = Receiver(cfg, [(p, p.key()) for p in panels], sink, now=now, **extra)
    tcp = TcpListener(
        ListenConfig(protocol="tcp", host="127.0.0.1", port=1),
        receiver,
        max_connections=cfg.max_connections,
        idle_timeout=cfg.idle_timeout_s,
        max_per_host=cfg.max_connections_per_host,
    )
    tcp.listen = tcp.listen.model_copy(update={"port": 0})
    udp = UdpListener(ListenConfig(protocol="udp", host="127.0.0.1", port=1), receiver)
    udp.listen = udp.listen.model_copy(update={"port": 0})
    tasks = [
        asyncio.create_task(tcp.run(), name="test-tcp"),
        asyncio.create_task(udp.run(), name="test-udp"),
        asyncio.create_task(receiver.supervision.run(), name="test-supervision"),
    ]
    try:
        async with asyncio.timeout(5):
            await tcp.ready.wait()
            await udp.ready.wait()
        yield receiver, tcp, udp
        for task in tasks:
            assert not task.done(), task
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def listening(cfg: GatewayConfig, outbox: Path) -> AsyncIterator[Gateway]:
    """The daemon running ``cfg``, yielded once its DC-09 listeners are bound."""
    async with running(cfg, outbox_path=outbox) as gateway:
        assert gateway.panels is not None
        async with asyncio.timeout(5):
            for listener in gateway.panels.listeners:
                await listener.ready.wait()
        yield gateway
