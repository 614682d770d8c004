"""Cameras end to end: simulated ONVIF cameras → gateway → real mosquitto → center console.

Everything is real: the simulated cameras speak SOAP over HTTP on their own
ports, onvif-zeep-async talks to them, the gateway stores in its SQLite outbox
and publishes to Debian's mosquitto, and the center validates every event
against ``gateway/events/event.schema.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config.camera import CameraConfig
from gateway.config.root import GatewayConfig
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.camera.server import SimulatedCamera
from simulators.center import CenterConsole
from tests.camera_support import camera_config, camera_options, eventually, picture_receiver
from tests.campus_helpers import demo_config_on, simulated_campus
from tests.helpers import SIGNED_COMMANDS, assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(120)


def with_cameras(
    base: GatewayConfig, cameras: Sequence[CameraConfig], linkage: Sequence[dict[str, Any]] = ()
) -> GatewayConfig:
    """``base`` plus cameras and linkage, validated like a file would be."""
    raw = base.model_dump()
    raw.update(cameras=[c.model_dump() for c in cameras], linkage=list(linkage))
    return GatewayConfig.model_validate(raw)


def bare_config(broker_port: int, cameras: Sequence[CameraConfig]) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "commands": SIGNED_COMMANDS,
            "site": {"id": "cam-school", "gateway": "gw1"},
            "broker": {"port": broker_port},
            "metrics": {"port": 0},
            "bench": {"port": 0},
            "cameras": [c.model_dump() for c in cameras],
        }
    )


async def wait_event(
    center: CenterConsole, type_: str, subject: str, state: str, within: float = 10.0, **data: Any
) -> dict[str, Any]:
    def match(e: dict[str, Any]) -> bool:
        return (
            e["type"] == type_
            and e["subject"] == subject
            and e["data"]["state"] == state
            and all(e["data"].get(k) == v for k, v in data.items())
        )

    await center.wait_for(lambda: any(match(e) for e in center.events), within)
    return next(e for e in center.events if match(e))


@contextlib.asynccontextmanager
async def one_camera(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> AsyncIterator[tuple[SimulatedCamera, CenterConsole]]:
    async with SimulatedCamera(camera_options("gate-cam", clock_offset_s=-120)) as cam:
        cfg = bare_config(mosquitto.port, [camera_config(cam, tmp_path)])
        async with (
            signed_center(host=mosquitto.host, port=mosquitto.port) as center,
            running(cfg, outbox_path=tmp_path / "outbox.sqlite"),
        ):
            await wait_event(center, "device.online", "gate-cam", "instant")
            yield cam, center
        assert center.invalid == 0
        for event in center.events:
            assert_valid_event(event)


async def test_motion_on_the_camera_reaches_the_center_active_then_cleared(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with one_camera(mosquitto, tmp_path) as (cam, center):
        online = next(e for e in center.events if e["type"] == "device.online")
        assert abs(online["data"]["clock_skew_s"] + 120) < 2  # the lying clock, measured
        cam.trigger("motion", True)
        active = await wait_event(center, "camera.motion", "gate-cam/VideoSourceConfig_1", "active")
        cam.trigger("motion", False)
        cleared = await wait_event(
            center, "camera.motion", "gate-cam/VideoSourceConfig_1", "cleared"
        )
    assert active["source"] == "campus/cam-school/gw1/gate-cam"
    assert active["priority"] == 4 and active["data"]["initial"] is False
    assert cleared["data"]["incident"] == active["id"] == active["data"]["incident"]
    assert active["data"]["devicetime"] != active["time"]  # the camera's claim, kept beside
    assert active["data"]["raw"]["IsMotion"] == "true"


async def test_camera_reboot_gives_offline_then_online_and_events_resume_at_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with one_camera(mosquitto, tmp_path) as (cam, center):
        reboot = asyncio.create_task(cam.reboot(off_seconds=4.0))
        offline = await wait_event(center, "fault.device_offline", "gate-cam", "active")
        await reboot
        back = time.monotonic()
        await wait_event(center, "device.online", "gate-cam", "instant", incident=offline["id"])
        online_after = time.monotonic() - back
        cam.trigger("tamper", True)
        triggered = time.monotonic()
        tamper = await wait_event(center, "camera.tamper", "gate-cam/VideoSourceConfig_1", "active")
        delivered = time.monotonic() - triggered
    assert online_after < 3.0  # one backoff (cap 1 s) plus connecting and subscribing
    assert delivered < 2.0  # within one pull cycle (pull_timeout_s = 1 s)
    assert offline["priority"] == 3 and offline["cidcode"] == "333"
    assert (tamper["priority"], tamper["cidcode"], tamper["siacode"]) == (2, "144", "TA")
    assert cam.boots == 2


@pytest.mark.parametrize("broker_down", [False, True], ids=["broker-up", "broker-down"])
async def test_zone_alarm_linked_to_two_cameras_delivers_two_hashed_pictures(
    tmp_path: Path, broker_down: bool
) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    await broker.start()
    # The center's and the picture receiver's sessions exist before the alarm.
    async with (
        signed_center(host=broker.host, port=broker.port, identifier="center-1", persistent=True),
        picture_receiver(broker.host, broker.port, "pictures-1"),
    ):
        pass
    async with (
        simulated_campus() as modules,
        SimulatedCamera(camera_options("cam-a")) as cam_a,
        SimulatedCamera(camera_options("cam-b", snapshot_uri=False)) as cam_b,
    ):
        cameras = [camera_config(cam_a, tmp_path), camera_config(cam_b, tmp_path)]
        cfg = with_cameras(
            demo_config_on(broker.port, modules),
            cameras,
            [{"zone": "Z01", "cameras": ["cam-a", "cam-b"]}],
        )
        if broker_down:
            await broker.stop()
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.cameras is not None
            stage = gateway.cameras
            await eventually(lambda: all(d.health == "online" for d in stage.drivers.values()))
            modules["gate-io"].press(0)  # Z01: the gatehouse panic button
            await eventually(lambda: stage.evidence.stored == 2, 15)
            if broker_down:
                await broker.start()
            async with (
                signed_center(
                    host=broker.host, port=broker.port, identifier="center-1", persistent=True
                ) as center,
                picture_receiver(broker.host, broker.port, "pictures-1") as pictures,
            ):
                await center.wait_for(
                    lambda: len([e for e in center.events if e["type"] == "camera.snapshot"]) == 2,
                    20.0,
                )
                snapshots = [e for e in center.events if e["type"] == "camera.snapshot"]
                await eventually(lambda: len(pictures.pictures) == 2)
                panic = next(e for e in center.events if e["type"] == "alarm.panic")
    await broker.stop()
    assert sorted(e["data"]["camera"] for e in snapshots) == ["cam-a", "cam-b"]
    for event in snapshots:
        assert_valid_event(event)
        data = event["data"]
        assert data["topic"] == f"snapshots/{event['id']}"
        assert pictures.sha256(event["id"]) == data["sha256"]
        assert len(pictures.pictures[event["id"]]) == data["bytes"]
        assert data["for_event"] == panic["id"] and data["incident"] == panic["data"]["incident"]
    methods = {e["data"]["camera"]: e["data"]["method"] for e in snapshots}
    assert methods == {"cam-a": "snapshot_uri", "cam-b": "stream"}
    assert not center.gaps


async def test_motion_flicker_within_the_merge_window_is_one_incident_with_one_picture(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Issue 11: motion on → off → on within 2 s gave a final ``cleared``, a new
    unlinked incident and a picture per flicker. Now one incident (an ``active``
    update), one picture, and the ``cleared`` only after the 3 s window."""
    subject = "gate-cam/VideoSourceConfig_1"
    async with one_camera(mosquitto, tmp_path) as (cam, center):
        cam.trigger("motion", True)
        active = await wait_event(center, "camera.motion", subject, "active")
        flicker = time.monotonic()
        cam.trigger("motion", False)
        await asyncio.sleep(0.5)  # the flicker's schedule, not a wait for a result
        cam.trigger("motion", True)
        await wait_event(center, "camera.motion", subject, "active", update=True)
        assert time.monotonic() - flicker < 2.0
        cam.trigger("motion", False)
        quiet = time.monotonic()
        cleared = await wait_event(center, "camera.motion", subject, "cleared", within=15)
        assert time.monotonic() - quiet >= 3.0  # not final before the window passed
        await wait_event(center, "camera.snapshot", "gate-cam", "instant", within=15)
    motions = [e for e in center.events if e["type"] == "camera.motion"]
    assert [e["data"]["state"] for e in motions] == ["active", "active", "cleared"]
    assert {e["data"]["incident"] for e in motions} == {active["id"]}
    assert cleared["data"]["incident"] == active["id"]
    pictures = [e for e in center.events if e["type"] == "camera.snapshot"]
    assert len(pictures) == 1 and pictures[0]["data"]["incident"] == active["id"], pictures
