"""The bench page as a task of the daemon: bind, serve, keep the document current.

:class:`BenchServer` binds ``[bench] host``/``port`` (localhost by default; port 0
takes a free one, told by :attr:`BenchServer.port`) when the daemon starts, serves
:mod:`gateway.bench.app` (aiohttp, loaded at the page's first connection:
:mod:`gateway.ops.lazy_port`) and keeps the page document current. It runs beside
the alarm path and never in it: it reads the gateway's state and writes nothing but
walk tests, so a page that cannot bind, or a browser that hangs, changes nothing for
alarms (the supervisor restarts a failed bind with backoff, and says so in the log).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from gateway.bench.auth import BenchAuth
from gateway.bench.context import BenchContext
from gateway.bench.live import LiveDocument
from gateway.bench.model import BenchModel, BenchSources
from gateway.config.views import BenchConfig
from gateway.errors import ConfigError
from gateway.ops.lazy_port import LazyPort
from gateway.runtime.notifier import Notifier

if TYPE_CHECKING:  # loaded at the page's first connection (gateway.ops.lazy_port)
    from aiohttp import web

log = structlog.get_logger(__name__)

_SHUTDOWN_S = 2.0


class BenchServer:
    """Serves the page for the life of the daemon. ``await server.run()``; cancel to stop.

    Args:
        cfg: ``[bench]``.
        ctx: the document, the password, the walk test, the pictures.

    Attributes:
        port: the bound port once serving, else None.
        serving: set once the port is bound.
    """

    def __init__(self, cfg: BenchConfig, ctx: BenchContext) -> None:
        self._cfg = cfg
        self._ctx = ctx
        self.port: int | None = None
        self.serving = asyncio.Event()

    @property
    def live(self) -> LiveDocument:
        """The page document (built only while a page is open)."""
        return self._ctx.live

    @property
    def url(self) -> str | None:
        """``http://<host>:<port>/`` once serving."""
        return None if self.port is None else f"http://{self._cfg.host}:{self.port}/"

    async def run(self) -> None:
        """Bind, serve and keep the document current until cancelled.

        Raises:
            OSError: the address cannot be bound (the supervisor retries).
        """
        try:
            async with LazyPort(self._cfg.host, self._cfg.port) as port, asyncio.TaskGroup() as tg:
                self.port = port.addresses[0][1]
                self.serving.set()
                log.info("bench.serving", url=self.url, password=self._ctx.auth.enabled)
                tg.create_task(port.serve("gateway.bench.app", self._runner), name="bench-http")
                await self._ctx.live.run()
        finally:
            self.serving.clear()
            self.port = None

    async def _runner(self) -> web.AppRunner:
        """The page's aiohttp application, set up (aiohttp is loaded by now)."""
        from aiohttp import web

        from gateway.bench.app import make_app

        app = make_app(self._ctx, self._cfg.host)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await runner.setup()
        return runner


def bench_server(sources: BenchSources, notifier: Notifier) -> BenchServer | None:
    """The bench page of a gateway as ``[bench]`` configures it; None when disabled.

    A password file that cannot be read is logged and the page is not served
    (rather than served without the password the site asked for); the gateway
    runs on without it.
    """
    cfg = sources.cfg.bench
    if not cfg.enabled:
        return None
    try:
        auth = BenchAuth(cfg.password())
    except ConfigError as exc:
        log.error("bench.not_served", error=str(exc))
        return None
    live = LiveDocument(BenchModel(sources).snapshot, notifier.listen())
    return BenchServer(cfg, BenchContext(live, auth, sources.alarm.walk, sources.feed))
