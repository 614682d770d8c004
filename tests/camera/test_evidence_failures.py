"""Pictures that fail in ways nobody planned for never end the evidence collector.

From a review: a snapshot URI httpx refuses (a firmware template left unfilled,
``http://host:port/snap.jpg``) raised past the collector and ended its task group,
cancelling the other cameras' pictures: 0 of 4 requests stored. And a snapshot URI
that streams (MJPEG) ran for good, growing memory by megabytes a second. Real
parts: the simulated cameras and an aiohttp server on real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.camera.evidence import EvidenceCollector, EvidenceRequest
from gateway.errors import DeviceProtocolError, DeviceUnavailable
from gateway.events.model import Event, EventFactory
from simulators.camera.server import SimulatedCamera
from tests.camera_support import camera_config, camera_options
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)


async def test_a_snapshot_uri_httpx_refuses_is_one_picture_not_taken(tmp_path: Path) -> None:
    stored: list[Event] = []

    async def store(event: Event, *, keep: Iterable[Any] = (), blob: Any = None) -> Event:
        stored.append(event)
        return event

    async def keep(writes: Iterable[Any]) -> None:
        return None

    async with (
        SimulatedCamera(camera_options("good", width=640, height=360)) as good,
        SimulatedCamera(camera_options("bad")) as bad,
    ):
        cfg_good = camera_config(good, tmp_path)
        cfg_bad = camera_config(bad, tmp_path, snapshot={"rtsp_fallback": False})
        unfilled = MediaUris("P", f"http://{bad.options.host}:port/snap.jpg", None)
        takers = {
            "good": SnapshotTaker(
                cfg_good, lambda: MediaUris("P", f"{good.base_url}/onvif/snapshot.jpg", None)
            ),
            "bad": SnapshotTaker(cfg_bad, lambda: unfilled),
        }
        factory = EventFactory("t", lambda: True)
        collector = EvidenceCollector(
            {"good": cfg_good, "bad": cfg_bad}, takers, factory, store, keep
        )
        alarm = factory.make("alarm.intrusion", device="z", subject="z", state="active", data={})
        for cam in ("good", "good", "bad", "good"):
            collector.submit(EvidenceRequest.for_alarm(cam, alarm))
        task = asyncio.create_task(collector.run())
        try:
            await eventually(lambda: len(stored) == 4 or task.done(), 20)
            assert not task.done(), task.exception()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    by_camera = {e.subject: e.data for e in stored if e.subject == "bad"}
    assert "snapshot URI" in str(by_camera["bad"]["error"])
    assert sum(1 for e in stored if e.subject == "good" and "sha256" in e.data) == 3


@pytest.mark.parametrize(
    ("pause_s", "error", "why"),
    [(0.05, DeviceUnavailable, "Timeout"), (0.0, DeviceProtocolError, "not one picture")],
    ids=["slow-stream", "fast-stream"],
)
async def test_a_snapshot_uri_that_streams_ends_within_its_timeout(
    tmp_path: Path, pause_s: float, error: type[Exception], why: str
) -> None:
    """A slow stream ends at ``timeout_s`` (httpx's own timeout is per read), a fast
    one at ``MAX_PICTURE_BYTES``."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=f"}
        )
        await response.prepare(request)
        while True:
            await response.write(b"\xff" * (256 << 10))
            await asyncio.sleep(pause_s)

    app = web.Application()
    app.router.add_get("/snap.jpg", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with SimulatedCamera(camera_options("mj")) as cam:
            cfg = camera_config(
                cam, tmp_path, snapshot={"rtsp_fallback": False, "timeout_s": 2.0, "auth": "none"}
            )
            uris = MediaUris("P", f"http://127.0.0.1:{port}/snap.jpg", None)
            started = asyncio.get_running_loop().time()
            with pytest.raises(error, match=why):
                await asyncio.wait_for(SnapshotTaker(cfg, lambda: uris)(), 8)
            assert asyncio.get_running_loop().time() - started < 4
    finally:
        await runner.cleanup()
