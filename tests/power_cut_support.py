"""The gateway as its own process, SIGKILLed and started again on the same files.

:class:`Daemon` runs ``campus-gateway run CONFIG`` (the real command line, the
real files), kills it with SIGKILL at the test's chosen moment — a power cut, or
the watchdog — and starts it again on the same config, outbox and state store.
:func:`site_toml` writes the common part of a config; each test adds its
devices as TOML text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from gateway.config.modbus_profiles import PROFILES
from simulators.broker import MosquittoBroker
from simulators.camera.server import CameraOptions, SimulatedCamera
from simulators.center import CenterConsole
from simulators.center_commands import CommandSender
from simulators.modbus_module import SimulatedModule
from tests.camera_support import PictureReceiver, picture_receiver
from tests.helpers import REPO_ROOT, TEST_KEY, TEST_KEY_FILE, signed_center

T = TypeVar("T")


def site_toml(tmp_path: Path, broker_port: int, *, site: str = "cut-school") -> str:
    """``[site]``, ``[broker]``, ``[outbox]`` (in ``tmp_path``), ``[commands]`` (signed)."""
    key = TEST_KEY_FILE
    return f"""
[site]
id = "{site}"
gateway = "gw1"
name = "断电测试学校"
timezone = "Asia/Shanghai"

[broker]
host = "127.0.0.1"
port = {broker_port}
reconnect_min = 0.1
reconnect_max = 1.0

[outbox]
path = "{tmp_path / "outbox.sqlite"}"

[commands]
hmac_key_file = "{key}"

[logging]
level = "info"

[metrics]
port = 0

[bench]
port = 0
"""


def write_toml(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as ``tmp_path/gateway.toml``; returns its path."""
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    """``campus-gateway run CONFIG`` as a process: start, SIGKILL, start again.

    ``async with Daemon(config, tmp_path) as daemon`` starts nothing; call
    :meth:`start`. On exit a running daemon gets SIGTERM (then SIGKILL). ``env``
    adds to the process' environment (``LD_PRELOAD`` of libfaketime).

    Attributes:
        starts: processes started so far.
        log: the log file of the current (or last) process.
    """

    def __init__(self, config: Path, directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.directory = directory
        self.env = dict(env or {})
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log = directory / "daemon-0.log"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, log: Path | None = None) -> asyncio.subprocess.Process:
        """Start a new process on the same config (the last one must be gone); it logs
        to ``log`` (``daemon-<n>.log`` in the directory when omitted)."""
        assert self.process is None or self.process.returncode is not None
        self.starts += 1
        self.log = log or self.directory / f"daemon-{self.starts}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **self.env}
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", str(self.config), "--log-json",
                stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, env=env,
            )  # fmt: skip
        return self.process

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no flush — what a power cut leaves is what is on disk."""
        process = self.process
        assert process is not None and process.returncode is None, "not running"
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


async def retry(
    action: Callable[[], Awaitable[T]],
    errors: tuple[type[Exception], ...],
    within: float,
    daemon: Daemon | None = None,
) -> T:
    """``await action()`` until it does not raise one of ``errors`` (a listener not up
    yet), every 100 ms; the last error when ``within`` seconds pass.

    Raises:
        AssertionError: ``daemon`` died meanwhile (its log is quoted).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await action()
        except errors:
            if daemon is not None and not daemon.alive():
                tail = daemon.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the daemon died:\n{tail}") from None
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.1)


MODULE = """
[[modules]]
id = "io"
name = "测试模块"
transport = {{ type = "tcp", host = "127.0.0.1", port = {module_port} }}
profile = "generic"
poll_interval_ms = 20
timeout_ms = 200
offline_after = 5
"""
"""The 16-input module ``io`` of the test campuses, fast polling (format ``module_port``)."""

MODULE_ZONES = (
    MODULE
    + """
[[areas]]
id = "PERIM"
name = "周界"
initial = "{perim}"

[[zones]]
id = "Z01"
name = "南围墙红外对射"
type = "perimeter"
module = "io"
input = 1
area = "PERIM"

[[zones]]
id = "Z02"
name = "东围墙红外对射"
type = "perimeter"
module = "io"
input = 2
area = "PERIM"

[[zones]]
id = "P10"
name = "门卫室一键报警"
type = "panic"
module = "io"
input = 10
"""
)
"""One 16-input module ``io``: perimeter zones ``Z01``/``Z02`` (inputs 1, 2) in area
``PERIM``, panic ``P10`` (input 10)."""


def module_toml(module_port: int, *, perim: str = "armed") -> str:
    """:data:`MODULE_ZONES` on ``module_port``, area ``PERIM`` first ``perim``."""
    return MODULE_ZONES.format(module_port=module_port, perim=perim)


