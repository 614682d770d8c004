"""MQTT uplink: a thin adapter that drives rows from the outbox to the broker.

The outbox owns delivery (STYLE.md rule 11). Per connection
(:class:`~gateway.delivery.mqtt_client.MqttConnection`, MQTT 5, QoS 1, a fresh
client each time): a retained ``online`` birth on ``<prefix>/status`` (a retained
``offline`` is the Last Will, and is published on a clean stop before the
DISCONNECT), subscriptions to ``<prefix>/ack`` and ``<prefix>/cmd/+`` with Retain
As Published, every retained state (``<prefix>/state/<device>``, the dashboards'
zone and area states, discovery configs: :meth:`Uplink.retain`) published again,
then due rows are sent in priority, then creation order.

**One window.** Every QoS 1 publish — rows, birth, state, heartbeat, command
results — takes a slot of the connection's window (the configured ``window``
capped by the broker's Receive Maximum) and gives it back at its PUBACK.

**Sent means accepted.** A row is marked sent only on a successful PUBACK. A
PUBACK with a failure reason (>= 0x80) leaves it pending; its topic backs off and
``fault.uplink`` is raised (:mod:`gateway.delivery.refusals`). Any other publish
error or timeout means "outcome unknown": the connection is torn down (a link
that stays up but acks nothing is one) and every unconfirmed row is re-driven
from SQLite after the next CONNACK. A priority 1-3 event the center has not acked
comes due again ``ack_timeout`` after its PUBACK and is re-published with the
same id, forever; re-sends hold a quarter of the window at most, so a slow center
never turns them into a storm.

``gateway.heartbeat`` is published every ``heartbeat_s`` while connected, with a
message expiry, and never stored. Reconnects never give up, whatever the error:
for ``reconnect_max`` seconds after a lost connection every ``reconnect_min``
seconds (a flapping broker's short up-windows are used), else with capped
exponential backoff and full jitter (:mod:`gateway.delivery.reconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never

from gateway.config.root import BrokerConfig
from gateway.delivery.mqtt_client import (
    MqttConnection,
    Properties,
    ReasonCode,
    publish_properties,
    subscribe_options,
)
from gateway.delivery.outbox import ALARM_PRIORITY, Outbox, PendingRow
from gateway.delivery.reconnect import ReconnectWait
from gateway.delivery.refusals import Refusals
from gateway.errors import GatewayError, PublishRefused, UplinkError
from gateway.events.model import Event
from gateway.runtime.flag import Flag, first_of
from gateway.runtime.supervisor import raise_if_cancelling

log = structlog.get_logger(__name__)

AckHandler = Callable[[bytes], Coroutine[Any, Any, None]]
"""Called with the payload of every message on ``<prefix>/ack``."""
# (command name, raw payload, retained flag) -> result body for ``…/cmd/<name>/result``.
CommandHandler = Callable[[str, bytes, bool], Awaitable[dict[str, Any]]]
HeartbeatSource = Callable[[], Awaitable[Event]]

EVENT_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
_RECHECK_S = 0.1
"""Seconds the send loop waits, with nothing taken, before it looks again at a re-send
that is due but was not returned (its topic backs off, or the file could not be read)."""
# Built once: paho packs them per publish but never changes them.
_EVENT_PROPS = publish_properties(content_type=EVENT_CONTENT_TYPE)
_JPEG_PROPS = publish_properties(content_type="image/jpeg")
_JSON_PROPS = publish_properties(content_type="application/json; charset=utf-8")


MAX_COMMANDS_PENDING = 64
"""Commands handled at once (each checked, audited and answered); more that arrive
meanwhile are dropped and counted (``UplinkStats.commands_dropped``): a center sends
a few at a time, and a flood from any client of the broker must cost neither
memory without bound nor the alarms' share of the window (review of 2026-12-05)."""


