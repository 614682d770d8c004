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
import time
from pathlib import Path

import pytest

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.picture_process import PicturePool, PictureProcess
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
            [frozen] = taker.pictures.pids
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
            [doomed] = taker.pictures.pids
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
        taker.pictures = PicturePool(1, idle_exit_s=0.5)
        try:
            await taker()
            [first] = taker.pictures.pids
            await eventually(lambda: not taker.pictures.pids)  # it ended by itself
            await taker()
            assert taker.pictures.pids != [first]
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
    pictures = PictureProcess()
    garbler = "import sys; sys.stdout.buffer.write(b'x' * 64); sys.stdout.flush()"
    pictures._proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", garbler],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    pictures._last = time.monotonic()  # as if it had just answered: it is used
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
            [pid] = taker.pictures.pids
            os.kill(pid, signal.SIGINT)
            await taker()  # made by the same process
            assert taker.pictures.pids == [pid] and taker.pictures.started == 1
        finally:
            taker.pictures.close()
    await eventually(lambda: not _alive(pid))


async def test_cameras_share_a_pool_of_at_most_its_size(tmp_path: Path) -> None:
    """Four cameras asking at once are served by at most two processes (about
    55 MiB each), not one each: a site with many cameras stays in its memory."""
    pool = PicturePool(2)
    async with SimulatedCamera(camera_options("cam-s")) as cam:
        takers = [
            SnapshotTaker(
                camera_config(cam, tmp_path, id=f"cam-{k}", snapshot={"rtsp_fallback": False}),
                lambda: _uris(cam),
                pool,
            )
            for k in range(4)
        ]
        try:
            pictures = await asyncio.gather(*(taker() for taker in takers))
        finally:
            pool.close()
    assert [p.jpeg[:2] for p in pictures] == [b"\xff\xd8"] * 4
    assert 1 <= pool.started <= 2


