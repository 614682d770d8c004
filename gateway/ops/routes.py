"""The local endpoint's routes (aiohttp): ``GET /metrics`` and ``GET /status``.

Loaded by :class:`gateway.ops.server.OpsServer` at the endpoint's first connection
(:mod:`gateway.ops.lazy_port`), not at the daemon's start.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.errors import GatewayError
from gateway.ops.status import Status


def make_app(
    snapshot: Callable[[], Awaitable[Status]], registry: CollectorRegistry
) -> web.Application:
    """``/metrics`` (``registry`` in the Prometheus text format, after a fresh ``snapshot``)
    and ``/status`` (the snapshot as JSON); 503 with the reason while the snapshot
    cannot be taken (the outbox is closed)."""

    async def metrics(_request: web.Request) -> web.Response:
        try:
            await snapshot()
        except GatewayError as exc:
            return web.Response(status=503, text=f"status unavailable: {exc}\n")
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_request: web.Request) -> web.Response:
        try:
            shown = await snapshot()
        except GatewayError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.Response(
            text=json.dumps(shown.to_dict(), ensure_ascii=False),
            content_type="application/json",
            charset="utf-8",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app