@dataclass(slots=True)
class UplinkStats:
    """Counters of the uplink, for the heartbeat and tests.

    Attributes:
        attempts: connection attempts.
        connects: successful CONNACKs.
        published: successful PUBACKs seen for outbox rows.
        publish_failures: publishes whose outcome became unknown.
        refused: publishes the broker refused with a failure reason.
        republished_alarms: priority 1-3 events published again because the center
            did not ack.
        max_inflight_seen: most QoS 1 publishes in flight at once (over all connections).
        max_resending: most re-sends (rows PUBACKed before) in flight at once; a
            quarter of the window at most.
        window: in-flight window in force on the current connection.
        receive_maximum: the broker's Receive Maximum on the current connection.
        heartbeats: heartbeats published.
        commands_dropped: commands not looked at, because :data:`MAX_COMMANDS_PENDING`
            were already being handled (a flood from the broker).
        inflight: publishes awaiting their PUBACK now.
        idle: the send loop is waiting for work (nothing due), not stuck in a step.
    """

    attempts: int = 0
    connects: int = 0
    published: int = 0
    publish_failures: int = 0
    refused: int = 0
    republished_alarms: int = 0
    max_inflight_seen: int = 0
    max_resending: int = 0
    window: int = 0
    receive_maximum: int = 0
    heartbeats: int = 0
    commands_dropped: int = 0
    inflight: int = 0
    idle: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class _SessionLost(Exception):
    """A connection that had been up ended; reconnect with a fresh backoff."""


