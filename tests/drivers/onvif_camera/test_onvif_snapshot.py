"""Evidence pictures from the simulated camera: Digest/Basic over httpx, OpenCV stream fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.snapshot import SnapshotTaker, decode_jpeg, reencode, with_credentials
from gateway.config.camera import SnapshotConfig
from gateway.errors import DeviceAuthError, DeviceProtocolError, DeviceUnavailable
from simulators.camera.server import SimulatedCamera
from tests.camera_support import camera_config, camera_options

pytestmark = pytest.mark.timeout(60)


def _uris(cam: SimulatedCamera, *, snapshot: bool = True) -> MediaUris:
    return MediaUris(
        "Profile_1",
        f"{cam.base_url}/onvif/snapshot.jpg" if snapshot else None,
        f"{cam.base_url}/stream.mjpg",
    )


@pytest.mark.parametrize("auth", ["digest", "basic"])
async def test_snapshot_uri_with_digest_or_basic_auth_is_hashed_and_stamped(
    tmp_path: Path, auth: str
) -> None:
    async with SimulatedCamera(
        camera_options("cam-s", snapshot_auth=auth, width=1920, height=1080)
    ) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"auth": auth, "max_width_px": 800})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        first, second = await taker(), await taker()
    assert cam.snapshots == 2
    assert first.method == "snapshot_uri" and first.sha256 == hashlib.sha256(first.jpeg).hexdigest()
    assert first.sha256 != second.sha256  # every picture differs: the hash identifies it
    assert (first.width, first.height) == (800, 450)  # bounded width, aspect kept
    image = decode_jpeg(first.jpeg, "cam-s")
    assert image.shape[:2] == (450, 800)
    assert image[-24:, 2:300].max() > 200  # the stamp: white text at the bottom left


async def test_wrong_password_on_the_snapshot_uri_is_an_auth_error(tmp_path: Path) -> None:
    async with SimulatedCamera(camera_options("cam-p")) as cam:
        cfg = camera_config(cam, tmp_path, password="wrong")
        with pytest.raises(DeviceAuthError):
            await SnapshotTaker(cfg, lambda: _uris(cam))()


async def test_no_snapshot_uri_grabs_a_frame_from_the_stream_with_opencv(tmp_path: Path) -> None:
    async with SimulatedCamera(camera_options("cam-v", snapshot_uri=False)) as cam:
        cfg = camera_config(cam, tmp_path)
        evidence = await SnapshotTaker(cfg, lambda: _uris(cam, snapshot=False))()
    assert evidence.method == "stream"
    assert (evidence.width, evidence.height) == (640, 360)
    assert evidence.sha256 == hashlib.sha256(evidence.jpeg).hexdigest()


async def test_no_connection_no_uri_and_a_dead_camera_raise_clear_errors(tmp_path: Path) -> None:
    async with SimulatedCamera(camera_options("cam-x")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        with pytest.raises(DeviceUnavailable):
            await SnapshotTaker(cfg, lambda: None)()
        with pytest.raises(DeviceProtocolError):
            await SnapshotTaker(cfg, lambda: _uris(cam, snapshot=False))()
    with pytest.raises(DeviceUnavailable):
        await SnapshotTaker(cfg, lambda: _uris(cam))()  # the port is closed now


def test_reencode_shrinks_until_the_picture_fits_max_bytes() -> None:
    noise = np.random.default_rng(7).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    options = SnapshotConfig(max_width_px=1920, max_bytes=60_000, jpeg_quality=95)
    jpeg, width, height = reencode(noise, "cam 2030-01-02 03:04:05Z", options)
    assert len(jpeg) <= 60_000
    assert width < 1920 and abs(width / height - 16 / 9) < 0.01
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1] == width


def test_stream_uri_gets_credentials_unless_it_has_some() -> None:
    assert with_credentials("rtsp://10.0.0.5/main", "admin", "p@ss") == (
        "rtsp://admin:p%40ss@10.0.0.5/main"
    )
    assert with_credentials("rtsp://u:p@10.0.0.5/main", "admin", "x") == "rtsp://u:p@10.0.0.5/main"
