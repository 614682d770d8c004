"""The local HTTP endpoint: ``GET /metrics`` (Prometheus) and ``GET /status`` (JSON).

Read-only, bound to ``[metrics] host``/``port`` (loopback by default) when the
daemon starts, and served without a web framework (:mod:`gateway.ops.plain_http`:
a box is scraped for its whole life, and aiohttp would keep about 10 MiB
loaded; routes in :mod:`gateway.ops.routes`). Each request reads one fresh
:class:`~gateway.ops.status.Status` snapshot; nothing here touches the uplink, so
it answers while the broker is down. A port that cannot be bound raises
``OSError`` from :meth:`OpsServer.run`; the daemon runs it under the supervisor,
which logs, counts and retries it — the alarm path never waits for it.
"""

from __future__ import annotations

import asyncio

import structlog

from gateway.config.root import MetricsConfig
from gateway.ops.plain_http import serve
from gateway.ops.prometheus import StatusCollector
from gateway.ops.routes import routes
from gateway.ops.status import Status, StatusSources, collect
from gateway.runtime.metrics import GatewayMetrics

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
        server = await serve(
            self.cfg.host, self.cfg.port, routes(self.snapshot, self.metrics.registry)
        )
        try:
            host, port = server.sockets[0].getsockname()[:2]
            self.address = (str(host), int(port))
            self.listening.set()
            log.info("ops.listening", host=host, port=port)
            await asyncio.Event().wait()
        finally:
            self.listening.clear()
            server.close()
            await server.wait_closed()
