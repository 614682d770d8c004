"""MQTT uplink: a thin adapter that drives rows from the outbox to the broker.

The outbox owns delivery (STYLE.md rule 11). Per connection this module builds a
fresh aiomqtt client (MQTT 5, QoS 1), publishes a retained ``online`` birth on
``<prefix>/status`` (``offline`` is the Last Will), then sends pending rows in
priority-then-``seq`` order with at most ``window`` publishes in flight, where
``window`` is the configured one capped by the broker's Receive Maximum
(CONNACK property). A row is marked sent only when its PUBACK is seen; any
publish error means "outcome unknown": the connection is torn down, the row
stays pending and is re-driven from SQLite after the next CONNACK.

Reconnects use capped exponential backoff with full jitter (tenacity) and never
give up; a session that got connected resets the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_random_exponential

from gateway.config import BrokerConfig
from gateway.errors import GatewayError, UplinkError
from gateway.outbox import Outbox, PendingRow

log = structlog.get_logger(__name__)

AckHandler = Callable[[list[str]], Awaitable[None]]
# (command name, raw payload, retained flag) -> result body for ``…/cmd/<name>/result``.
CommandHandler = Callable[[str, bytes, bool], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class UplinkStats:
    """Counters of the uplink, for the heartbeat and tests.

    Attributes:
        connects: successful CONNACKs.
        published: PUBACKs seen.
        publish_failures: publishes whose outcome became unknown.
        max_inflight_seen: most publishes in flight at once.
        window: in-flight window in force on the current connection.
    """

    connects: int = 0
    published: int = 0
    publish_failures: int = 0
    max_inflight_seen: int = 0
    window: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class _SessionLost(Exception):
    """A connection that had been up ended; reconnect with a fresh backoff."""


class Uplink:
    """Carries the outbox to the broker. Run :meth:`run` as a task.

    Args:
        cfg: ``[broker]`` settings.
        prefix: topic prefix ``campus/v1/<site>/<gateway>``.
        outbox: the open outbox.
        client_id: MQTT client identifier.
        on_ack: called with event ids the center acknowledged on ``<prefix>/ack``.
        on_command: called for each message on ``<prefix>/cmd/<name>``; its return
            value is published (QoS 1) on ``<prefix>/cmd/<name>/result``. Commands run
            concurrently, each in its own task; an exception from the handler becomes
            ``{"status": "error", "error": …}``.
    """

    def __init__(
        self,
        cfg: BrokerConfig,
        prefix: str,
        outbox: Outbox,
        *,
        client_id: str,
        on_ack: AckHandler | None = None,
        on_command: CommandHandler | None = None,
    ) -> None:
        self._cfg = cfg
        self._prefix = prefix
        self._outbox = outbox
        self._client_id = client_id
        self._on_ack = on_ack
        self._on_command = on_command
        self.stats = UplinkStats()

    async def run(self) -> None:
        """Connect, send, reconnect; forever. Only cancellation ends it."""
        while True:
            retrying = AsyncRetrying(
                wait=wait_random_exponential(
                    multiplier=self._cfg.reconnect_min, max=self._cfg.reconnect_max
                ),
                retry=retry_if_exception_type((aiomqtt.MqttError, OSError, UplinkError)),
                stop=stop_never,
                before_sleep=self._log_retry,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._session()
            except _SessionLost as exc:
                log.warning("uplink.connection_lost", error=str(exc.__cause__ or exc))

    @staticmethod
    def _log_retry(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "uplink.connect_failed",
            attempt=state.attempt_number,
            retry_in_s=round(state.next_action.sleep, 2) if state.next_action else None,
            error=str(exc),
        )

    async def _session(self) -> None:
        receive_max: list[int] = []
        client = self._make_client()
        _capture_receive_maximum(client, receive_max)
        async with client:
            window = min([self._cfg.window, *receive_max])
            self.stats.window = window
            self.stats.connects += 1
            log.info("uplink.connected", host=self._cfg.host, port=self._cfg.port, window=window)
            try:
                await client.publish(
                    f"{self._prefix}/status",
                    b"online",
                    qos=1,
                    retain=True,
                    timeout=self._cfg.publish_timeout,
                )
                await client.subscribe(f"{self._prefix}/ack", qos=1)
                if self._on_command is not None:
                    await client.subscribe(f"{self._prefix}/cmd/+", qos=1)
                self.stats.connected.set()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._send_loop(client, window), name="uplink-send")
                    tg.create_task(self._receive_loop(client), name="uplink-receive")
            except* (aiomqtt.MqttError, OSError, GatewayError) as group:
                raise _SessionLost(str(group.exceptions[0])) from group.exceptions[0]
            finally:
                self.stats.connected.clear()

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._cfg
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        tls_context = None
        if cfg.tls is not None:
            tls_context = ssl.create_default_context(
                cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None
            )
            if cfg.tls.cert_file is not None:
                tls_context.load_cert_chain(
                    str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
                )
            if cfg.tls.insecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=self._client_id,
            username=cfg.username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            keepalive=cfg.keepalive,
            timeout=cfg.publish_timeout,
            will=aiomqtt.Will(f"{self._prefix}/status", b"offline", qos=1, retain=True),
            max_inflight_messages=cfg.window,
            max_queued_outgoing_messages=0,
            tls_context=tls_context,
            # Nagle costs ~40 ms per QoS 1 hop on a quiet link; alarms go out at once.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _send_loop(self, client: aiomqtt.Client, window: int) -> None:
        """Keep up to ``window`` rows in flight, always taking the best pending ones."""
        inflight: dict[int, asyncio.Task[None]] = {}
        failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        slot_free = asyncio.Event()
        self._outbox.poke()
        try:
            while True:
                if failure.done():
                    raise failure.result()
                free = window - len(inflight)
                if free <= 0:
                    slot_free.clear()
                    await _first(slot_free.wait(), failure)
                    continue
                rows = await self._outbox.pending(free, exclude=inflight.keys())
                if not rows:
                    await _first(self._outbox.wait_for_new(), failure)
                    continue
                for row in rows:
                    task = asyncio.create_task(self._publish(client, row), name=f"pub-{row.seq}")
                    inflight[row.seq] = task
                    task.add_done_callback(
                        functools.partial(_finish, row.seq, inflight, slot_free, failure)
                    )
                self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, len(inflight))
        finally:
            for task in inflight.values():
                task.cancel()

    async def _publish(self, client: aiomqtt.Client, row: PendingRow) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/cloudevents+json; charset=utf-8"
        try:
            await client.publish(
                f"{self._prefix}/{row.topic}",
                row.payload,
                qos=1,
                properties=props,
                timeout=self._cfg.publish_timeout,
            )
        except aiomqtt.MqttError:
            self.stats.publish_failures += 1
            raise
        await self._outbox.mark_sent([row.seq])
        self.stats.published += 1

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        cmd_prefix = f"{self._prefix}/cmd/"
        async with asyncio.TaskGroup() as commands:
            async for message in client.messages:
                topic = message.topic.value
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if topic == f"{self._prefix}/ack":
                    ids = _parse_ack(payload)
                    if ids and self._on_ack is not None:
                        await self._on_ack(ids)
                elif topic.startswith(cmd_prefix) and self._on_command is not None:
                    name = topic[len(cmd_prefix) :]
                    commands.create_task(
                        self._command(client, name, payload, bool(message.retain)),
                        name=f"cmd-{name}",
                    )

    async def _command(
        self, client: aiomqtt.Client, name: str, payload: bytes, retained: bool
    ) -> None:
        assert self._on_command is not None
        try:
            result = await self._on_command(name, payload, retained)
        except Exception as exc:
            log.exception("uplink.command_failed", command=name)
            result = {"status": "error", "error": f"internal error: {exc}"}
        await client.publish(
            f"{self._prefix}/cmd/{name}/result",
            json.dumps(result, ensure_ascii=False).encode(),
            qos=1,
            timeout=self._cfg.publish_timeout,
        )


def _finish(
    seq: int,
    inflight: dict[int, asyncio.Task[None]],
    slot_free: asyncio.Event,
    failure: asyncio.Future[BaseException],
    task: asyncio.Task[None],
) -> None:
    inflight.pop(seq, None)
    slot_free.set()
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not failure.done():
        failure.set_result(exc if isinstance(exc, Exception) else UplinkError(str(exc)))


async def _first(aw: Awaitable[Any], failure: asyncio.Future[BaseException]) -> None:
    """Wait for ``aw`` or for ``failure`` to be set, whichever comes first."""
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.wait({task, failure}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _parse_ack(payload: Any) -> list[str]:
    try:
        body = json.loads(payload)
    except (ValueError, TypeError):
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
        return []
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
        return []
    return ids


def _capture_receive_maximum(client: aiomqtt.Client, sink: list[int]) -> None:
    """Record the broker's Receive Maximum from CONNACK (paho does not apply it).

    aiomqtt installs its own ``on_connect`` on the paho client; we wrap it.
    """
    paho_client: paho.Client = client._client
    original = paho_client.on_connect

    def on_connect(*args: Any) -> None:
        props = args[4] if len(args) > 4 else None
        value = getattr(props, "ReceiveMaximum", None)
        if isinstance(value, int) and value > 0:
            sink.append(value)
        if original is not None:
            original(*args)

    paho_client.on_connect = on_connect
