"""The duty center's commands to a gateway: build, sign, publish, await the result.

:func:`command_payload` builds the payload ``{correlation_id, issued_at,
expires_at, operator, params[, signature]}`` (DESIGN.md "MQTT topics"; signature
per :mod:`gateway.commands.signing`). :class:`CommandSender` publishes commands on
``campus/v1/<site>/<gateway>/cmd/<name>`` (MQTT 5, QoS 1) and matches the answers
on ``…/cmd/<name>/result`` by ``correlation_id``. Every argument that a broken or
malicious center could get wrong (times, key, retain flag) can be set, so the
gateway's refusals can be shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import aiomqtt

from gateway.commands.signing import SIGNATURE_FIELD, sign
from gateway.events.model import rfc3339


def command_payload(
    topic: str,
    params: dict[str, Any] | None = None,
    *,
    operator: str = "duty-officer",
    key: bytes | None = None,
    issued_at: datetime | None = None,
    ttl_s: float = 30.0,
    expires_at: datetime | None = None,
    correlation_id: str | None = None,
) -> tuple[str, bytes]:
    """A command payload for ``topic``; returns ``(correlation_id, payload)``.

    Args:
        topic: the full command topic (the signature covers it).
        params: the command's arguments.
        operator: who sends it.
        key: signs it with HMAC-SHA256 when given.
        issued_at: defaults to now (UTC).
        ttl_s: ``expires_at - issued_at`` unless ``expires_at`` is given.
        expires_at: overrides ``issued_at + ttl_s``.
        correlation_id: a random one when omitted.
    """
    issued = issued_at or datetime.now(UTC)
    correlation = correlation_id or secrets.token_hex(8)
    body: dict[str, Any] = {
        "correlation_id": correlation,
        "issued_at": rfc3339(issued),
        "expires_at": rfc3339(expires_at or issued + timedelta(seconds=ttl_s)),
        "operator": operator,
        "params": params or {},
    }
    if key is not None:
        body[SIGNATURE_FIELD] = sign(key, topic, body)
    return correlation, json.dumps(body, ensure_ascii=False).encode()


class CommandSender:
    """Sends commands to one gateway and waits for their results.

    Use as ``async with CommandSender(host, port, "demo-school", "gw1", key=k) as center:``
    then ``result = await center.send("arm", {"area": "A"})``.

    Args:
        host, port: the broker.
        site, gateway: which gateway (topic prefix ``campus/v1/<site>/<gateway>``).
        key: the site key to sign with, or None.
        identifier: MQTT client id; random when omitted.

    Attributes:
        results: every result received, in arrival order (``(name, body)``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        site: str,
        gateway: str,
        *,
        key: bytes | None = None,
        identifier: str | None = None,
    ) -> None:
        self.prefix = f"campus/v1/{site}/{gateway}"
        self.key = key
        self.results: list[tuple[str, dict[str, Any]]] = []
        self._client = aiomqtt.Client(
            host,
            port,
            identifier=identifier or f"center-cmd-{secrets.token_hex(4)}",
            protocol=aiomqtt.ProtocolVersion.V5,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client.pending_calls_threshold = 1000  # many commands at once is a test's right
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/cmd/+/result", qos=1)
        self._task = asyncio.create_task(self._receive(), name="center-results")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.__aexit__(exc_type, exc, tb)

    async def send(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        timeout_s: float = 10.0,
        retain: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Publish one command and return its result body.

        Args:
            name: the command (``arm``).
            params: its arguments.
            timeout_s: how long to wait for the result.
            retain: publish it retained (the gateway must refuse that).
            fields: more :func:`command_payload` arguments (``key``, ``issued_at`` …);
                ``key`` defaults to the sender's.

        Raises:
            TimeoutError: no result within ``timeout_s``.
        """
        correlation, future = await self.publish(name, params, retain=retain, **fields)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._waiting.pop(correlation, None)

    async def publish(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        retain: bool = False,
        **fields: Any,
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Publish one command; returns its correlation id and a future of its result."""
        topic = f"{self.prefix}/cmd/{name}"
        fields.setdefault("key", self.key)
        correlation, payload = command_payload(topic, params, **fields)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        await self._client.publish(topic, payload, qos=1, retain=retain)
        return correlation, future

    async def clear_retained(self, name: str) -> None:
        """Remove a retained command from the broker (an empty retained message)."""
        await self._client.publish(f"{self.prefix}/cmd/{name}", b"", qos=1, retain=True)

    async def _receive(self) -> None:
        async for message in self._client.messages:
            parts = message.topic.value.split("/")
            try:
                body = json.loads(message.payload if isinstance(message.payload, bytes) else b"")
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            self.results.append((parts[-2], body))
            future = self._waiting.get(str(body.get("correlation_id")))
            if future is not None and not future.done():
                future.set_result(body)
