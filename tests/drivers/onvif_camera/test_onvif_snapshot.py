"""Evidence pictures from the simulated camera: Digest/Basic over httpx, OpenCV stream fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.imaging import decode_jpeg, reencode
from drivers.onvif_camera.snapshot import SnapshotTaker, with_credentials
from gateway.config.camera import SnapshotConfig
from gateway.errors import DeviceAuthError, DeviceError, DeviceProtocolError, DeviceUnavailable
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
        cfg = camera_config(cam, tmp_path, password="wrong", snapshot={"rtsp_fallback": False})
        with pytest.raises(DeviceAuthError, match="basic auth"):  # digest, then basic: refused
            await SnapshotTaker(cfg, lambda: _uris(cam))()


@pytest.mark.parametrize("served", ["digest", "basic", "none"])
async def test_auto_auth_tries_digest_then_basic_and_remembers_what_worked(
    tmp_path: Path, served: str
) -> None:
    async with SimulatedCamera(camera_options("cam-a", snapshot_auth=served)) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        assert cfg.snapshot.auth == "auto"
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        first = await taker()
        refused_first = cam.snapshot_refusals
        second = await taker()
        refused_second = cam.snapshot_refusals - refused_first
    assert first.method == second.method == "snapshot_uri" and cam.snapshots == 2
    assert taker.auth_works == ("basic" if served == "basic" else "digest")
    # a Basic camera refuses the unauthenticated Digest probe once, then never again;
    # a Digest camera challenges every fresh request once (that is Digest)
    assert (refused_first, refused_second) == {"digest": (1, 1), "basic": (1, 0), "none": (0, 0)}[
        served
    ]


async def test_a_pinned_auth_is_the_only_one_tried(tmp_path: Path) -> None:
    async with SimulatedCamera(camera_options("cam-b", snapshot_auth="basic")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"auth": "digest", "rtsp_fallback": False})
        with pytest.raises(DeviceAuthError, match="digest auth"):
            await SnapshotTaker(cfg, lambda: _uris(cam))()
        assert cam.snapshots == 0


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("http401", "HTTP 401"),
        ("http500", "HTTP 500"),
        ("hang", "Timeout"),
        ("empty", "snapshot is empty"),  # OpenCV raised cv2.error on it (a review)
    ],
)
async def test_a_failing_snapshot_uri_falls_back_to_a_stream_frame(
    tmp_path: Path, fault: str, why: str
) -> None:
    async with SimulatedCamera(camera_options("cam-f", snapshot_fault=fault)) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"timeout_s": 2.0})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        evidence = await taker()
        with pytest.raises(DeviceError, match=why):
            await SnapshotTaker(
                camera_config(cam, tmp_path, snapshot={"timeout_s": 2.0, "rtsp_fallback": False}),
                lambda: _uris(cam),
            )()
    assert evidence.method == "stream" and taker.fallbacks == 1
    assert evidence.snapshot_error is not None and why in evidence.snapshot_error
    assert evidence.sha256 == hashlib.sha256(evidence.jpeg).hexdigest()
    assert cam.snapshots == 0


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
