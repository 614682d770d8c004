"""A fast acking center for the benchmarks, in a process of its own.

The benches measure the gateway, so the center must neither share the gateway's
CPU (it runs in a child process) nor lag behind it (paho in a thread, no schema
validation, acks batched every ``ack_every_s``). On a two-core box it shares the
CPU anyway, so it does as little per event as a center may: MQTT 3.1.1 (no
properties for paho to unpack per message; the contract allows it for reading
events), and ``id`` and ``type`` read from the head of the gateway's JSON, which
is parsed whole only for the ``detail`` types or a payload in another member
order (issue 14: paho's MQTT 5 properties and the JSON parse were a quarter of
its CPU, and a center that falls behind queues a live panic in the broker).

It subscribes with QoS 1 to ``<prefix>/events/#`` and acks every id it receives
on ``<prefix>/ack``, first delivery or not (a re-send means our ack was lost or
late), as the simulated console does (``simulators/center.py``).

Live counters are shared memory the bench can read without touching the
gateway: ``first`` (distinct ids received), ``dups`` (deliveries of an id already
seen), ``acked`` (ids in acks the broker confirmed), ``detailed`` (first deliveries
of the types named in ``detail``). Arrival times are
``time.monotonic()`` (``CLOCK_MONOTONIC``, the same clock in every process of the
machine) and wall time; they are kept for the event types named in ``detail``
and handed over at :meth:`CenterProcess.stop`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import re
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

_HEAD = re.compile(rb'\{"specversion":"1\.0","id":"([^"]+)","source":"[^"]*","type":"([^"]+)"')

LIFE_SAFETY_PATH = (
    "events/alarm/panic",
    "events/alarm/fire",
    "events/alarm/medical",
    "events/alarm/gas",
)
"""The life-safety path's filters under a gateway's prefix (docs/center-protocol.md:
the priority 1 types, on a connection of their own)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One first delivery of an event of a detailed type.

    Attributes:
        mono: ``time.monotonic()`` at arrival (seconds).
        wall: ``time.time()`` at arrival (seconds).
        id, type, subject, seq: from the event; ``state`` is ``data.state``; ``time``
            is the event's own ``time`` (RFC 3339, the gateway's receive time).
    """

    mono: float
    wall: float
    id: str
    type: str
    subject: str
    seq: int | None
    state: str | None
    time: str


@dataclass(frozen=True, slots=True)
class CenterReport:
    """What the center saw, handed over at stop.

    Attributes:
        first: distinct ids received.
        dups: deliveries of an id already received.
        acked: ids in acks the broker confirmed.
        arrivals: first deliveries of the detailed types, in arrival order.
        first_mono, last_mono: monotonic time of the first and last first delivery.
    """

    first: int
    dups: int
    acked: int
    arrivals: list[Arrival]
    first_mono: float | None
    last_mono: float | None


class CenterProcess:
    """Start with :meth:`start`, read :attr:`first`/:attr:`dups`/:attr:`acked` live,
    end with :meth:`stop` (returns a :class:`CenterReport`).

    Args:
        port: the broker's port on 127.0.0.1.
        prefix: the gateway's topic prefix (``campus/v1/<site>/<gateway>``).
        ack: publish acks (False plays a center that never acks).
        detail: event types whose arrivals are kept one by one.
        ack_every_s: acks are gathered this long into one message.
        key: the site key the acks are signed with (a gateway ignores unsigned acks).
        topics: the filters under ``prefix`` it subscribes to, on its own connection
            (:data:`LIFE_SAFETY_PATH` plays a center's life-safety path,
            docs/center-protocol.md: priority 1 on a connection of its own, not
            queued behind a backlog in the broker).
    """

    def __init__(
        self,
        port: int,
        prefix: str,
        *,
        ack: bool = True,
        detail: frozenset[str] = frozenset(),
        ack_every_s: float = 0.01,
        key: bytes | None = None,
        topics: tuple[str, ...] = ("events/#",),
    ) -> None:
        ctx = mp.get_context("spawn")
        self._first: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
        self._dups: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
        self._acked: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
        self._detailed: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
        self._ready = ctx.Event()
        self._stop = ctx.Event()
        self._out, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_run,
            args=(port, prefix, ack, detail, ack_every_s, key, topics),
            kwargs={
                "first": self._first,
                "dups": self._dups,
                "acked": self._acked,
                "detailed": self._detailed,
                "ready": self._ready,
                "stop": self._stop,
                "out": child_end,
            },
            name="bench-center",
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def first(self) -> int:
        return int(self._first.value)

    @property
    def dups(self) -> int:
        return int(self._dups.value)

    @property
    def acked(self) -> int:
        return int(self._acked.value)

    @property
    def detailed(self) -> int:
        """First deliveries of the detailed types."""
        return int(self._detailed.value)

    def start(self, timeout: float = 20.0) -> None:
        """Start the process; returns once it is subscribed.

        Raises:
            TimeoutError: not subscribed within ``timeout`` seconds.
        """
        self._proc.start()
        if not self._ready.wait(timeout):
            self._proc.kill()
            raise TimeoutError("bench center did not subscribe")

    def stop(self, timeout: float = 60.0) -> CenterReport:
        """Stop the center and collect what it saw."""
        self._stop.set()
        report: CenterReport = self._out.recv() if self._out.poll(timeout) else _empty()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        return report


def _empty() -> CenterReport:
    return CenterReport(0, 0, 0, [], None, None)


def _run(
    port: int,
    prefix: str,
    ack: bool,
    detail: frozenset[str],
    ack_every_s: float,
    key: bytes | None,
    topics: tuple[str, ...],
    *,
    first: Synchronized[int],
    dups: Synchronized[int],
    acked: Synchronized[int],
    detailed: Synchronized[int],
    ready: Any,
    stop: Any,
    out: Any,
) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.commands.signing import sign

    seen: set[str] = set()
    arrivals: list[Arrival] = []
    pending: list[str] = []
    lock = threading.Lock()
    span: list[float] = []
    unconfirmed: dict[int, int] = {}  # ack message mid -> ids in it
    confirmed: set[int] = set()  # mids whose PUBACK came (set.add is atomic)

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        mono, wall = time.monotonic(), time.time()
        head = _HEAD.match(msg.payload)  # the gateway's own member order: no full parse
        if head is None:
            event = json.loads(msg.payload)
            event_id, event_type = event["id"], event["type"]
        else:
            event_id, event_type = head[1].decode(), head[2].decode()
        with lock:
            pending.append(event_id)
        if event_id in seen:
            dups.value += 1
            return
        seen.add(event_id)
        first.value += 1
        if not span:
            span.append(mono)
        if len(span) == 1:
            span.append(mono)
        else:
            span[1] = mono
        if event_type in detail:
            event = json.loads(msg.payload)
            data = event.get("data") or {}
            arrivals.append(
                Arrival(
                    mono, wall, event_id, event["type"], event.get("subject", ""),
                    event.get("seq"), data.get("state"), event.get("time", ""),
                )
            )  # fmt: skip
            detailed.value += 1

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        confirmed.add(mid)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(f"{prefix}/{t}", 1) for t in topics])

    def on_subscribe(client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        ready.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-center-{port}-{'life-safety' if topics == LIFE_SAFETY_PATH else 'all'}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    while not stop.wait(ack_every_s):
        with lock:
            batch, pending[:] = list(pending), []
        if ack and batch:
            body: dict[str, Any] = {"ids": batch}
            if key is not None:
                body["signature"] = sign(key, f"{prefix}/ack", body)
            info = client.publish(f"{prefix}/ack", json.dumps(body), qos=1)
            unconfirmed[info.mid] = len(batch)
        for mid in [m for m in unconfirmed if m in confirmed]:
            acked.value += unconfirmed.pop(mid)
            confirmed.discard(mid)
    client.disconnect()
    client.loop_stop()
    out.send(
        CenterReport(
            int(first.value), int(dups.value), int(acked.value), arrivals,
            span[0] if span else None, span[-1] if span else None,
        )
    )  # fmt: skip
