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
from simulators.camera.server import SimulatedCamera
from simulators.center import CenterConsole
from tests.camera_support import PASSWORD, camera_options, picture_receiver
from tests.fault_support import module, stored_types
from tests.helpers import assert_valid_event, eventually
from tests.power_cut_support import Daemon, camera_toml, module_toml, site_toml, write_toml

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/cut-school/gw1"


def linked_campus(tmp_path: Path, broker: int, module_port: int, cam: SimulatedCamera) -> Path:
    """The test campus with camera ``gate-cam`` linked to the panic zone ``P10``."""
    secret = tmp_path / "cam.password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    return write_toml(
        tmp_path,
        site_toml(tmp_path, broker)
        + module_toml(module_port)
        + camera_toml("gate-cam", cam.port, secret, timeout_s=2.0)
        + '\n[[linkage]]\nzone = "P10"\ncameras = ["gate-cam"]\n',
    )


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


def first(center: CenterConsole, type_: str, subject: str) -> dict[str, Any] | None:
    return next((e for e in center.events if (e["type"], e["subject"]) == (type_, subject)), None)


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
    outbox = tmp_path / "outbox.sqlite"
    async with (
        module() as sim,
        SimulatedCamera(camera_options("gate-cam", events_service=False, **camera)) as cam,
        CenterConsole(mosquitto.host, mosquitto.port) as center,
        picture_receiver(mosquitto.host, mosquitto.port, "pictures") as pictures,
        Daemon(linked_campus(tmp_path, mosquitto.port, sim.port, cam), tmp_path) as daemon,
    ):
        await daemon.start()
        await center.wait_for(lambda: first(center, "device.online", "gate-cam") is not None, 30)
        probes = cam.requests["GetSystemDateAndTime"]
        sim.set_input(10, closed=True)  # the gatehouse panic button
        await center.wait_for(lambda: first(center, "camera.snapshot", "gate-cam") is not None, 30)
        snapshot = first(center, "camera.snapshot", "gate-cam")
        assert snapshot is not None
        await eventually(lambda: snapshot["id"] in pictures.pictures)
        # three probes of the camera later: an offline camera would have been reported
        await eventually(lambda: cam.requests["GetSystemDateAndTime"] >= probes + 3)
        state = await retained(mosquitto.host, mosquitto.port, f"{PREFIX}/state/gate-cam")
    assert "fault.device_offline" not in stored_types(outbox)
    online = first(center, "device.online", "gate-cam")
    statuses = [e for e in center.events if e["data"].get("detector") == "capabilities"]
    status = statuses[0] if len(statuses) == 1 else None  # said once
    panic = first(center, "alarm.panic", "P10")
    assert online is not None and status is not None and panic is not None
    assert online["data"]["capabilities"] == ["snapshot", "stream"]
    assert status["data"]["missing"] == ["events", "ptz"] and status["priority"] == 5
    assert (state["health"], state["capabilities"]) == ("online", ["snapshot", "stream"])
    data = snapshot["data"]
    assert data["for_event"] == panic["id"] and data["method"] == method
    assert pictures.sha256(snapshot["id"]) == data["sha256"]
    assert ("snapshot_error" in data) == (method == "stream")
    assert "CreatePullPointSubscription" not in cam.requests
    for event in center.events:
        assert_valid_event(event)
