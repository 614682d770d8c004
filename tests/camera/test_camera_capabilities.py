"""A camera is what it can do: one without events still gives pictures, and a failing
snapshot URI hands over to the stream.

The daemon runs as its own process on a TOML file; a simulated Modbus module and
a simulated ONVIF camera on real ports; real mosquitto; the center console and
an MQTT picture receiver (``…/snapshots/<event id>``) on the other side.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from simulators.broker import MosquittoBroker
from tests.camera_support import camera_options
from tests.fault_support import stored_types
from tests.helpers import assert_valid_event, eventually
from tests.power_cut_support import camera_campus

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/cut-school/gw1"


async def retained(host: str, port: int, topic: str) -> dict[str, Any]:
    """The retained message on ``topic`` (a new subscriber gets it at once)."""
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.retain and isinstance(message.payload, bytes)
                state: dict[str, Any] = json.loads(message.payload)
                return state
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("camera", "method"),
    [
        ({"snapshot_auth": "basic"}, "snapshot_uri"),  # IPyCam: Basic only
        ({"snapshot_fault": "http500"}, "stream"),
        ({"snapshot_fault": "http401"}, "stream"),
    ],
    ids=["basic-snapshot", "snapshot-500", "snapshot-401"],
)
async def test_a_camera_without_events_is_online_and_a_linked_alarm_gets_its_picture(
    mosquitto: MosquittoBroker, tmp_path: Path, camera: dict[str, Any], method: str
) -> None:
    options = camera_options("gate-cam", events_service=False, **camera)
    async with camera_campus(mosquitto, tmp_path, options, linked="P10", timeout_s=2.0) as c:
        await c.daemon.start()
        await c.center.wait_for(c.camera_online, 30)
        probes = c.camera.requests["GetSystemDateAndTime"]
        c.module.set_input(10, closed=True)  # the gatehouse panic button
        await c.center.wait_for(lambda: c.of("camera.snapshot") != [], 30)
        (snapshot,) = c.of("camera.snapshot")
        await eventually(lambda: snapshot["id"] in c.pictures.pictures)
        # three probes of the camera later: an offline camera would have been reported
        await eventually(lambda: c.camera.requests["GetSystemDateAndTime"] >= probes + 3)
        state = await retained(mosquitto.host, mosquitto.port, f"{PREFIX}/state/gate-cam")
    assert "fault.device_offline" not in stored_types(c.outbox)
    (online,) = c.of("device.online", "gate-cam")
    (status,) = [e for e in c.center.events if e["data"].get("detector") == "capabilities"]
    (panic,) = c.of("alarm.panic", "P10")
    assert online["data"]["capabilities"] == ["snapshot", "stream"]
    assert status["data"]["missing"] == ["events", "ptz"] and status["priority"] == 5
    assert (state["health"], state["capabilities"]) == ("online", ["snapshot", "stream"])
    data = snapshot["data"]
    assert data["for_event"] == panic["id"] and data["method"] == method
    assert c.pictures.sha256(snapshot["id"]) == data["sha256"]
    assert ("snapshot_error" in data) == (method == "stream")
    assert "CreatePullPointSubscription" not in c.camera.requests
    for event in c.center.events:
        assert_valid_event(event)
