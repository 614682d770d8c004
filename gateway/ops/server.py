"""The local HTTP endpoint: ``GET /metrics`` (Prometheus) and ``GET /status`` (JSON).

Read-only, bound to ``[metrics] host``/``port`` (loopback by default). Each
request reads one fresh :class:`~gateway.ops.status.Status` snapshot; nothing
here touches the uplink, so it answers while the broker is down. A port that
cannot be bound raises ``OSError`` from :meth:`OpsServer.run`; the daemon runs it
under the supervisor, which logs, counts and retries it — the alarm path never
waits for it.
"""

from __future__ import annotations

import asyncio
import json

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.config.root import MetricsConfig
from gateway.errors import GatewayError
from gateway.ops.prometheus import StatusCollector
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
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.cfg.host, self.cfg.port, reuse_address=True)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.address = (str(host), int(port))
            self.listening.set()
            log.info("ops.listening", host=host, port=port)
            await asyncio.Event().wait()
        finally:
            self.listening.clear()
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        try:
            await self.snapshot()
        except GatewayError as exc:
            return web.Response(status=503, text=f"status unavailable: {exc}\n")
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, _request: web.Request) -> web.Response:
        try:
            status = await self.snapshot()
        except GatewayError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.Response(
            text=json.dumps(status.to_dict(), ensure_ascii=False),
            content_type="application/json",
            charset="utf-8",
        )
