"""One MQTT 5 connection of the uplink: a thin asyncio adapter over paho-mqtt 2.1.

The only module that imports paho (STYLE.md rule 3). paho's ``Client`` is driven
from the event loop, as its "external event loop" mode intends: the socket is
watched with ``add_reader``, written at the loop's next turn (and watched with
``add_writer`` only while its buffer is full), and ``loop_misc`` (keepalive) runs
every second. Every paho callback only completes a future or fills a queue.

What the uplink needs and a higher-level wrapper hides:

* the reason code of every PUBACK: a reason >= 0x80 (MQTT 5.0 §3.4.2.1, e.g.
  0x87 Not authorized when an ACL denies the topic) raises :class:`PublishRefused`,
  it is never taken for delivery;
* the broker's Receive Maximum from CONNACK (§3.2.2.3.3);
* subscription options: Retain As Published (§3.8.3.1), so a retained command
  is seen as retained even when it arrives live;
* the retain flag of every message received.

**One window for every QoS 1 publish.** :meth:`MqttConnection.publish` takes a
slot of the connection's :class:`Window` before the PUBLISH leaves and the slot
is given back when its PUBACK arrives or the connection is lost — not when the
caller stops waiting — so the count is exactly what is in flight on the wire and
never exceeds ``min(window, Receive Maximum)``. paho's own in-flight limit and
queue are switched off: nothing waits inside paho where a timeout cannot see it.

A fresh connection (and paho client) is made for every attempt (issue 3: the
library's queue is never trusted); the outbox re-drives whatever was in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config.root import BrokerConfig
from gateway.errors import PublishRefused, UplinkError
from gateway.runtime.flag import Flag

log = structlog.get_logger(__name__)

__all__ = [
    "Message",
    "MqttConnection",
    "Properties",
    "ReasonCode",
    "Window",
    "publish_properties",
]

_WITH_WILL = 0x04
"""MQTT 5.0 §3.14.2.1 DISCONNECT reason: Disconnect with Will Message."""

RECEIVE_MAXIMUM_DEFAULT = 65_535
"""MQTT 5.0 §3.2.2.3.3: a CONNACK without Receive Maximum means 65,535."""


@dataclass(frozen=True, slots=True)
class Message:
    """A message the broker delivered to us.

    Attributes:
        topic: the topic it was published on.
        payload: its bytes.
        retain: the retain flag as delivered (with Retain As Published, as published).
    """

    topic: str
    payload: bytes
    retain: bool


def publish_properties(
    *, content_type: str | None = None, expiry_s: int | None = None
) -> Properties:
    """PUBLISH properties: content type and message expiry interval (seconds).

    Packed once, at the first publish that carries them: do not change them after.
    """
    props = _PackedOnce(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if content_type is not None:
        props.ContentType = content_type
    if expiry_s is not None:
        props.MessageExpiryInterval = expiry_s
    return props


class _PackedOnce(Properties):
    """Properties that keep their wire form after the first ``pack``.

    paho packs a message's properties at every publish, walking every property name
    it knows: about 45 µs, a tenth of a backlog drain's time on the loop (cProfile of
    ``bench/outbox_bench.py drain``, issue 14). The uplink sends the same few
    property sets with every message.
    """

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = bytes(super().pack())  # type: ignore[no-untyped-call]
            object.__setattr__(self, "_packed", packed)  # paho's __setattr__ allows names only
        return packed


class _Client(paho.Client):
    """paho's client with a PUBACK that costs no objects of its own (paho 2.1, pinned).

    paho builds a ``ReasonCode`` and a ``Properties`` for every PUBACK, and each fills
    a table of every name it knows: a fifth of a backlog drain's time on the loop
    (cProfile of ``bench/outbox_bench.py drain``, issue 14). A PUBACK without
    properties (MQTT 5.0 §3.4.2: mosquitto sends a bare packet identifier, or with a
    reason code) gets one shared ``ReasonCode`` per code and one empty
    ``Properties``; any other PUBACK, PUBCOMP or an unknown reason code goes paho's
    own way, errors included.
    """

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        length = self._in_packet["remaining_length"]
        if cmd != "PUBACK" or self._protocol != paho.MQTTv5 or not 2 <= length <= 3:
            return super()._handle_pubackcomp(cmd)
        body = self._in_packet["packet"]
        reason = _puback_reason(body[2] if length == 3 else 0)
        if reason is None:
            return super()._handle_pubackcomp(cmd)
        mid = (body[0] << 8) | body[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


@functools.cache
def _puback_reason(code: int) -> ReasonCode | None:
    """The shared PUBACK ``ReasonCode`` for ``code``; None for a code MQTT 5 does not
    define for PUBACK (paho's own path then reports it)."""
    try:
        return ReasonCode(PacketTypes.PUBACK, identifier=code)
    except (KeyError, ValueError):
        return None


def reason_text(code: int) -> str:
    """``0x87 Not authorized``: a PUBACK reason code as hex and its MQTT 5 name."""
    reason = _puback_reason(code)
    name = "unknown reason" if reason is None else reason.getName()  # type: ignore[no-untyped-call]
    return f"0x{code:02X} {name}"


class Window:
    """Slots for QoS 1 publishes in flight on one connection.

    Args:
        size: the most in flight at once (>= 1).

    Attributes:
        in_flight: slots taken now.
        max_seen: most slots taken at once.
        freed: set whenever a slot is given back (cleared by whoever waits on it).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_flight = 0
        self.max_seen = 0
        self.freed = Flag()
        self._waiting = 0

    @property
    def free(self) -> int:
        """Slots free now for :meth:`take` (none while a publisher waits its turn)."""
        return 0 if self._waiting else self.size - self.in_flight

    @property
    def room(self) -> int:
        """Slots free now for an alarm (``take(ahead=True)``): publishers waiting their
        turn (command results, states, heartbeats) do not hold an alarm back."""
        return self.size - self.in_flight

    def take(self, *, ahead: bool = False) -> None:
        """Take a free slot now (the caller checked :attr:`free`, or :attr:`room` when
        ``ahead``: an alarm goes before publishers waiting their turn).

        Raises:
            UplinkError: no slot is free.
        """
        if (self.room if ahead else self.free) <= 0:
            raise UplinkError("publish window full")
        self._taken()

    async def acquire(self) -> None:
        """Take a slot, waiting for one in turn."""
        if self.free > 0:
            self._taken()
            return
        self._waiting += 1
        try:
            while self.in_flight >= self.size:
                self.freed.clear()
                await self.freed.wait()
        finally:
            self._waiting -= 1
        self._taken()

    def release(self, _: object = None) -> None:
        """Give a slot back (also a future's done callback)."""
        self.in_flight -= 1
        self.freed.set()

    def _taken(self) -> None:
        self.in_flight += 1
        self.max_seen = max(self.max_seen, self.in_flight)


class MqttConnection:
    """One connection to the broker. ``await conn.connect()``, then publish, then
    ``await conn.close()``.

    Args:
        cfg: ``[broker]`` settings (host, port, TLS, credentials, keepalive, window,
            ``publish_timeout`` also bounds the TCP/TLS connect and the CONNACK).
        client_id: MQTT client identifier.
        will_topic: the retained ``offline`` Last Will goes here.

    Attributes:
        window: the in-flight window, sized at CONNACK.
        receive_maximum: the broker's Receive Maximum (65,535 when it states none).
        messages: what the broker delivers to our subscriptions.
    """

    def __init__(self, cfg: BrokerConfig, *, client_id: str, will_topic: str) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._will_topic = will_topic
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        self._connack: asyncio.Future[int] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[ReasonCode]] = {}
        # (loop time by which the PUBACK is due, its future, topic), in send order.
        self._deadlines: collections.deque[tuple[float, asyncio.Future[ReasonCode], str]] = (
            collections.deque()
        )
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._closed = False
        self._loop_thread = threading.get_ident()
        self.window = Window(cfg.window)
        self.receive_maximum = RECEIVE_MAXIMUM_DEFAULT
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    # -- lifetime -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket, send CONNECT, wait for a successful CONNACK.

        Raises:
            UplinkError: refused CONNACK, no CONNACK within ``publish_timeout``, or
                the socket could not be opened (the cause is chained).
        """
        timeout = self._cfg.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._loop.run_in_executor(None, self._blocking_connect)
                sock = self._client.socket()
                if isinstance(sock, socket.socket):
                    # Nagle costs ~40 ms per QoS 1 hop on a quiet link; alarms go out at once.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._misc = asyncio.create_task(self._misc_loop(), name="mqtt-keepalive")
                receive_maximum = await self._wait(self._connack)
        except TimeoutError as exc:
            self._abort()
            raise UplinkError(f"no CONNACK from {self._where} within {timeout:g} s") from exc
        except (OSError, ValueError) as exc:
            self._abort()
            raise UplinkError(f"cannot connect to {self._where}: {exc}") from exc
        except BaseException:
            self._abort()
            raise
        self.receive_maximum = receive_maximum
        self.window = Window(max(1, min(self._cfg.window, receive_maximum)))

    async def close(self, *, goodbye: bytes | None = None, within: float = 2.0) -> None:
        """Say ``goodbye`` (retained, on the will topic) if connected, DISCONNECT, close.

        A normal DISCONNECT (reason 0x00) tells the broker not to publish the Last
        Will; ``goodbye`` is what a clean stop publishes instead (``offline``). When
        the goodbye cannot be published in time (the window full of unacked rows, a
        refusal), the DISCONNECT carries 0x04 "Disconnect with Will Message" (MQTT 5.0
        §3.14.2.1), so the broker publishes the Will and the status still ends
        ``offline``. Each step is bounded by ``within`` seconds; nothing here raises.
        """
        if not self._lost.done() and self._connack.done() and not self._connack.exception():
            reason = None
            if goodbye is not None:
                try:
                    async with asyncio.timeout(within):
                        await self.publish(self._will_topic, goodbye, retain=True)
                except (TimeoutError, UplinkError) as exc:
                    log.warning("uplink.goodbye_failed", error=str(exc), will=True)
                    reason = ReasonCode(PacketTypes.DISCONNECT, identifier=_WITH_WILL)
            # The packet is written before paho closes the socket.
            self._client.disconnect(reasoncode=reason)
            with contextlib.suppress(TimeoutError, UplinkError):
                async with asyncio.timeout(within):
                    await asyncio.shield(self._lost)
        self._abort()

    def _abort(self) -> None:
        """Close the socket at once and fail whatever still waits on this connection."""
        self._closed = True
        if self._misc is not None:
            self._misc.cancel()
        self._client._sock_close()  # private in paho 2.1 (pinned): close without a DISCONNECT
        self._unwatch()
        self._fail_all(UplinkError("connection closed"))

    # -- what the uplink calls ------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish at QoS 1 within the window and wait for its PUBACK.

        Raises:
            PublishRefused: the PUBACK carried a failure reason (>= 0x80).
            UplinkError: the connection is lost, or no PUBACK within
                ``publish_timeout`` (outcome unknown: tear the connection down).
        """
        self._check_open()
        await self.window.acquire()
        reason = await asyncio.shield(self._send(topic, payload, retain, properties))
        if reason.is_failure:
            raise PublishRefused(topic=topic, reason_code=int(reason.value))

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        *,
        properties: Properties | None = None,
        ahead: bool = False,
    ) -> asyncio.Future[ReasonCode]:
        """Publish at QoS 1 in a free slot of the window now (check ``window.free``).

        The uplink's rows go this way: no task, timer or shield per message (issue
        14). The future gets the PUBACK's reason code, a failure reason included
        (the caller tells a refusal from a delivery), or :class:`UplinkError` when
        the connection is lost or no PUBACK came within ``publish_timeout``
        (checked every second). The slot is given back when the future is done.
        ``ahead`` (an alarm) takes a slot even while publishers wait their turn
        (:attr:`Window.room`): a flood of commands, each answered on its result
        topic, never holds a panic back (review of 2026-12-05: 6,000 unsigned
        commands held one for 47 s).

        Raises:
            UplinkError: the connection is lost, no slot is free, or paho refused it.
        """
        self._check_open()
        self.window.take(ahead=ahead)
        return self._send(topic, payload, False, properties)

    def _send(
        self, topic: str, payload: bytes, retain: bool, properties: Properties | None
    ) -> asyncio.Future[ReasonCode]:
        """PUBLISH in a slot already taken; the future of its PUBACK."""
        try:
            info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        except BaseException:
            self.window.release()
            raise
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.window.release()
            raise UplinkError(f"publish on {topic} failed: {paho.error_string(info.rc)}")
        done: asyncio.Future[ReasonCode] = self._loop.create_future()
        done.add_done_callback(self.window.release)
        self._acks[info.mid] = done
        self._drop_answered()
        self._deadlines.append((self._loop.time() + self._cfg.publish_timeout, done, topic))
        return done

    def _drop_answered(self) -> None:
        """Forget the oldest deadlines whose PUBACK wait is over (in send order)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()

    def _expire(self) -> None:
        """An overdue PUBACK (older than ``publish_timeout``; checked in send order)
        ends the connection: its outcome is unknown, and its window slot must not be
        given to another PUBLISH while it may still be unacked on the wire."""
        self._drop_answered()
        deadlines = self._deadlines
        if deadlines and deadlines[0][0] <= self._loop.time():
            topic = deadlines[0][2]
            self._fail_all(
                UplinkError(f"no PUBACK for {topic} within {self._cfg.publish_timeout:g} s")
            )
            self._abort()  # the socket closes before any freed slot can be used

    async def subscribe(self, filters: list[tuple[str, SubscribeOptions]]) -> None:
        """Subscribe and wait for the SUBACK.

        Raises:
            UplinkError: the broker refused a filter, the connection is lost, or no
                SUBACK within ``publish_timeout``.
        """
        self._check_open()
        rc, mid = self._client.subscribe(filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise UplinkError(f"subscribe failed: {paho.error_string(rc)}")
        done: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = done
        try:
            async with asyncio.timeout(self._cfg.publish_timeout):
                reasons = await self._wait(done)
        except TimeoutError as exc:
            raise UplinkError(f"no SUBACK within {self._cfg.publish_timeout:g} s") from exc
        refused = [(f, r) for (f, _), r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            raise UplinkError(
                "subscription refused: "
                + ", ".join(f"{f} ({reason_text(int(r.value))})" for f, r in refused)
            )

    async def wait_lost(self) -> None:
        """Return when the connection is lost (never while it is up)."""
        await asyncio.shield(self._lost)

    @property
    def lost(self) -> bool:
        return self._lost.done()

    # -- paho set-up ----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self._cfg.host}:{self._cfg.port}"

    def _make_client(self) -> paho.Client:
        cfg = self._cfg
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        client.connect_timeout = cfg.publish_timeout
        client.max_inflight_messages_set(0)  # our Window is the one limit
        client.max_queued_messages_set(0)
        if cfg.username is not None or cfg.password_file is not None:
            # Read at each connection: a rotated password needs no restart; never logged.
            password = None
            if cfg.password_file is not None:
                password = cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            client.username_pw_set(cfg.username, password)
        context = tls_context(cfg)
        if context is not None:
            client.tls_set_context(context)
        client.will_set(self._will_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    def _blocking_connect(self) -> None:
        """In an executor thread: TCP (and TLS) connect, then CONNECT is queued."""
        self._client.connect(
            self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive, clean_start=True
        )

    async def _misc_loop(self) -> None:
        """paho's keepalive (PINGREQ, and a close when PINGRESP is overdue) and overdue
        PUBACKs, every second."""
        while True:
            await asyncio.sleep(1.0)
            self._expire()
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    async def _wait(self, future: asyncio.Future[Any]) -> Any:
        """Await ``future`` or the loss of the connection, whichever comes first."""
        await asyncio.wait({future, self._lost}, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        raise self._lost_error()

    def _check_open(self) -> None:
        if self._lost.done():
            raise self._lost_error()

    def _lost_error(self) -> UplinkError:
        exc = self._lost.exception() if self._lost.done() else None
        return exc if isinstance(exc, UplinkError) else UplinkError("connection lost")

    def _fail_all(self, exc: UplinkError) -> None:
        if not self._lost.done():
            self._lost.set_exception(exc)
            self._lost.exception()  # retrieved: no "never retrieved" warning
        for waiters in (self._acks, self._subacks, {0: self._connack}):
            for future in waiters.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
        self._acks.clear()
        self._deadlines.clear()
        self._subacks.clear()

    # -- paho callbacks (loop thread, except the socket ones during connect) --------------

    def _on_connect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(
                UplinkError(f"{self._where} refused the connection: {reason.getName()}")  # type: ignore[no-untyped-call]
            )
            return
        value = getattr(properties, "ReceiveMaximum", None)
        self._connack.set_result(
            value if isinstance(value, int) and value > 0 else RECEIVE_MAXIMUM_DEFAULT
        )

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        name = reason.getName()  # type: ignore[no-untyped-call]
        self._fail_all(UplinkError(f"disconnected from {self._where}: {name}"))

    def _on_publish(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reason)

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties,
    ) -> None:
        future = self._subacks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put_nowait(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def readable() -> None:
            client.loop_read()
            pending = getattr(client.socket(), "pending", None)
            while pending is not None and pending() > 0:  # TLS: decoded bytes left over
                client.loop_read()
                pending = getattr(client.socket(), "pending", None)

        def watch() -> None:
            if self._closed:  # a connect that timed out finished late: drop its socket
                client._sock_close()
                return
            self._fd = fd
            self._loop.add_reader(fd, readable)

        self._in_loop(watch)

    def _on_socket_close(self, _client: paho.Client, _userdata: Any, _sock: Any) -> None:
        self._in_loop(self._unwatch)

    def _on_register_write(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        """paho has bytes to send: write them at the loop's next turn, and watch the
        socket for room only when it took less than all of them.

        paho calls this once per run of queued packets (it calls it again only after
        ``on_socket_unregister_write``), so the packets queued within one turn of
        the loop leave together. Watching the socket at every publish instead cost
        two ``epoll_ctl`` calls and one more turn of the loop per message (issue 14).
        """
        fd = sock.fileno()

        def write() -> None:
            if self._fd != fd:  # closed since: the next connection sends anew
                return
            client.loop_write()
            if self._fd == fd and client.want_write():  # the socket's buffer is full
                self._loop.add_writer(fd, client.loop_write)

        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(write)
        else:
            self._loop.call_soon_threadsafe(write)

    def _on_unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def remove() -> None:
            if fd >= 0:
                self._loop.remove_writer(fd)

        self._in_loop(remove)

    def _unwatch(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)

    def _in_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` now in the loop thread, or soon from paho's connect thread.

        In the loop thread it must run at once: paho closes the socket right after
        its close callback, and the descriptor may be reused by the next connection.
        """
        if threading.get_ident() == self._loop_thread:
            action()
        else:
            self._loop.call_soon_threadsafe(action)


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext | None:
    """The TLS context ``[broker.tls]`` describes, or None without TLS.

    Raises:
        OSError: a certificate or key file cannot be read.
        ssl.SSLError: a file is not a certificate or key.
    """
    if cfg.tls is None:
        return None
    context = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
    if cfg.tls.cert_file is not None:
        context.load_cert_chain(
            str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
        )
    if cfg.tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def subscribe_options() -> SubscribeOptions:
    """QoS 1, Retain As Published (MQTT 5.0 §3.8.3.1): a live retained command still
    shows its retain flag, so it can be refused."""
    return SubscribeOptions(qos=1, retainAsPublished=True)
