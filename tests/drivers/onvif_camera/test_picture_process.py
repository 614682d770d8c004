"""Pictures are made in the camera's own process: OpenCV never in the gateway's, a
frozen or crashed picture process costs one picture, an idle one ends by itself.

Real parts: the simulated camera over HTTP, the picture process as the gateway
starts it (``python -m drivers.onvif_camera.picture_worker``), real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.picture_process import PictureProcess
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.errors import DeviceProtocolError, DeviceUnavailable, LibraryUnavailable
from simulators.camera.server import SimulatedCamera
from tests.camera_support import camera_config, camera_options
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[3]


def _uris(cam: SimulatedCamera, *, stream: bool = False) -> MediaUris:
    return MediaUris(
        "Profile_1",
        f"{cam.base_url}/onvif/snapshot.jpg",
        f"{cam.base_url}/stream.mjpg" if stream else None,
    )


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_GATEWAY_SIDE = """
import asyncio, json, sys
from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.config.camera import CameraConfig

OPENCV = {"cv2", "numpy", "drivers.onvif_camera.imaging"}

async def main() -> None:
    cfg = CameraConfig.model_validate(json.loads(sys.argv[1]))
    taker = SnapshotTaker(cfg, lambda: MediaUris("Profile_1", sys.argv[2], None))
    evidence = await taker()
    print(json.dumps({
        "opencv": sorted(OPENCV & set(sys.modules)),
        "jpeg": evidence.jpeg[:2].hex(),
        "size": [evidence.width, evidence.height],
        "processes": taker.pictures.started,
    }))

asyncio.run(main())
"""


async def test_the_gateway_process_never_loads_opencv(tmp_path: Path) -> None:
    """The picture is made, and the process that asked for it has not imported
    OpenCV, numpy or the imaging module (checked in a fresh interpreter: this one
    has them, for the simulated camera)."""
    async with SimulatedCamera(camera_options("cam-o", width=1280, height=720)) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"max_width_px": 640})
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _GATEWAY_SIDE, cfg.model_dump_json(), _uris(cam).snapshot or "",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen == {"opencv": [], "jpeg": "ffd8", "size": [640, 360], "processes": 1}


async def test_a_frozen_picture_process_is_stopped_and_the_next_picture_made(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-f")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"timeout_s": 1.0, "rtsp_fallback": False})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        try:
            await taker()
            frozen = taker.pictures.pid
            assert frozen is not None
            os.kill(frozen, signal.SIGSTOP)  # as a decoder that never returns
            with pytest.raises(DeviceUnavailable, match=r"not made within 7 s: .* stopped"):
                await taker()
            await eventually(lambda: not _alive(frozen))
            evidence = await taker()
        finally:
            taker.pictures.close()
    assert evidence.jpeg[:2] == b"\xff\xd8"
    assert (taker.pictures.started, taker.pictures.stopped) == (2, 1)


async def test_a_picture_process_that_dies_during_a_picture_costs_that_try_only(
    tmp_path: Path,
) -> None:
    """The decode of the fetched picture dies (SIGKILL, as a crash in the decoder):
    the stream stands in for it in a fresh process, and the picture says why."""
    async with SimulatedCamera(camera_options("cam-k")) as cam:
        cfg = camera_config(cam, tmp_path)
        taker = SnapshotTaker(cfg, lambda: _uris(cam, stream=True))
        try:
            await taker()
            doomed = taker.pictures.pid
            assert doomed is not None
            os.kill(doomed, signal.SIGSTOP)
            picture = asyncio.create_task(taker())
            await eventually(lambda: taker.pictures.in_flight)
            os.kill(doomed, signal.SIGKILL)
            evidence = await picture
        finally:
            taker.pictures.close()
    assert evidence.method == "stream" and evidence.jpeg[:2] == b"\xff\xd8"
    assert evidence.snapshot_error is not None
    assert "the picture process ended during this picture (killed by SIGKILL)" in (
        evidence.snapshot_error
    )
    assert (taker.pictures.started, taker.pictures.ended) == (2, 1)


async def test_an_idle_picture_process_ends_and_the_next_picture_starts_another(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-i")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        taker.pictures = PictureProcess(cfg.id, idle_exit_s=0.5)
        try:
            await taker()
            first = taker.pictures.pid
            assert first is not None
            await eventually(lambda: taker.pictures.pid is None)  # it ended by itself
            await taker()
        finally:
            taker.pictures.close()
    assert taker.pictures.started == 2 and (taker.pictures.stopped, taker.pictures.ended) == (0, 0)


async def test_an_opencv_that_cannot_load_is_library_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a missing FFmpeg library would: the picture process's ``import cv2`` fails;
    the picture raises ``LibraryUnavailable``, which the evidence collector reports
    on the picture's event (tests/camera/test_evidence_failures.py)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cv2.py").write_text(
        'raise ImportError("libavcodec.so.59: cannot open shared object file")\n'
    )
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(broken), path) if p))
    async with SimulatedCamera(camera_options("cam-b")) as cam:
        cfg = camera_config(cam, tmp_path)
        taker = SnapshotTaker(cfg, lambda: _uris(cam, stream=True))
        try:
            with pytest.raises(LibraryUnavailable, match=r"OpenCV cannot be loaded.*libavcodec"):
                await taker()
        finally:
            taker.pictures.close()


async def test_an_answer_that_is_not_a_frame_is_a_protocol_error() -> None:
    """Bytes on the process's stdout that are not a frame (a library printing there
    before the worker moved it aside) end that process, never the gateway."""
    pictures = PictureProcess("cam-g")
    garbler = "import sys; sys.stdout.buffer.write(b'x' * 64); sys.stdout.flush()"
    pictures._proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", garbler],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    with pytest.raises(DeviceProtocolError, match="ended during this picture"):
        await pictures.make({"op": "decode", "device_id": "cam-g"}, b"", 10)
    assert pictures.ended == 1 and pictures.pid is None


async def test_ctrl_c_in_the_terminal_leaves_the_picture_process_to_the_gateway(
    tmp_path: Path,
) -> None:
    """SIGINT reaches every process of the terminal's group: the picture process
    ignores it (no traceback of its own in the gateway's log) and ends when the
    gateway closes its stdin."""
    async with SimulatedCamera(camera_options("cam-c")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        try:
            await taker()
            pid = taker.pictures.pid
            assert pid is not None
            os.kill(pid, signal.SIGINT)
            await taker()  # made by the same process
            assert taker.pictures.pid == pid and taker.pictures.started == 1
        finally:
            taker.pictures.close()
    await eventually(lambda: not _alive(pid))