async def test_a_process_about_to_end_idle_is_never_sent_a_picture(tmp_path: Path) -> None:
    """Once the gateway's idle time has passed, the next picture goes to a fresh
    process, while the old one (which waits 5 s longer) is still reading: a
    request never meets a process that has stopped reading (a review lost 23 of
    40 pictures sent around the idle exit)."""
    async with SimulatedCamera(camera_options("cam-r")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        taker = SnapshotTaker(cfg, lambda: _uris(cam), PicturePool(1, idle_exit_s=0.3))
        try:
            await taker()
            [old] = taker.pictures.pids
            await asyncio.sleep(0.4)  # the gateway's idle time passes; the process lives on
            assert _alive(old)
            await taker()
            [new] = taker.pictures.pids
        finally:
            taker.pictures.close()
    assert new != old and taker.pictures.started == 2 and taker.pictures.ended == 0
    await eventually(lambda: not _alive(old))


_DIES_WITH = """
import asyncio, json, sys
from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.config.camera import CameraConfig

async def main() -> None:
    cfg = CameraConfig.model_validate(json.loads(sys.argv[1]))
    taker = SnapshotTaker(cfg, lambda: MediaUris("Profile_1", sys.argv[2], None))
    await taker()
    print(json.dumps({"picture_process": taker.pictures.pids[0]}), flush=True)
    sys.stdin.readline()  # the test has frozen the picture process: ask again
    await taker()

asyncio.run(main())
"""


async def test_a_gateway_killed_mid_picture_leaves_no_picture_process(tmp_path: Path) -> None:
    """SIGKILL of the gateway while its picture process is busy (frozen here): the
    process does not wait for a stdin it no longer reads, it dies with the gateway."""
    async with SimulatedCamera(camera_options("cam-d")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _DIES_WITH, cfg.model_dump_json(), _uris(cam).snapshot or "",
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert gateway.stdin is not None and gateway.stdout is not None
        line = await asyncio.wait_for(gateway.stdout.readline(), 60)
        busy = int(json.loads(line)["picture_process"])
        os.kill(busy, signal.SIGSTOP)
        gateway.stdin.write(b"again\n")
        await gateway.stdin.drain()
        gateway.kill()
        await gateway.wait()
        await eventually(lambda: not _alive(busy))


async def test_a_picture_claiming_a_huge_size_is_refused_not_decoded() -> None:
    """A 1.3 KB JPEG whose header says 30000 x 30000 would take 2.7 GB decoded (a
    review saw 5.3 GB): refused as not a picture, over 64 Mpx."""
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    bomb = bytearray(encoded.tobytes())
    sof = bomb.index(b"\xff\xc0")  # baseline frame header: height, width at +5
    bomb[sof + 5 : sof + 9] = (30_000).to_bytes(2, "big") * 2
    pictures = PictureProcess()
    options = {"max_width_px": 1920, "max_bytes": 1 << 20, "jpeg_quality": 80}
    try:
        with pytest.raises(DeviceProtocolError, match="not a picture"):
            await pictures.make(
                {"op": "decode", "device_id": "cam-z", "stamp": "z", "options": options},
                bytes(bomb),
                30,
            )
    finally:
        pictures.close()
    assert ok and pictures.started == 1 and pictures.ended == 0


async def test_nothing_is_imported_from_the_gateways_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``campus-gateway run`` started in a folder holding a ``cv2.py``: the picture
    process does not import it (``python -P``)."""
    planted = tmp_path / "here"
    planted.mkdir()
    (planted / "cv2.py").write_text('raise ImportError("planted cv2.py imported")\n')
    monkeypatch.chdir(planted)
    async with SimulatedCamera(camera_options("cam-w")) as cam:
        cfg = camera_config(cam, tmp_path, snapshot={"rtsp_fallback": False})
        taker = SnapshotTaker(cfg, lambda: _uris(cam))
        try:
            evidence = await taker()
        finally:
            taker.pictures.close()
    assert evidence.jpeg[:2] == b"\xff\xd8"


async def test_grabs_from_dead_cameras_never_hold_every_process() -> None:
    """Two cameras whose streams never answer each grab (6 s to time out): a good
    picture of a third camera is made while both grabs still wait, on the process
    grabs may not take (a review saw it wait the whole timeout behind them). The
    6 s leave room for the second process's start on a loaded machine."""
    import cv2
    import numpy as np

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = {"max_width_px": 640, "max_bytes": 1 << 20, "jpeg_quality": 80}
    pool = PicturePool(2)

    def grab(camera: str) -> dict[str, object]:
        uri = f"http://127.0.0.1:{port}/{camera}.mjpg"
        return {"op": "grab", "device_id": camera, "stamp": camera, "options": options,
                "uri": uri, "timeout_s": 6.0}  # fmt: skip

    ok, jpeg = cv2.imencode(".jpg", np.full((90, 160, 3), 128, np.uint8))
    try:
        grabs = [asyncio.create_task(pool.make(grab(c), b"", 40)) for c in ("dead-1", "dead-2")]
        await eventually(lambda: pool.in_flight)
        decode = {"op": "decode", "device_id": "good", "stamp": "good", "options": options}
        made = await pool.make(decode, jpeg.tobytes(), 40)
        waiting = [not g.done() for g in grabs]
        results = await asyncio.gather(*grabs, return_exceptions=True)
    finally:
        pool.close()
        server.close()
    assert ok and made.jpeg[:2] == b"\xff\xd8" and (made.width, made.height) == (160, 90)
    assert waiting == [True, True]
    assert all(isinstance(r, DeviceUnavailable) for r in results)


async def test_a_picture_process_that_cannot_start_is_a_device_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No interpreter at ``sys.executable`` (as a failed fork would): a
    ``DeviceUnavailable`` the evidence collector retries and reports, not an
    ``OSError`` of no kind the gateway knows."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    pictures = PictureProcess()
    with pytest.raises(DeviceUnavailable, match=r"cannot be started.*nonexistent"):
        await pictures.make({"op": "decode", "device_id": "cam-n"}, b"", 10)
    assert pictures.started == 0
