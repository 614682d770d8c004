"""The local HTTP endpoint: ``GET /metrics`` (Prometheus) and ``GET /status`` (JSON).

Read-only, bound to ``[metrics] host``/``port`` (loopback by default) when the
daemon starts; the routes (:mod:`gateway.ops.routes`, aiohttp) are loaded at the
first connection (:mod:`gateway.ops.lazy_port`: about 10 MiB a box that is never
scraped does without; the first answer comes a tenth of a second later). Each
request reads one fresh :class:`~gateway.ops.status.Status` snapshot; nothing
here touches the uplink, so it answers while the broker is down. A port that
cannot be bound raises ``OSError`` from :meth:`OpsServer.run`; the daemon runs it
under the supervisor, which logs, counts and retries it — the alarm path never
waits for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from gateway.config.root import MetricsConfig
from gateway.ops.lazy_port import LazyPort
from gateway.ops.prometheus import StatusCollector
from gateway.ops.status import Status, StatusSources, collect
from gateway.runtime.metrics import GatewayMetrics

if TYPE_CHECKING:  # loaded at the endpoint's first connection (gateway.ops.lazy_port)
    from aiohttp import web

log = structlog.get_logger(__name__)


class OpsServer:
    """Serves one gateway's status and metrics. ``await server.run()`` as a task.

    Args:
        cfg: ``[metrics]``.
        sources: the running parts to read.
        metrics: the gateway's registry (the status levels are added to it).

    Attributes:
        address: ``(host, port)`` actually bound, once listening (port 0 picks one).
        listening: set while the endpoint accepts requests.
    """

    def __init__(self, cfg: MetricsConfig, sources: StatusSources, metrics: GatewayMetrics):
        self.cfg = cfg
        self.sources = sources
        self.metrics = metrics
        self.collector = StatusCollector()
        metrics.registry.register(self.collector)
        self.address: tuple[str, int] | None = None
        self.listening = asyncio.Event()

    async def snapshot(self) -> Status:
        """A fresh snapshot; also what the next ``/metrics`` levels are made of.

        Raises:
            OutboxError: the outbox is closed.
        """
        status = await collect(self.sources)
        self.collector.update(status)
        return status

    async def run(self) -> None:
        """Listen until cancelled.

        Raises:
            OSError: the address cannot be bound (in use, not on this host).
        """
        try:
            async with LazyPort(self.cfg.host, self.cfg.port) as lazy:
                host, port = lazy.addresses[0]
                self.address = (host, port)
                self.listening.set()
                log.info("ops.listening", host=host, port=port)
                await lazy.serve("gateway.ops.routes", self._runner)
        finally:
            self.listening.clear()

    async def _runner(self) -> web.AppRunner:
        """The endpoint's aiohttp application, set up (aiohttp is loaded by now)."""
        from aiohttp import web

        from gateway.ops.routes import make_app

        runner = web.AppRunner(
            make_app(self.snapshot, self.metrics.registry), access_log=None, handle_signals=False
        )
        await runner.setup()
        return runner
