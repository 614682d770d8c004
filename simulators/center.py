"""The police-linked duty center, simulated: receives, checks, dedupes and acks events.

:class:`CenterConsole` subscribes (MQTT 5, QoS 1) to every gateway's events and
status, validates each event against ``gateway/events/event.schema.json``, prints one
readable line per event, tracks ``seq`` per ``stream`` to report gaps (from where
it joined the stream: :class:`~simulators.center_report.SeqTracker`), dedupes by
``id`` and acks every received id on ``campus/v1/<site>/<gateway>/ack``
(DESIGN.md "Delivery: at least once, end to end"); a console started to ``watch``
never acks. It supervises each gateway's path: ``PATH down`` after 3 ×
``heartbeat_s`` (the heartbeat says its period; 30 s by default) without a
heartbeat, ``PATH up`` when one comes. It reconnects with backoff
for as long as it runs. Tests await :meth:`CenterConsole.wait_for`; technicians
run it from the command line (``simulators.center_cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

import aiomqtt
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands.signing import SIGNATURE_FIELD, sign
from gateway.events.model import event_json_schema
from gateway.runtime.supervisor import raise_if_cancelling
from gateway.runtime.tasks import cancel_and_wait
from simulators.center_report import SeqTracker, format_event

EVENTS_FILTER = "campus/v1/+/+/events/#"
STATUS_FILTER = "campus/v1/+/+/status"
HEARTBEATS_MISSED = 3
"""A path is down after this many heartbeat periods without one (EN 50136 SP6 is 20 s,
SOS Access v4 offers 90 s and 180 s; 3 × the default 10 s is 30 s)."""
DEFAULT_HEARTBEAT_S = 10.0


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message on an events topic that is not a valid event.

    Attributes:
        topic: the MQTT topic it came on.
        payload: the payload as text (undecodable bytes replaced).
        reason: why it was rejected (the schema error, bad JSON, topic mismatch).
    """

    topic: str
    payload: str
    reason: str


