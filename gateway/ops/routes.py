"""The local endpoint's routes: ``/metrics`` and ``/status`` as :class:`Reply` values.

Served by :mod:`gateway.ops.plain_http` (no web framework: see there why).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.errors import GatewayError
from gateway.ops.plain_http import Reply, Route
from gateway.ops.status import Status


def routes(
    snapshot: Callable[[], Awaitable[Status]], registry: CollectorRegistry
) -> Mapping[str, Route]:
    """``/metrics`` (``registry`` in the Prometheus text format, after a fresh
    ``snapshot``) and ``/status`` (the snapshot as JSON); 503 with the reason while
    the snapshot cannot be taken (the outbox is closed)."""

    async def metrics() -> Reply:
        try:
            await snapshot()
        except GatewayError as exc:
            return Reply(503, f"status unavailable: {exc}\n".encode())
        return Reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    async def status() -> Reply:
        try:
            shown = await snapshot()
        except GatewayError as exc:
            return Reply(503, json.dumps({"error": str(exc)}).encode(), _JSON)
        return Reply(200, json.dumps(shown.to_dict(), ensure_ascii=False).encode(), _JSON)

    return {"/metrics": metrics, "/status": status}


_JSON = "application/json; charset=utf-8"