class Site:
    """A running module site: the module, the center, signed commands, the daemon process.

    Attributes:
        module: the simulated 16-input module ``io``.
        center: the center console (acks every event).
        sender: signed commands with the site key (site ``cut-school``, gateway ``gw1``).
        daemon: the gateway process (not started by :func:`module_site`).
        outbox: the outbox file.
    """

    def __init__(
        self,
        module: SimulatedModule,
        center: CenterConsole,
        sender: CommandSender,
        daemon: Daemon,
        outbox: Path,
    ) -> None:
        self.module, self.center, self.sender, self.daemon = module, center, sender, daemon
        self.outbox = outbox

    def of(self, type_: str, subject: str, state: str | None = None) -> list[dict[str, Any]]:
        """The center's events of ``type_`` about ``subject`` (with ``data.state``)."""
        return [
            e
            for e in self.center.events
            if e["type"] == type_ and e["subject"] == subject
            and state in (None, e["data"].get("state"))
        ]  # fmt: skip

    async def result(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A signed command's whole result (retried while the daemon is not subscribed)."""
        return await retry(
            lambda: self.sender.send(name, params, timeout_s=2.0), (TimeoutError,), 30, self.daemon
        )

    async def ok(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A signed command that must succeed; its result's ``data``."""
        result = await self.result(name, params)
        assert result["status"] == "ok", result
        data: dict[str, Any] = result["data"]
        return data

    async def restart_after_sigkill(self) -> dict[str, Any]:
        """SIGKILL now, start again; returns ``get_state`` of the new process."""
        await self.daemon.kill()
        await self.daemon.start()
        return await self.ok("get_state")


@contextlib.asynccontextmanager
async def module_site(
    broker: MosquittoBroker, tmp_path: Path, devices: Callable[[int], str]
) -> AsyncIterator[Site]:
    """:func:`site_toml` and ``devices(module port)`` (TOML: the module ``io`` and its
    zones, e.g. :func:`module_toml`) on a simulated generic module, as a TOML file and
    a :class:`Daemon` (not started), with the center around it; stopped on exit."""
    async with SimulatedModule(PROFILES["generic"]) as module:
        config = write_toml(tmp_path, site_toml(tmp_path, broker.port) + devices(module.port))
        async with (
            signed_center(broker.host, broker.port) as center,
            CommandSender(broker.host, broker.port, "cut-school", "gw1", key=TEST_KEY) as sender,
            Daemon(config, tmp_path) as daemon,
        ):
            yield Site(module, center, sender, daemon, tmp_path / "outbox.sqlite")


def camera_toml(
    camera_id: str, port: int, password_file: Path, *, area: str | None = None, **snapshot: Any
) -> str:
    """A ``[[cameras]]`` entry on 127.0.0.1 with fast timings; ``snapshot`` keys go to
    its ``snapshot`` table (strings quoted)."""
    table = ", ".join(
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {str(v).lower()}"
        for k, v in snapshot.items()
    )
    return f"""
[[cameras]]
id = "{camera_id}"
name = "摄像机 {camera_id}"
location = "test bench"
host = "127.0.0.1"
port = {port}
username = "admin"
password_file = "{password_file}"
pull_timeout_s = 1.0
request_timeout_s = 3.0
soap_min_interval_ms = 0
offline_after = 2
backoff_cap_s = 1.0
{f'area = "{area}"' if area else ""}
snapshot = {{ {table} }}
"""


@dataclass
class Campus:
    """A running test campus: the module, a camera, the center's three parts, the daemon.

    Attributes:
        module: the simulated 16-input module (:data:`MODULE_ZONES`).
        camera: the simulated camera (its id is the camera's id in the config).
        center: the center console (acks every event).
        pictures: every JPEG on ``…/snapshots/#``.
        sender: signed commands with the site key.
        daemon: the gateway process (not started yet).
        outbox: the outbox file.
    """

    module: SimulatedModule
    camera: SimulatedCamera
    center: CenterConsole
    pictures: PictureReceiver
    sender: CommandSender
    daemon: Daemon
    outbox: Path

    def of(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        """The center's events of ``type_`` (and ``subject``), in arrival order."""
        return [
            e for e in self.center.events if e["type"] == type_ and subject in (None, e["subject"])
        ]

    def camera_online(self) -> bool:
        """The camera is online (subscribed when it has events: what it sees is reported)."""
        return bool(self.of("device.online", self.camera.options.camera_id))


@contextlib.asynccontextmanager
async def camera_campus(
    broker: MosquittoBroker,
    tmp_path: Path,
    camera: CameraOptions,
    *,
    area: str | None = None,
    linked: str | None = None,
    perim: str = "armed",
    **snapshot: Any,
) -> AsyncIterator[Campus]:
    """The test campus (:data:`MODULE_ZONES`) with one camera, as a TOML file and a
    :class:`Daemon`, and the center around it; the daemon is stopped on exit.

    Args:
        broker: the mosquitto the gateway and the center use.
        tmp_path: where the config, outbox and logs go.
        camera: the simulated camera's options (its id and password are the config's).
        area: the area the camera watches.
        linked: a zone whose alarms take a picture from the camera.
        perim: the first arming state of area ``PERIM``.
        snapshot: the camera's ``snapshot`` table.
    """
    secret = tmp_path / "cam.password"
    secret.write_text(camera.password + "\n", encoding="utf-8")
    cam_id = camera.camera_id
    async with (
        SimulatedModule(PROFILES["generic"]) as module,
        SimulatedCamera(camera) as cam,
    ):
        text = (
            site_toml(tmp_path, broker.port)
            + module_toml(module.port, perim=perim)
            + camera_toml(cam_id, cam.port, secret, area=area, **snapshot)
        )
        if linked is not None:
            text += f'\n[[linkage]]\nzone = "{linked}"\ncameras = ["{cam_id}"]\n'
        config = write_toml(tmp_path, text)
        async with (
            signed_center(broker.host, broker.port) as center,
            picture_receiver(broker.host, broker.port, f"pictures-{cam_id}") as pictures,
            CommandSender(broker.host, broker.port, "cut-school", "gw1", key=TEST_KEY) as sender,
            Daemon(config, tmp_path) as daemon,
        ):
            yield Campus(module, cam, center, pictures, sender, daemon, tmp_path / "outbox.sqlite")