class CenterConsole:
    """The center side: subscribes, validates, prints, dedupes, tracks gaps, acks.

    Run it with :meth:`run` (forever), :meth:`start`/:meth:`close`, or
    ``async with CenterConsole(host, port) as console:`` (connected and
    subscribed on entry).

    Every message on an events topic with a string ``id`` is acked, valid or not
    and first delivery or not (a re-send means our last ack was lost). Acks for
    one gateway are batched for ``ack_delay`` seconds into ``{"ids": [...], "center":
    <identifier>}``, signed with ``key`` (the gateway ignores unsigned acks).

    Args:
        host: broker host.
        port: broker port.
        identifier: MQTT client id; random when omitted.
        ack: publish acks; False plays a center that never acks.
        watch: a second console beside the real center: never acks, whatever ``ack`` says.
        persistent: keep the MQTT session (clean_start False, ``session_expiry``),
            so QoS 1 events published while the console is away are delivered later.
        session_expiry: session expiry interval in seconds for ``persistent``.
        out: text stream for the console lines; ``sys.stdout`` when omitted.
        jsonl_path: file to append each accepted event to, one JSON line each.
        ack_delay: seconds to gather acks into one message (keep well under 0.1).
        backoff_initial: first reconnect delay in seconds; doubled up to ``backoff_max``.
        backoff_max: longest reconnect delay in seconds.
        connect_timeout: seconds ``async with`` waits for the first subscription.
        key: the site key the acks are signed with (HMAC-SHA256 over RFC 8785 JSON);
            None sends unsigned acks (a gateway with ``allow_unsigned`` only).

    Attributes:
        events: every accepted (schema-valid) event, first delivery only, in arrival order.
        heartbeats: every ``gateway.heartbeat`` received (link supervision; not printed).
        rejected: every message on an events topic that was not a valid event.
        duplicates: deliveries of an id already accepted.
        copies: event id -> deliveries of it (a re-send makes more than one).
        deliveries: messages received on events topics, all counted.
        seq_conflicts: accepted events whose (stream, seq) another id already had.
        status: last payload per ``…/status`` topic (``online``/``offline``).
        acked_ids: every id in an ack the broker confirmed, in order (repeats kept).
        paths: ``<site>/<gateway>`` -> ``up``/``down``, from the heartbeats.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        identifier: str | None = None,
        ack: bool = True,
        watch: bool = False,
        persistent: bool = False,
        session_expiry: int = 3600,
        out: TextIO | None = None,
        jsonl_path: Path | None = None,
        ack_delay: float = 0.02,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        connect_timeout: float = 10.0,
        key: bytes | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.identifier = identifier or f"{'watch' if watch else 'center'}-{secrets.token_hex(4)}"
        self.watch = watch
        self.ack = ack and not watch
        self.persistent = persistent
        self.session_expiry = session_expiry
        self.out = out if out is not None else sys.stdout
        self.jsonl_path = jsonl_path
        self.ack_delay = ack_delay
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.key = key

        self.events: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.rejected: list[Rejected] = []
        self.duplicates = 0
        self.copies: Counter[str] = Counter()
        self.deliveries = 0
        self.seq_conflicts = 0
        self.status: dict[str, str] = {}
        self.acked_ids: list[str] = []
        self.paths: dict[str, str] = {}
        self._beats: dict[str, tuple[float, float]] = {}  # gateway -> (last heard, period)
        self._beat_seen = asyncio.Event()

        self._ids: set[str] = set()
        self._seq = SeqTracker()
        self._validator = Draft202012Validator(event_json_schema())
        self._changed = asyncio.Condition()
        self._pending_acks: dict[str, list[str]] = {}
        self._acks_in_flight = False
        self._ack_wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what tests read -------------------------------------------------------

    @property
    def invalid(self) -> int:
        """How many messages on events topics were not valid events."""
        return len(self.rejected)

    @property
    def gaps(self) -> dict[str, list[int]]:
        """``seq`` numbers still missing per stream (only streams with a gap)."""
        return self._seq.gaps()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connected.is_set()

    def ids(self) -> list[str]:
        """Ids of the accepted events, in arrival order."""
        return [event["id"] for event in self.events]

    def summary(self) -> str:
        """One line with the counters, for the end of a run or a failed wait."""
        text = (
            f"events={len(self.events)} deliveries={self.deliveries} invalid={self.invalid} "
            f"duplicates={self.duplicates} seq_conflicts={self.seq_conflicts} "
            f"gaps={self.gaps} acked={len(self.acked_ids)} connected={self.connected}"
        )
        if self._task is not None and self._task.done() and not self._task.cancelled():
            text += f" console task ended: {self._task.exception()!r}"
        return text

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the tests' wait_for(predicate, timeout)
    ) -> None:
        """Wait until ``predicate()`` is true.

        It is checked now and again after every received message, every
        confirmed ack and every connect or disconnect.

        Raises:
            TimeoutError: not true within ``timeout`` seconds; the message has
                :meth:`summary`.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(f"not true within {timeout} s: {self.summary()}") from None

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until connected and subscribed.

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            raise TimeoutError(
                f"center console not connected to {self.host}:{self.port} within {timeout} s"
            ) from None

    # -- lifetime --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, receive and ack until cancelled; reconnect on any broker loss.
        Paths are supervised all the while, connected or not."""
        paths = asyncio.create_task(self._supervise_paths(), name=f"paths[{self.identifier}]")
        try:
            await self._connect_forever()
        finally:
            paths.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await paths

    async def _connect_forever(self) -> None:
        delay = self.backoff_initial
        while True:
            try:
                async with self._make_client() as client:
                    await client.subscribe(EVENTS_FILTER, qos=1)
                    await client.subscribe(STATUS_FILTER, qos=1)
                    self._connected.set()
                    delay = self.backoff_initial
                    self.say(f"LINK up {self.host}:{self.port} as {self.identifier}")
                    await self._notify()
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._receive(client))
                        tasks.create_task(self._send_acks(client))
            except* aiomqtt.MqttError as group:
                reason = "; ".join(str(exc) for exc in group.exceptions)
                self.say(f"LINK down ({reason}); retry in {delay:.1f} s")
            finally:
                self._connected.clear()
            await self._notify()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    def start(self) -> None:
        """Run :meth:`run` in a task owned by this console (see :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"center[{self.identifier}]")

    async def close(self, flush_timeout: float = 1.0) -> None:
        """Send any acks still pending (within ``flush_timeout``), then stop the task."""
        if self._task is None:
            return
        if self.connected and self._acks_unsent():
            try:
                await self.wait_for(lambda: not self._acks_unsent(), flush_timeout)
            except TimeoutError:
                self.say(f"WARNING acks not sent at close: {self._pending_acks}")
        task, self._task = self._task, None
        # Cancelled again while it runs: a PUBACK can swallow a cancellation (3.11), and
        # nothing in the console's ending (an MQTT disconnect) must run to its end.
        await cancel_and_wait([task], again_after=0.5)
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def __aenter__(self) -> Self:
        self.start()
        try:
            await self.wait_connected(self.connect_timeout)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- inside ----------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)
        if self.persistent:
            properties.SessionExpiryInterval = self.session_expiry
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not self.persistent,
            properties=properties,
            keepalive=10,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            self._handle(message.topic.value, raw)
            await self._notify()

    def _handle(self, topic: str, payload: bytes) -> None:
        """Process one message on a subscribed topic."""
        parts = topic.split("/")
        if len(parts) == 5 and parts[4] == "status":
            text = payload.decode("utf-8", errors="replace")
            # said on change only: a clean stop's goodbye and the Last Will the broker
            # may publish after it (DISCONNECT 0x04) are one "offline", not two
            if self.status.get(topic) != text:
                self.say(f"STATUS {parts[2]}/{parts[3]} {text}")
            self.status[topic] = text
            return
        self.deliveries += 1
        try:
            event = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._reject(topic, payload, f"not UTF-8 JSON: {exc}")
            return
        if not isinstance(event, dict):
            self._reject(topic, payload, "not a JSON object")
            return
        event_id = event.get("id")
        if isinstance(event_id, str):
            self.copies[event_id] += 1
        if self.ack and isinstance(event_id, str) and event_id:
            self._queue_ack(f"campus/v1/{parts[2]}/{parts[3]}/ack", event_id)
        problem = self._problem(parts, event)
        if problem:
            self._reject(topic, payload, problem)
        elif event_id in self._ids:
            self.duplicates += 1
            self.say(f"DUP id={event_id} seq={event.get('seq')} (already received; acked again)")
        else:
            self._accept(event)

    def _problem(self, parts: list[str], event: dict[str, Any]) -> str | None:
        """Why ``event`` on topic ``parts`` is not valid, or None when it is."""
        error = best_match(self._validator.iter_errors(event))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(event)"
            return f"schema: {where}: {error.message}"
        if event["source"].split("/")[1:3] != parts[2:4]:
            return f"source {event['source']} is not from the topic's site/gateway"
        expected = "events/" + event["type"].replace(".", "/")
        if "/".join(parts[4:]) != expected:
            return f"type {event['type']} sent on the wrong topic (expected …/{expected})"
        return None

    def _accept(self, event: dict[str, Any]) -> None:
        self._ids.add(event["id"])
        if event["type"] == "gateway.heartbeat":  # link supervision: kept apart, not printed
            self.heartbeats.append(event)
            self._heartbeat(event)
            return
        self.events.append(event)
        self.say(format_event(event))
        for note in self._seq.add(event["stream"], event["seq"], event["id"]):
            if note.startswith("SEQ REUSED"):
                self.seq_conflicts += 1
            self.say(note)
        if self.jsonl_path is not None:
            with self.jsonl_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event, ensure_ascii=False) + "\n")

    def _heartbeat(self, event: dict[str, Any]) -> None:
        """A heartbeat: the path is up; the stream's figures feed the seq tracking."""
        data = event.get("data") or {}
        gateway = "/".join(str(event["source"]).split("/")[1:3])
        period = data.get("heartbeat_s")
        if not isinstance(period, int | float) or isinstance(period, bool) or period <= 0:
            period = DEFAULT_HEARTBEAT_S
        self._beats[gateway] = (time.monotonic(), float(period))
        self._beat_seen.set()
        if self.paths.get(gateway) != "up":
            self.paths[gateway] = "up"
            self.say(f"PATH up {gateway} (heartbeat every {period:g} s)")
        stream, last, acked = data.get("stream"), data.get("last_seq"), data.get("acked_up_to")
        if isinstance(stream, str) and isinstance(last, int) and isinstance(acked, int):
            for note in self._seq.heartbeat(stream, last, acked):
                self.say(note)

    async def _supervise_paths(self) -> None:
        """``PATH down`` for every gateway silent for ``HEARTBEATS_MISSED`` periods."""
        while True:
            self._beat_seen.clear()
            now = time.monotonic()
            due: list[float] = []
            for gateway, (heard, period) in self._beats.items():
                deadline = heard + HEARTBEATS_MISSED * period
                if self.paths.get(gateway) != "up":
                    continue
                if now >= deadline:
                    self.paths[gateway] = "down"
                    self.say(f"PATH down {gateway} (no heartbeat for {now - heard:.1f} s)")
                    await self._notify()
                else:
                    due.append(deadline - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(due, default=None)):
                    await self._beat_seen.wait()

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        text = payload.decode("utf-8", errors="replace")
        self.rejected.append(Rejected(topic, text, reason))
        self.say(f"!!! INVALID EVENT #{self.invalid} on {topic}: {reason} | {text[:300]}")

    def _queue_ack(self, ack_topic: str, event_id: str) -> None:
        ids = self._pending_acks.setdefault(ack_topic, [])
        if event_id not in ids:
            ids.append(event_id)
        self._ack_wakeup.set()

    async def _send_acks(self, client: aiomqtt.Client) -> None:
        """Publish pending acks in batches; unsent ones stay pending on failure."""
        while True:
            await self._ack_wakeup.wait()
            await asyncio.sleep(self.ack_delay)
            self._ack_wakeup.clear()
            batch, self._pending_acks = self._pending_acks, {}
            self._acks_in_flight = True
            try:
                for topic, ids in list(batch.items()):
                    await client.publish(topic, self._ack_payload(topic, ids), qos=1)
                    del batch[topic]
                    self.acked_ids.extend(ids)
                    raise_if_cancelling()  # a stop that came with the PUBACK is a stop
            finally:
                self._acks_in_flight = False
                self._requeue_acks(batch)
            await self._notify()

    def _ack_payload(self, topic: str, ids: list[str]) -> bytes:
        """``{"ids": [...], "center": <client id>[, "signature"]}``, signed with the site
        key when the console has one (``docs/center-protocol.md`` "Acks")."""
        body: dict[str, Any] = {"ids": ids, "center": self.identifier}
        if self.key is not None:
            body[SIGNATURE_FIELD] = sign(self.key, topic, body)
        return json.dumps(body, ensure_ascii=False).encode()

    def _acks_unsent(self) -> bool:
        """True while some ack is pending or being published."""
        return bool(self._pending_acks) or self._acks_in_flight

    async def _notify(self) -> None:
        """Wake every :meth:`wait_for` to check its predicate again."""
        async with self._changed:
            self._changed.notify_all()

    def _requeue_acks(self, unsent: dict[str, list[str]]) -> None:
        for topic, ids in unsent.items():
            for event_id in ids:
                self._queue_ack(topic, event_id)

    def say(self, line: str) -> None:
        """Write one line to the console's text stream."""
        self.out.write(line + "\n")
        self.out.flush()
