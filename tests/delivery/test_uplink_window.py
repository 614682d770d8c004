"""One in-flight window for every QoS 1 publish, counted on the wire; sent means PUBACK.

:class:`simulators.mqtt_inflight.InflightProxy` sits between the gateway and a real
mosquitto and reads every packet: a QoS 1 PUBLISH from the gateway opens its
packet id, the broker's PUBACK closes it. MQTT 5.0 §3.3.4: a client must not have
more QoS 1 publishes unacknowledged than the broker's Receive Maximum.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import struct
import termios
from pathlib import Path

import aiomqtt
import pytest

from gateway.config.root import BrokerConfig
from gateway.daemon import running
from gateway.delivery.mqtt_client import MqttConnection
from gateway.delivery.outbox import Outbox
from gateway.delivery.uplink import Uplink
from gateway.errors import UplinkError
from gateway.events.model import EventFactory
from simulators.broker import MosquittoBroker
from simulators.center_commands import CommandSender
from simulators.mqtt_inflight import InflightProxy
from tests.fault_support import (
    INTRUSION,
    alarms,
    campus_config,
    module,
    row_states,
    stored_ids,
    toggle,
    toggle_polled,
    wait_until,
)
from tests.helpers import TEST_KEY, signed_center

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/s1/gw1"
FACTORY = EventFactory("campus/s1/gw1", lambda: False)


async def test_in_flight_never_exceeds_the_brokers_receive_maximum_of_5(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker", max_inflight_messages=5) as broker,
        InflightProxy(broker.host, broker.port, puback_delay=0.01) as proxy,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(
            tmp_path, broker_port=proxy.port, module_port=sim.port, window=20, heartbeat_s=0.02,
        )  # fmt: skip
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.uplink is not None
            await wait_until(lambda: alarms(center, "device.online"), 30, "module online")
            async with CommandSender(
                broker.host, broker.port, "fault-school", "gw1", key=TEST_KEY
            ) as cmd:
                # Rows, retained state (every input change), heartbeats every 20 ms and
                # command results all compete for the same five slots.
                pings = [asyncio.create_task(cmd.send("ping", timeout_s=30)) for _ in range(20)]
                await toggle_polled(sim, gateway.pollers["io"], INTRUSION, 8)
                results = await asyncio.gather(*pings)
            assert all(r["status"] == "ok" for r in results)
            await wait_until(lambda: len(stored_ids(outbox)) >= 80, 10, "transitions stored")
            stored = set(stored_ids(outbox, ""))
            await center.wait_for(lambda: stored <= set(center.ids()), 60)
            assert gateway.uplink.stats.receive_maximum == 5
            assert gateway.uplink.stats.window == 5
            assert gateway.uplink.stats.heartbeats >= 10
    assert proxy.publishes >= 120
    assert proxy.max_in_flight == 5  # the window was full, and never more than full


async def test_no_row_is_marked_sent_until_its_puback_arrives(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        InflightProxy(broker.host, broker.port, drop_pubacks="/events/alarm/") as proxy,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(
            tmp_path, broker_port=proxy.port, module_port=sim.port, publish_timeout=2.0,
        )  # fmt: skip
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.uplink is not None
            await toggle(sim, INTRUSION[:2], 3, gap=0.3)
            await wait_until(lambda: stored_ids(outbox), 10, "alarms stored")
            # The broker takes every message (the center has them) but its PUBACKs are
            # lost. Under load the poller may see fewer toggles: wait for every stored id.
            await center.wait_for(lambda: set(stored_ids(outbox)) <= set(center.ids()), 20)
            await wait_until(lambda: gateway.uplink.stats.connects >= 2, 10, "timed out, again")
            stored = stored_ids(outbox)
            assert proxy.dropped >= len(stored) >= 1
            assert not any(sent for _, _, sent, _ in row_states(outbox, "alarm."))
            proxy.drop_pubacks = None
            await wait_until(
                lambda: all(sent for _, _, sent, _ in row_states(outbox, "alarm.")),
                15,
                "PUBACKs seen",
            )
        assert center.duplicates >= len(stored)  # sent again, same ids: at least once, never lost


async def test_a_clean_stop_says_goodbye_only_within_the_window(tmp_path: Path) -> None:
    """Rows unacked on the wire at a stop keep their slots: the retained ``offline``
    goodbye is never a sixth PUBLISH in flight on a broker that allows five."""
    async with (
        MosquittoBroker(tmp_path / "broker", max_inflight_messages=5) as broker,
        InflightProxy(broker.host, broker.port, drop_pubacks="/events/") as proxy,
        Outbox(tmp_path / "o.sqlite") as outbox,
    ):
        for i in range(50):
            await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject=f"Z{i}", state="active")
            )
        cfg = BrokerConfig(host=proxy.host, port=proxy.port, window=20, publish_timeout=60.0)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-stop")
        task = asyncio.create_task(uplink.run())
        await wait_until(lambda: uplink.stats.inflight == 5, 10, "the window full of rows")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The goodbye found no slot in time: the DISCONNECT asked for the Will instead
        # (0x04), so the status still ends offline rather than a stale "online".
        status = await retained(broker, f"{PREFIX}/status")
    assert proxy.dropped == 5
    assert proxy.max_in_flight == 5
    assert status == b"offline"


async def test_an_overdue_puback_ends_the_connection_before_its_slot_is_reused(
    tmp_path: Path,
) -> None:
    """The outcome of a PUBLISH without PUBACK is unknown: its slot is never handed to
    a publisher waiting for one; the connection ends and the waiter fails."""
    async with (
        MosquittoBroker(tmp_path / "broker", max_inflight_messages=1) as broker,
        InflightProxy(broker.host, broker.port, drop_pubacks="t/rows") as proxy,
    ):
        cfg = BrokerConfig(host=proxy.host, port=proxy.port, window=1, publish_timeout=1.0)
        conn = MqttConnection(cfg, client_id="gw-overdue", will_topic="t/status")
        await conn.connect()
        try:
            row = conn.publish_nowait("t/rows", b"row")
            state = asyncio.create_task(conn.publish("t/state", b"state", retain=True))
            with pytest.raises(UplinkError, match="no PUBACK"):
                await asyncio.wait_for(row, 5)
            with pytest.raises(UplinkError):
                await asyncio.wait_for(state, 5)
            assert conn.lost
        finally:
            await conn.close()
    assert proxy.max_in_flight == 1


async def retained(broker: MosquittoBroker, topic: str) -> bytes:
    """The retained message on ``topic`` (waits for it to be there)."""
    async with aiomqtt.Client(broker.host, broker.port) as sub:
        await sub.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in sub.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("unreachable")


async def test_an_alarm_stored_while_the_loop_waits_to_refill_goes_at_a_free_slot(
    tmp_path: Path,
) -> None:
    """The send loop refills a quarter window at a time; an alarm stored while it waits
    for that quarter goes at once through a slot already free, not after the next
    PUBACK (here 3 s away: a slow return path, PUBACKs held by a real proxy)."""
    window = 8  # refill 2: with 7 in flight and 1 slot free, the loop waits
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        InflightProxy(broker.host, broker.port, puback_delay=3.0) as proxy,
        Outbox(tmp_path / "o.sqlite") as outbox,
        aiomqtt.Client(broker.host, broker.port) as sub,
    ):
        await sub.subscribe(f"{PREFIX}/events/#", qos=1)
        for _ in range(window - 1):
            await outbox.append(
                FACTORY.make("camera.status", device="cam1", subject="cam1", state="instant")
            )
        cfg = BrokerConfig(host=proxy.host, port=proxy.port, window=window)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-refill")
        task = asyncio.create_task(uplink.run())
        try:
            # The loop publishes the 7 and goes straight to its refill wait.
            await wait_until(lambda: uplink.stats.inflight == window - 1, 10, "7 in flight")
            loop = asyncio.get_running_loop()
            panic = await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject="Z01", state="active")
            )
            stored = loop.time()
            async with asyncio.timeout(20):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    if json.loads(message.payload)["id"] == panic.id:
                        break
            took = loop.time() - stored
            assert took < 1.0, f"the panic waited {took:.2f} s with a window slot free"
            assert proxy.max_in_flight <= window
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_what_a_full_socket_buffer_holds_back_is_sent_when_the_broker_reads_again(
    tmp_path: Path,
) -> None:
    """paho's bytes go out at the loop's next turn; those a full socket buffer did not
    take are written when it has room (``MqttConnection._on_register_write``). A frozen
    broker (SIGSTOP) fills the buffers; thawed, every PUBLISH gets its PUBACK on the
    same connection."""
    async with MosquittoBroker(tmp_path / "broker") as broker:
        cfg = BrokerConfig(host=broker.host, port=broker.port, window=16, publish_timeout=60.0)
        conn = MqttConnection(cfg, client_id="gw-full-buffer", will_topic="t/status")
        await conn.connect()
        try:
            broker.freeze()
            try:
                payload = bytes(2 << 20)
                sent = [conn.publish_nowait(f"t/rows/{i}", payload) for i in range(16)]
                # 32 MiB is more than loopback's buffers hold: the kernel holds what
                # the socket took, paho the rest.
                await wait_until(
                    lambda: _unsent_in_kernel(conn) > 0 and conn._client.want_write(),
                    10,
                    "the socket's buffer full",
                )
            finally:
                broker.thaw()
            reasons = await asyncio.wait_for(asyncio.gather(*sent), 30)
            assert [r.is_failure for r in reasons] == [False] * 16
            assert not conn.lost
        finally:
            await conn.close()


def _unsent_in_kernel(conn: MqttConnection) -> int:
    """Bytes the connection's socket holds unsent (``SIOCOUTQ``, tcp(7))."""
    sock = conn._client.socket()
    assert sock is not None
    out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", out)[0])
