"""A gateway without cameras never loads the cameras' libraries (issue 14: memory).

OpenCV, numpy and zeep's lxml are shared objects: once imported they are mapped
into the process (``/proc/<pid>/maps``). The daemon runs as its own process; the
same daemon with one camera configured maps them, which shows the check can see
them. The memory figure itself is printed by ``bench/contact_latency.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from tests.fault_support import daemon_process, module, wait_until, write_config
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(90)

HEAVY = ("cv2", "numpy", "lxml")

CAMERA = """
[[cameras]]
id = "gate-cam"
host = "127.0.0.1"
port = {port}
username = "admin"
password_file = "camera.password"
"""


def heavy_libraries(pid: int) -> set[str]:
    """Which of :data:`HEAVY` have a file mapped into process ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY if f"/{name}/" in maps}


@pytest.mark.parametrize("cameras", [0, 1], ids=["no-camera", "one-camera"])
async def test_camera_libraries_are_loaded_only_with_cameras(tmp_path: Path, cameras: int) -> None:
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc (Linux)")
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        if cameras:
            (tmp_path / "camera.password").write_text("secret\n")
            with config.open("a", encoding="utf-8") as fh:
                fh.write(CAMERA.format(port=free_port()))
        log = tmp_path / "gateway.log"
        async with daemon_process(config, log) as daemon:
            # Polling has begun: every stage (cameras included) was built before it.
            await wait_until(lambda: sim.requests > 5, 30, "the module polled")
            assert daemon.returncode is None, log.read_text()[-2000:]
            loaded = heavy_libraries(daemon.pid)
    assert loaded == (set(HEAVY) if cameras else set()), f"pid {os.getpid()}: {loaded}"
