"""Uplink against a real mosquitto: send order, in-flight bound, PUBACK before sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiomqtt

from gateway.config.root import BrokerConfig
from gateway.delivery.outbox import Outbox
from gateway.delivery.uplink import Uplink
from gateway.events.model import EventFactory
from simulators.broker import MosquittoBroker
from tests.fault_support import wait_until

PREFIX = "campus/v1/s1/gw1"
FACTORY = EventFactory("campus/s1/gw1", lambda: False)


async def test_backlog_is_sent_priority_first_within_the_window(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    window = 10
    received: list[dict] = []
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as sub,
    ):
        await sub.subscribe(f"{PREFIX}/events/#", qos=1)
        for _ in range(300):
            await outbox.append(
                FACTORY.make("camera.status", device="cam1", subject="cam1", state="instant")
            )
        panic = await outbox.append(
            FACTORY.make("alarm.panic", device="io", subject="Z01", state="active")
        )
        cfg = BrokerConfig(host=mosquitto.host, port=mosquitto.port, window=window)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-under-test")
        task = asyncio.create_task(uplink.run())
        try:
            async with asyncio.timeout(20):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    received.append(json.loads(message.payload))
                    if len(received) == 301:
                        break
            for _ in range(50):  # the last PUBACKs are being recorded
                if await outbox.pending_count() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await outbox.pending_count() == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    position = [e["id"] for e in received].index(panic.id)
    assert position < window, f"the panic came {position + 1}th behind the backlog"
    beats = [e["seq"] for e in received if e["type"] == "camera.status"]
    assert beats == sorted(beats) == list(range(1, 301))
    assert 1 <= uplink.stats.max_inflight_seen <= window
    assert uplink.stats.window == window


async def test_resends_for_a_center_that_never_acks_hold_a_quarter_of_the_window(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Issue 14: re-sends of unacked alarms are paced, so a slow center never turns them
    into more than their share of the window, and a new alarm still goes out at once."""
    window = 8
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.2, mark_linger=0) as outbox:
        for i in range(24):
            await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject=f"Z{i}", state="active")
            )
        cfg = BrokerConfig(host=mosquitto.host, port=mosquitto.port, window=window)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-under-test")
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until(lambda: uplink.stats.republished_alarms >= 72, 30, "re-sends")
            assert 1 <= uplink.stats.max_resending <= window // 4
            new = await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject="Z99", state="active")
            )
            for _ in range(100):  # its PUBACK, recorded (marks ride in commits)
                (newest,) = await outbox.recent(1)
                if newest.id == new.id and newest.sent_at is not None:
                    break
                await asyncio.sleep(0.05)
            assert newest.sent_at is not None, "the new alarm waited behind re-sends"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_nothing_is_marked_sent_while_the_broker_is_away(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")  # configured, never started
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        await outbox.append(FACTORY.make("alarm.panic", device="io", subject="Z1", state="active"))
        cfg = BrokerConfig(host=broker.host, port=broker.port, reconnect_max=0.5)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-under-test")
        task = asyncio.create_task(uplink.run())
        await asyncio.sleep(1.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await outbox.pending_count() == 1
        assert uplink.stats.connects == 0 and uplink.stats.published == 0


async def test_reconnects_never_give_up(tmp_path: Path) -> None:
    """Forty failed attempts in a row, then the broker is there: the panic goes out."""
    broker = MosquittoBroker(tmp_path / "broker")  # not started yet
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        await outbox.append(FACTORY.make("alarm.panic", device="io", subject="Z1", state="active"))
        cfg = BrokerConfig(
            host=broker.host, port=broker.port, reconnect_min=0.01, reconnect_max=0.05
        )
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-under-test")
        task = asyncio.create_task(uplink.run())
        try:
            async with asyncio.timeout(30):
                while uplink.stats.attempts < 40:
                    assert not task.done(), "the uplink gave up"
                    await asyncio.sleep(0.05)
            async with broker:
                async with asyncio.timeout(10):  # the PUBACK of the real broker
                    while await outbox.pending_count():
                        assert not task.done(), "the uplink gave up"
                        await asyncio.sleep(0.05)
            assert uplink.stats.connects == 1 and uplink.stats.published == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_retained_command_published_while_connected_is_refused(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Retain As Published: a live retained command keeps its flag and is refused."""
    seen: list[tuple[str, bytes, bool]] = []

    async def on_command(name: str, payload: bytes, retained: bool) -> dict:
        seen.append((name, payload, retained))
        return {"status": "error" if retained else "ok"}

    async with Outbox(tmp_path / "o.sqlite") as outbox:
        cfg = BrokerConfig(host=mosquitto.host, port=mosquitto.port)
        uplink = Uplink(cfg, PREFIX, outbox, client_id="gw-under-test", on_command=on_command)
        task = asyncio.create_task(uplink.run())
        try:
            await asyncio.wait_for(uplink.stats.connected.wait(), 10)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as center:
                await center.subscribe(f"{PREFIX}/cmd/+/result", qos=1)
                await center.publish(f"{PREFIX}/cmd/disarm", b'{"x": 1}', qos=1, retain=True)
                await center.publish(f"{PREFIX}/cmd/ping", b'{"x": 2}', qos=1)
                results = []
                async with asyncio.timeout(10):
                    async for message in center.messages:
                        assert isinstance(message.payload, bytes)
                        results.append((message.topic.value, json.loads(message.payload)))
                        if len(results) == 2:
                            break
                await center.publish(f"{PREFIX}/cmd/disarm", b"", qos=1, retain=True)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert seen == [("disarm", b'{"x": 1}', True), ("ping", b'{"x": 2}', False)]
    assert dict(results) == {
        f"{PREFIX}/cmd/disarm/result": {"status": "error"},
        f"{PREFIX}/cmd/ping/result": {"status": "ok"},
    }
