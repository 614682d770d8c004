"""A gateway loads the cameras' libraries only with cameras, the DC-09 receiver's
AES library only with panels, never aiohttp for ``/metrics``, and aiohttp for the
bench page only once its port is connected to (issue 14: memory).

zeep's lxml, OpenCV, numpy, cryptography's OpenSSL bindings and aiohttp (with
multidict and yarl) have compiled parts: once imported they are mapped into the
process (``/proc/<pid>/maps``). The daemon runs as its own process; the same
daemon with one camera (or one panel) configured maps them (OpenCV and numpy
only at a camera's first picture), and opening the bench page maps aiohttp,
which shows the check can see them. The memory figure
itself is printed by ``bench/contact_latency.py``.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from tests.fault_support import daemon_process, module, wait_until, write_config
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(90)

CAMERA_LIBRARIES = {"lxml"}  # zeep's; OpenCV and numpy wait for the first picture
PICTURE_LIBRARIES = {"cv2", "numpy"}  # tests/drivers/onvif_camera/test_onvif_snapshot.py
PANEL_LIBRARIES = {"cryptography"}
HTTP_LIBRARIES = {"aiohttp", "multidict", "yarl"}  # the bench page, /metrics; ONVIF's client
HEAVY = CAMERA_LIBRARIES | PICTURE_LIBRARIES | PANEL_LIBRARIES | HTTP_LIBRARIES

CAMERA = """
[[cameras]]
id = "gate-cam"
host = "127.0.0.1"
port = {port}
username = "admin"
password_file = "camera.password"
"""

PANEL = """
[dc09]
listen = [{{ protocol = "tcp", host = "127.0.0.1", port = {port} }}]

[[panels]]
id = "east-panel"
account = "1234"
supervision_s = 180
key_file = "panel.key"
key_format = "ascii"
"""


def heavy_libraries(pid: int) -> set[str]:
    """Which of :data:`HEAVY` have a file mapped into process ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY if f"/{name}/" in maps}


@pytest.mark.parametrize(
    ("device", "expected"),
    [("none", set()), ("camera", CAMERA_LIBRARIES | HTTP_LIBRARIES), ("panel", PANEL_LIBRARIES)],
    ids=["no-camera-no-panel", "one-camera", "one-panel"],
)
async def test_device_libraries_are_loaded_only_with_their_devices(
    tmp_path: Path, device: str, expected: set[str]
) -> None:
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc (Linux)")
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        if device == "camera":
            (tmp_path / "camera.password").write_text("secret\n")
            with config.open("a", encoding="utf-8") as fh:
                fh.write(CAMERA.format(port=free_port()))
        elif device == "panel":
            (tmp_path / "panel.key").write_text("DemoPanelKey2026\n")
            with config.open("a", encoding="utf-8") as fh:
                fh.write(PANEL.format(port=free_port()))
        log = tmp_path / "gateway.log"
        async with daemon_process(config, log) as daemon:
            # Polling has begun: every stage (cameras included) was built before it.
            await wait_until(lambda: sim.requests > 5, 30, "the module polled")
            assert daemon.returncode is None, log.read_text()[-2000:]
            loaded = heavy_libraries(daemon.pid)
    assert loaded == expected, f"pid {os.getpid()}: {loaded}"


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status), response.read().decode()


async def test_metrics_never_load_aiohttp_and_the_bench_page_loads_it_when_opened(
    tmp_path: Path,
) -> None:
    """``/metrics`` is served without aiohttp (a scraped box would keep it loaded for
    good: ``gateway/ops/plain_http.py``); the bench page, on by default, loads it only
    when someone connects, and answers that first request (``gateway/ops/lazy_port.py``)."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc (Linux)")
    metrics_port, bench_port = free_port(), free_port()
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(
            tmp_path,
            broker_port=broker.port,
            module_port=sim.port,
            metrics_port=metrics_port,
            bench_port=bench_port,
        )
        log = tmp_path / "gateway.log"
        async with daemon_process(config, log) as daemon:
            await wait_until(lambda: sim.requests > 5, 30, "the module polled")
            assert daemon.returncode is None, log.read_text()[-2000:]
            before = heavy_libraries(daemon.pid)
            metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
            status = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/status")
            scraped = heavy_libraries(daemon.pid)
            page = await asyncio.to_thread(_get, f"http://127.0.0.1:{bench_port}/")
            state = await asyncio.to_thread(_get, f"http://127.0.0.1:{bench_port}/api/state")
            opened = heavy_libraries(daemon.pid)
    assert metrics[0] == 200 and "campus_gateway_events_total" in metrics[1]
    assert status[0] == 200 and '"io"' in status[1]
    assert before == scraped == set(), (before, scraped)
    assert page[0] == 200 and "<!doctype html>" in page[1].lower()
    assert state[0] == 200 and '"Z00"' in state[1]
    assert opened == HTTP_LIBRARIES
