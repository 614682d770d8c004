"""MQTT uplink: a thin adapter that drives rows from the outbox to the broker.

The outbox owns delivery (STYLE.md rule 11). Per connection: a fresh client
(:mod:`gateway.delivery.mqtt_client`, MQTT 5, QoS 1), a retained ``online`` birth on
``<prefix>/status`` (``offline`` is the Last Will), every retained state
(``<prefix>/state/<device>``, the dashboards' zone and area states, discovery
configs: :meth:`Uplink.retain`) published again, then due rows are sent in priority,
then creation order with at most ``window`` publishes in flight (the configured
window capped by the broker's Receive Maximum). A row is marked sent only on its
PUBACK. Any publish error or timeout means "outcome unknown": the connection is
torn down (a link that stays up but acks nothing is one), the row stays pending
and every unconfirmed row is re-driven from SQLite after the next CONNACK. An
alarm the center has not acked comes due again ``ack_timeout`` after its PUBACK
and is re-published with the same id, forever.

``gateway.heartbeat`` is published every ``heartbeat_s`` while connected, with a
message expiry, and never stored. Reconnects use capped exponential backoff with
full jitter (tenacity) and never give up; a session that got connected starts
the backoff afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_random_exponential

from gateway.config.root import BrokerConfig
from gateway.delivery.mqtt_client import capture_receive_maximum, make_client
from gateway.delivery.outbox import Outbox, PendingRow
from gateway.errors import GatewayError, UplinkError
from gateway.events.model import Event

log = structlog.get_logger(__name__)

AckHandler = Callable[[list[str]], Awaitable[None]]
# (command name, raw payload, retained flag) -> result body for ``…/cmd/<name>/result``.
CommandHandler = Callable[[str, bytes, bool], Awaitable[dict[str, Any]]]
HeartbeatSource = Callable[[], Awaitable[Event]]


@dataclass(slots=True)
class UplinkStats:
    """Counters of the uplink, for the heartbeat and tests.

    Attributes:
        connects: successful CONNACKs.
        published: PUBACKs seen for outbox rows.
        publish_failures: publishes whose outcome became unknown.
        republished_alarms: alarms published again because the center did not ack.
        max_inflight_seen: most publishes in flight at once (over all connections).
        window: in-flight window in force on the current connection.
        heartbeats: heartbeats published.
        attempts: connection attempts (each one, whatever its outcome).
        inflight: publishes awaiting their PUBACK now.
        idle: the send loop is waiting for work (nothing due), not stuck in a step.
    """

    connects: int = 0
    published: int = 0
    publish_failures: int = 0
    republished_alarms: int = 0
    max_inflight_seen: int = 0
    window: int = 0
    heartbeats: int = 0
    attempts: int = 0
    inflight: int = 0
    idle: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)


def _publish_properties(content_type: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    return props


# Built once: paho packs them per publish but never changes them.
_EVENT_PROPS = _publish_properties("application/cloudevents+json; charset=utf-8")
_JPEG_PROPS = _publish_properties("image/jpeg")


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
        heartbeat: makes the heartbeat event (not stored); None sends none.
        on_puback: called with the seconds from publish to PUBACK of each outbox row.
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
        heartbeat: HeartbeatSource | None = None,
        on_puback: Callable[[float], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._prefix = prefix
        self._outbox = outbox
        self._client_id = client_id
        self._on_ack = on_ack
        self._on_command = on_command
        self._heartbeat = heartbeat
        self._on_puback = on_puback
        self._states: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._state_changed = asyncio.Event()
        # PUBACKed rows whose "sent" mark is not committed yet: not sent again meanwhile.
        self._settling: set[int] = set()
        self.stats = UplinkStats()

    def set_state(self, device: str, state: dict[str, Any]) -> None:
        """Record a device's current state for the retained ``<prefix>/state/<device>``.

        Published at once when connected, and again after every reconnect.
        """
        self.retain(f"{self._prefix}/state/{device}", state)

    def retain(self, topic: str, body: Mapping[str, Any]) -> None:
        """Record the current retained message of ``topic`` (a full topic), as JSON.

        Published (QoS 1, retained) at once when connected, and again after every
        reconnect; a newer body for the same topic replaces one not yet sent.
        """
        self._states[topic] = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        self._dirty.add(topic)
        self._state_changed.set()

    @property
    def retained_topics(self) -> frozenset[str]:
        """Every topic whose retained message the uplink keeps current."""
        return frozenset(self._states)

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
                await asyncio.sleep(random.uniform(0, self._cfg.reconnect_min))

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
        self.stats.attempts += 1
        receive_max: list[int] = []
        client = make_client(
            self._cfg, client_id=self._client_id, status_topic=f"{self._prefix}/status"
        )
        capture_receive_maximum(client, receive_max)
        async with client:
            window = min([self._cfg.window, *receive_max])
            self.stats.window = window
            self.stats.connects += 1
            log.info("uplink.connected", host=self._cfg.host, port=self._cfg.port, window=window)
            try:
                await self._publish(client, "status", b"online", retain=True)
                await client.subscribe(f"{self._prefix}/ack", qos=1)
                if self._on_command is not None:
                    await client.subscribe(f"{self._prefix}/cmd/+", qos=1)
                self.stats.connected.set()
                self._dirty = set(self._states)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._send_loop(client, window), name="uplink-send")
                    tg.create_task(self._receive_loop(client), name="uplink-receive")
                    tg.create_task(self._state_loop(client), name="uplink-state")
                    if self._heartbeat is not None:
                        tg.create_task(self._heartbeat_loop(client), name="uplink-heartbeat")
            except* (aiomqtt.MqttError, OSError, GatewayError) as group:
                raise _SessionLost(str(group.exceptions[0])) from group.exceptions[0]
            finally:
                self.stats.connected.clear()

    async def _publish(
        self,
        client: aiomqtt.Client,
        suffix: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        await client.publish(
            f"{self._prefix}/{suffix}",
            payload,
            qos=1,
            retain=retain,
            properties=properties,
            timeout=self._cfg.publish_timeout,
        )

    # -- outbox rows ----------------------------------------------------------------------

    async def _send_loop(self, client: aiomqtt.Client, window: int) -> None:
        """Keep up to ``window`` rows in flight, always taking the best due ones."""
        inflight: dict[int, asyncio.Task[None]] = {}
        failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        slot_free = asyncio.Event()
        self._outbox.poke()
        try:
            while True:
                if failure.done():
                    raise failure.result()
                free = window - len(inflight)
                if free < max(1, window // 4):
                    # Refill in batches (a quarter of the window), not one query per
                    # PUBACK; a new alarm waits at most a quarter window of PUBACKs.
                    slot_free.clear()
                    await _first([slot_free.wait()], failure)
                    continue
                slot_free.clear()
                rows = await self._outbox.pending(free, exclude=inflight.keys() | self._settling)
                if not rows:
                    # Wake for new rows, for a PUBACK (it may start an ack timer), or
                    # when the next unacked alarm comes due again.
                    due = await self._outbox.next_due_in()
                    waits: list[Awaitable[Any]] = [self._outbox.wait_for_new()]
                    if inflight:
                        waits.append(slot_free.wait())
                    self.stats.idle = True
                    try:
                        await _first(waits, failure, within=due)
                    finally:
                        self.stats.idle = False
                    continue
                for row in rows:
                    task = asyncio.create_task(self._send_row(client, row), name=f"pub-{row.n}")
                    inflight[row.n] = task
                    task.add_done_callback(
                        functools.partial(_finish, row.n, inflight, slot_free, failure)
                    )
                self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, len(inflight))
        finally:
            for task in inflight.values():
                task.cancel()

    async def _send_row(self, client: aiomqtt.Client, row: PendingRow) -> None:
        props = _EVENT_PROPS if row.seq is not None else _JPEG_PROPS
        if row.attempts and row.track_ack:
            self.stats.republished_alarms += 1
            log.warning("uplink.alarm_not_acked_republishing", id=row.id, attempts=row.attempts)
        started = time.monotonic()
        self.stats.inflight += 1
        try:
            await self._publish(client, row.topic, row.payload, properties=props)
        except aiomqtt.MqttError:
            self.stats.publish_failures += 1
            raise
        finally:
            self.stats.inflight -= 1
        self.stats.published += 1
        if self._on_puback is not None:
            self._on_puback(time.monotonic() - started)
        # The window slot is free at PUBACK; the "sent" mark is committed in the
        # background (group commit). Lost in a crash, it costs a duplicate, never a loss.
        self._settling.add(row.n)
        task = asyncio.create_task(self._outbox.mark_sent([row.n]))
        task.add_done_callback(functools.partial(self._settled, row.n, row.track_ack))

    def _settled(self, n: int, track_ack: bool, task: asyncio.Task[None]) -> None:
        self._settling.discard(n)
        failed = task.cancelled() or task.exception() is not None
        if failed and not task.cancelled():
            log.error("uplink.mark_sent_failed", n=n, error=str(task.exception()))
        # Wake the send loop only where that can start work: an alarm's ack timer
        # starts now, and a row whose mark failed is due again.
        if failed or track_ack:
            self._outbox.poke()

    # -- state and heartbeat --------------------------------------------------------------

    async def _state_loop(self, client: aiomqtt.Client) -> None:
        while True:
            while self._dirty:
                topic = self._dirty.pop()
                try:
                    await client.publish(
                        topic,
                        self._states[topic],
                        qos=1,
                        retain=True,
                        timeout=self._cfg.publish_timeout,
                    )
                except BaseException:
                    self._dirty.add(topic)
                    raise
            self._state_changed.clear()
            if not self._dirty:
                await self._state_changed.wait()

    async def _heartbeat_loop(self, client: aiomqtt.Client) -> None:
        assert self._heartbeat is not None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = max(1, round(2 * self._cfg.heartbeat_s))
        props.ContentType = "application/cloudevents+json; charset=utf-8"
        while True:
            event = await self._heartbeat()
            await self._publish(client, event.topic_suffix, event.to_json(), properties=props)
            self.stats.heartbeats += 1
            await asyncio.sleep(self._cfg.heartbeat_s)

    # -- downlink -------------------------------------------------------------------------

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
                    if not payload:  # a center clearing a retained command: nothing asked
                        continue
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
        body = json.dumps(result, ensure_ascii=False).encode()
        await self._publish(client, f"cmd/{name}/result", body)


def _finish(
    n: int,
    inflight: dict[int, asyncio.Task[None]],
    slot_free: asyncio.Event,
    failure: asyncio.Future[BaseException],
    task: asyncio.Task[None],
) -> None:
    inflight.pop(n, None)
    slot_free.set()
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not failure.done():
        failure.set_result(exc if isinstance(exc, Exception) else UplinkError(str(exc)))


async def _first(
    aws: list[Awaitable[Any]],
    failure: asyncio.Future[BaseException],
    within: float | None = None,
) -> None:
    """Wait for any of ``aws``, for ``failure``, or ``within`` seconds, whichever is first."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait({*tasks, failure}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _parse_ack(payload: bytes) -> list[str]:
    try:
        body = json.loads(payload)
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested too deeply
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
        return []
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
        return []
    return ids