class Uplink:
    """Carries the outbox to the broker. Run :meth:`run` as a task; cancel it to stop
    (a clean stop publishes the retained ``offline``).

    Args:
        cfg: ``[broker]`` settings.
        prefix: topic prefix ``campus/v1/<site>/<gateway>``.
        outbox: the open outbox.
        client_id: MQTT client identifier.
        on_ack: called with the payload of each message on ``<prefix>/ack``.
        on_command: called for each message on ``<prefix>/cmd/<name>``; its return
            value is published (QoS 1) on ``<prefix>/cmd/<name>/result``. Commands run
            concurrently, each in its own task; an exception from the handler becomes
            ``{"status": "error", "error": …}``.
        heartbeat: makes the heartbeat event (not stored); None sends none.
        on_puback: called with the seconds from publish to PUBACK of each outbox row.

    Attributes:
        stats: counters.
        refusals: what the broker refused (back-off, counts, reasons).
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
        # The rows of each commit's shared "sent" future (``Outbox.mark_sent_soon``):
        # settled together, one callback per commit rather than one per PUBACK.
        self._marks: dict[asyncio.Future[None], list[PendingRow]] = {}
        self.stats = UplinkStats()
        self.refusals = Refusals(cfg.reconnect_min, cfg.reconnect_max)
        self._reconnect_wait = ReconnectWait(cfg.reconnect_min, cfg.reconnect_max)

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

    def figures(self) -> dict[str, Any]:
        """The uplink's part of the heartbeat: refusals per PUBACK reason, the window, and
        ``heartbeat_s`` (a center declares the path down after 3 heartbeats missed)."""
        return {
            "heartbeat_s": self._cfg.heartbeat_s,
            "puback_failures": self.refusals.figures(),
            "window": self.stats.window,
            "receive_maximum": self.stats.receive_maximum,
        }

    @property
    def retained_topics(self) -> frozenset[str]:
        """Every topic whose retained message the uplink keeps current."""
        return frozenset(self._states)

    async def run(self) -> None:
        """Connect, send, reconnect; forever. Only cancellation ends it."""
        while True:
            retrying = AsyncRetrying(
                wait=self._reconnect_wait,
                retry=retry_if_exception_type((OSError, GatewayError)),
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
                raise_if_cancelling()  # a stop that came with the loss is still a stop
                self._reconnect_wait.connection_lost()
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
        raise_if_cancelling()  # a cancellation a failed attempt swallowed ends the retries
        self.stats.attempts += 1
        conn = MqttConnection(
            self._cfg, client_id=self._client_id, will_topic=f"{self._prefix}/status"
        )
        await conn.connect()
        self.stats.window = conn.window.size
        self.stats.receive_maximum = conn.receive_maximum
        self.stats.connects += 1
        log.info(
            "uplink.connected", host=self._cfg.host, port=self._cfg.port,
            window=conn.window.size, receive_maximum=conn.receive_maximum,
        )  # fmt: skip
        try:
            await self._connected(conn)
        except asyncio.CancelledError:
            await conn.close(goodbye=b"offline")  # a clean stop: the status tells the truth
            raise
        finally:
            self.stats.connected.clear()
            self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, conn.window.max_seen)
            await conn.close()

    async def _connected(self, conn: MqttConnection) -> None:
        try:
            with contextlib.suppress(PublishRefused):
                await self._publish(conn, "status", b"online", retain=True)
            options = [(f"{self._prefix}/ack", subscribe_options())]
            if self._on_command is not None:
                options.append((f"{self._prefix}/cmd/+", subscribe_options()))
            await conn.subscribe(options)
            self.stats.connected.set()
            self._dirty = set(self._states)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(conn), name="uplink-send")
                tg.create_task(self._receive_loop(conn), name="uplink-receive")
                tg.create_task(self._state_loop(conn), name="uplink-state")
                if self._heartbeat is not None:
                    tg.create_task(self._heartbeat_loop(conn), name="uplink-heartbeat")
                # The body waits too: on Python 3.11 a TaskGroup whose body has ended
                # leaks the cancel it uses to stop on a child's error (fixed in 3.12),
                # and that leak would read as a stop request to raise_if_cancelling.
                await conn.wait_lost()
        except* (OSError, GatewayError) as group:
            raise _SessionLost(str(group.exceptions[0])) from group.exceptions[0]

    async def _publish(
        self,
        conn: MqttConnection,
        suffix: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish on ``<prefix>/<suffix>`` (see :meth:`_publish_to`)."""
        await self._publish_to(
            conn, f"{self._prefix}/{suffix}", payload, key=suffix, retain=retain,
            properties=properties,
        )  # fmt: skip

    async def _publish_to(
        self,
        conn: MqttConnection,
        topic: str,
        payload: bytes,
        *,
        key: str,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish within the window; note refusals and acceptances under ``key``.

        Raises:
            PublishRefused: the broker refused it (counted, the key backs off).
            UplinkError: outcome unknown.
        """
        try:
            await conn.publish(topic, payload, retain=retain, properties=properties)
        except PublishRefused as exc:
            self._noted(key, exc.reason_code)
            raise
        except UplinkError:
            self.stats.publish_failures += 1
            raise
        self._noted(key, None)

    def _noted(self, key: str, refused: int | None) -> bool:
        """Count a PUBACK under ``key``: ``refused`` is its failure reason code, None
        for an acceptance. True when accepted."""
        if refused is None:
            self.refusals.accepted(key)
            return True
        self.stats.refused += 1
        self.refusals.refused(key, refused)
        return False

    def _key(self, topic: str) -> str:
        """A topic's refusal key: the suffix under our prefix, else the whole topic."""
        head = f"{self._prefix}/"
        return topic[len(head) :] if topic.startswith(head) else topic

    # -- outbox rows ----------------------------------------------------------------------

    async def _send_loop(self, conn: MqttConnection) -> None:
        """Keep the window full of the best due rows.

        A row is published without a task of its own: its PUBACK future's callback
        (:meth:`_puback`) notes the outcome and queues the "sent" mark, whose own
        future's callback (:meth:`_settled`) ends it (issue 14: two tasks, a timer
        and a shield per row were a fifth of a drain's time on the loop).
        """
        window = conn.window.size
        inflight: set[int] = set()  # row keys published, PUBACK not seen yet
        # Re-sends in flight, and their share of the window: a slow center's overdue
        # alarms never take more, whatever else waits (issue 14).
        resending: set[int] = set()
        share = refill = max(1, window // 4)
        failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        freed = conn.window.freed  # set by every PUBACK (and by a lost connection)
        done = functools.partial(self._puback, inflight, resending, failure)
        self._outbox.redrive()  # what was in flight on a lost connection is due again
        # When this loop ends, rows still in flight keep their window slots until their
        # PUBACK or the end of the connection (``MqttConnection._fail_all``): freeing
        # them early would let the goodbye out while they are unacked on the wire,
        # beyond the broker's Receive Maximum. A PUBACK that still comes queues its
        # mark; the rest are re-driven next session.
        while True:
            if failure.done():
                raise failure.result()
            urgent = self._outbox.due.urgent  # an alarm came: it goes before waiting publishers
            free = min(window - len(inflight), conn.window.room if urgent else conn.window.free)
            if free < (1 if urgent else refill):
                # Refill a quarter window at a time: one wake-up of this loop per
                # PUBACK was most of its cost in a drain. An alarm goes at the next
                # free slot: while one is free, a commit wakes this wait too (an
                # alarm stored meanwhile would otherwise wait for the next PUBACK,
                # seconds on a slow return path).
                freed.clear()
                wakes: tuple[Flag, ...] = (freed,)
                if free >= 1:
                    self._outbox.changed.clear()  # the check above saw what it announced
                    wakes = (freed, self._outbox.changed)
                await first_of(wakes, failure)  # a failed PUBLISH gives its slot back too
                continue
            freed.clear()
            room = share - len(resending)
            rows = await self._outbox.take(
                free,
                exclude=_Busy(inflight, self._settling),
                skip_topics=self.refusals.backing_off(),
                resends=room,
                inflight=inflight,
            )
            if not rows:
                # Wake for new rows, for a PUBACK (it may start an ack timer or free
                # a re-send's room), when the next unacked event comes due again,
                # or a back-off ends.
                again = await self._outbox.next_due_in() if room > 0 else None
                if again is not None:
                    # A re-send due now that the take did not return waits for
                    # something that wakes this loop anyway (its topic's back-off, a
                    # PUBACK, a commit) or for a read that failed: look again after a
                    # pause, never at once (a second review of 2026-12-04: an overdue
                    # alarm whose topic an ACL refused spun the loop through the
                    # back-off, 5,000-45,000 takes a second).
                    again = max(again, _RECHECK_S)
                due = _earliest(again, self.refusals.next_retry_in())
                new = self._outbox.changed
                self.stats.idle = True
                try:
                    # One future for every wake source, no task per source (issue 14).
                    await first_of((new, freed) if inflight else (new,), failure, within=due)
                finally:
                    self.stats.idle = False
                new.clear()  # the take below reads whatever it announced
                continue
            for i, row in enumerate(rows):
                ahead = row.priority <= ALARM_PRIORITY
                if (conn.window.room if ahead else conn.window.free) <= 0:
                    for later in rows[i:]:  # taken meanwhile (states, heartbeats, results)
                        self._outbox.release(later)
                    break
                self._publish_row(conn, row, inflight, resending, done, ahead=ahead)

    def _publish_row(
        self,
        conn: MqttConnection,
        row: PendingRow,
        inflight: set[int],
        resending: set[int],
        done: Callable[[PendingRow, float, asyncio.Future[Any]], None],
        *,
        ahead: bool,
    ) -> None:
        if row.attempts:
            resending.add(row.n)
            self.stats.max_resending = max(self.stats.max_resending, len(resending))
            if row.track_ack:
                self.stats.republished_alarms += 1
                log.warning("uplink.not_acked_republishing", id=row.id, attempts=row.attempts)
        props = _EVENT_PROPS if row.seq is not None else _JPEG_PROPS
        try:
            puback = conn.publish_nowait(
                f"{self._prefix}/{row.topic}", row.payload, properties=props, ahead=ahead
            )
        except BaseException:
            resending.discard(row.n)
            self._outbox.release(row)
            raise
        inflight.add(row.n)
        self.stats.inflight += 1
        puback.add_done_callback(functools.partial(done, row, time.monotonic()))

    def _puback(
        self,
        inflight: set[int],
        resending: set[int],
        failure: asyncio.Future[BaseException],
        row: PendingRow,
        started: float,
        puback: asyncio.Future[ReasonCode],
    ) -> None:
        """A row's PUBLISH ended: delivered (queue its mark), refused (due again once its
        topic's back-off ends: ``gateway.delivery.refusals``), or the connection failed."""
        inflight.discard(row.n)
        resending.discard(row.n)
        self.stats.inflight -= 1
        if puback.cancelled():  # nothing cancels it (``_fail_all`` fails it); a guard
            return
        exc = puback.exception()
        if exc is not None:
            self.stats.publish_failures += 1
            if not failure.done():
                failure.set_result(exc if isinstance(exc, Exception) else UplinkError(str(exc)))
            return
        reason = puback.result()
        if not self._noted(row.topic, int(reason.value) if reason.is_failure else None):
            self._outbox.release(row)
            return
        self.stats.published += 1
        if self._on_puback is not None:
            self._on_puback(time.monotonic() - started)
        # The window slot is free at PUBACK; the "sent" mark is committed in the
        # background (group commit). Lost in a crash, it costs a duplicate, never a loss.
        self._settling.add(row.n)
        try:
            mark = self._outbox.pubacked(row)
        except GatewayError as exc:  # the outbox is closing: the row stays pending
            self._settling.discard(row.n)
            log.error("uplink.mark_sent_failed", n=row.n, error=str(exc))
            return
        rows = self._marks.get(mark)
        if rows is None:
            rows = self._marks[mark] = []
            mark.add_done_callback(self._settled)
        rows.append(row)

    def _settled(self, mark: asyncio.Future[None]) -> None:
        """The rows whose "sent" marks one commit took: committed, or failed."""
        rows = self._marks.pop(mark, [])
        self._settling.difference_update(row.n for row in rows)
        failed = mark.cancelled() or mark.exception() is not None
        if failed:
            if not mark.cancelled():
                log.error(
                    "uplink.mark_sent_failed", rows=len(rows), n=[row.n for row in rows][:20],
                    error=str(mark.exception()),
                )  # fmt: skip
            for row in rows:
                self._outbox.release(row)
        # Wake the send loop only where that can start work: an ack timer starts
        # now, and a row whose mark failed is due again.
        if failed or any(row.track_ack for row in rows):
            self._outbox.poke()

    # -- state and heartbeat --------------------------------------------------------------

    async def _state_loop(self, conn: MqttConnection) -> None:
        while True:
            while self._dirty:
                topic = self._dirty.pop()
                try:
                    await self._publish_to(
                        conn, topic, self._states[topic], key=self._key(topic), retain=True,
                        properties=_JSON_PROPS,
                    )  # fmt: skip
                except PublishRefused:
                    self._dirty.add(topic)
                    await asyncio.sleep(self.refusals.next_retry_in() or self._cfg.reconnect_min)
                except BaseException:
                    self._dirty.add(topic)
                    raise
            self._state_changed.clear()
            if not self._dirty:
                await self._state_changed.wait()

    async def _heartbeat_loop(self, conn: MqttConnection) -> None:
        assert self._heartbeat is not None
        props = publish_properties(
            content_type=EVENT_CONTENT_TYPE, expiry_s=max(1, round(2 * self._cfg.heartbeat_s))
        )
        while True:
            event = await self._heartbeat()
            with contextlib.suppress(PublishRefused):
                await self._publish(conn, event.topic_suffix, event.to_json(), properties=props)
                self.stats.heartbeats += 1
            await asyncio.sleep(self._cfg.heartbeat_s)

    # -- downlink -------------------------------------------------------------------------

    async def _receive_loop(self, conn: MqttConnection) -> None:
        cmd_prefix = f"{self._prefix}/cmd/"
        pending: set[asyncio.Task[None]] = set()  # commands being handled
        async with asyncio.TaskGroup() as commands:
            while True:
                message = await conn.messages.get()
                if message.topic == f"{self._prefix}/ack":
                    if self._on_ack is not None:  # its mark may wait for the next commit
                        commands.create_task(self._on_ack(message.payload), name="ack")
                elif message.topic.startswith(cmd_prefix) and self._on_command is not None:
                    if not message.payload:  # a center clearing a retained command
                        continue
                    name = message.topic[len(cmd_prefix) :]
                    if len(pending) >= MAX_COMMANDS_PENDING:
                        self._dropped(name)
                        continue
                    task = commands.create_task(
                        self._command(conn, name, message.payload, message.retain),
                        name=f"cmd-{name}",
                    )
                    pending.add(task)
                    task.add_done_callback(pending.discard)

    def _dropped(self, name: str) -> None:
        """A command arrived while :data:`MAX_COMMANDS_PENDING` were being handled:
        not looked at, counted, logged at the first of a flood and every 1,000th."""
        self.stats.commands_dropped += 1
        if self.stats.commands_dropped % 1000 == 1:
            log.error(
                "uplink.commands_dropped", command=name[:64], dropped=self.stats.commands_dropped,
                pending=MAX_COMMANDS_PENDING,
            )  # fmt: skip

    async def _command(
        self, conn: MqttConnection, name: str, payload: bytes, retained: bool
    ) -> None:
        assert self._on_command is not None
        try:
            result = await self._on_command(name, payload, retained)
        except Exception as exc:
            log.exception("uplink.command_failed", command=name)
            result = {"status": "error", "error": f"internal error: {exc}"}
        body = json.dumps(result, ensure_ascii=False).encode()
        try:
            await self._publish(conn, f"cmd/{name}/result", body, properties=_JSON_PROPS)
        except PublishRefused as exc:
            log.error("uplink.result_refused", command=name, error=str(exc))


class _Busy:
    """Row keys in flight or PUBACKed with their mark not yet committed: a live view of
    both, asked ``in`` at every refill of the window (a copy would cost one entry per
    waiting mark, a thousand or more during a drain, per refill)."""

    __slots__ = ("inflight", "settling")

    def __init__(self, inflight: set[int], settling: set[int]) -> None:
        self.inflight = inflight
        self.settling = settling

    def __contains__(self, n: object) -> bool:
        return n in self.inflight or n in self.settling


def _earliest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return min(known) if known else None
