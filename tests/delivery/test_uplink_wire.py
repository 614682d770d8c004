"""What the uplink puts on the wire: every message keeps its MQTT 5 properties though
they are packed once (``mqtt_client._PackedOnce``, issue 14), and the PUBACK fast path
still tells a refusal from a delivery (``test_uplink_refusals.py`` covers 0x87)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config.root import BrokerConfig
from gateway.delivery.mqtt_client import publish_properties
from gateway.delivery.outbox import Outbox
from gateway.delivery.uplink import EVENT_CONTENT_TYPE, Uplink
from gateway.events.model import EventFactory
from simulators.broker import MosquittoBroker

PREFIX = "campus/v1/s1/gw1"
FACTORY = EventFactory("campus/s1/gw1", lambda: False)


def test_properties_packed_once_are_what_paho_packs() -> None:
    ours = publish_properties(content_type=EVENT_CONTENT_TYPE, expiry_s=20)
    theirs = Properties(PacketTypes.PUBLISH)
    theirs.ContentType = EVENT_CONTENT_TYPE
    theirs.MessageExpiryInterval = 20
    assert ours.pack() == ours.pack() == theirs.pack()


async def test_every_event_carries_its_content_type(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    types: list[str | None] = []
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
    ):
        await sub.subscribe(f"{PREFIX}/events/#", qos=1)
        for i in range(5):
            await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject=f"Z{i}", state="active")
            )
        cfg = BrokerConfig(host=mosquitto.host, port=mosquitto.port, window=2)
        task = asyncio.create_task(Uplink(cfg, PREFIX, outbox, client_id="gw-wire").run())
        try:
            async with asyncio.timeout(20):
                async for message in sub.messages:
                    types.append(getattr(message.properties, "ContentType", None))
                    if len(types) == 5:
                        break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert types == [EVENT_CONTENT_TYPE] * 5
