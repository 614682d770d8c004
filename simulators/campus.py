"""``campus-sim campus``: the whole simulated campus in one command.

Starts, in order: a private mosquitto (unless ``--broker`` names one), a simulated
I/O module for every ``[[modules]]`` of the config on its configured address, the
modules' control endpoint, a simulated ONVIF camera for every ``[[cameras]]`` and
their control endpoint, a simulated alarm panel for every ``[[panels]]`` (NULL link
tests every 30 s over DC-09), the center console, and the gateway itself as a separate
process (``campus-gateway run``, logs to a file in the work directory). Once every
module, camera and panel is online at the center, the scenario runs; its patrol steps go
through a phone-app bridge to the config's ``network`` patrol reader. Ctrl-C (or
``--duration``) stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from pathlib import Path

from gateway.config.root import GatewayConfig, load_config
from gateway.delivery.outbox.files import lock as lock_outbox
from gateway.delivery.outbox.files import unlock
from gateway.errors import OutboxError
from simulators.broker import MosquittoBroker
from simulators.camera.cli import DEFAULT_CONTROL_PORT as DEFAULT_CAMERA_CONTROL_PORT
from simulators.camera.control import CameraControl
from simulators.camera.fleet import simulated_cameras
from simulators.center import CenterConsole
from simulators.dc09_panel import simulated_panels
from simulators.modbus_control import ControlServer
from simulators.modules import simulated_modules
from simulators.scenario import CampusDevices, Scenario, campus_devices, load_scenario, play

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "demo.toml"
DEFAULT_SCENARIO = REPO / "config" / "demo-scenario.toml"
DEFAULT_CONTROL_PORT = 15080
# The demo's private broker listens here so `campus-sim cmd` finds it without options.
DEFAULT_BROKER_PORT = 11883
DEFAULT_WORKDIR = REPO / "var" / "demo"


async def run_campus(
    *,
    config: Path = DEFAULT_CONFIG,
    scenario: Path | None = DEFAULT_SCENARIO,
    duration: float | None = None,
    events_jsonl: Path | None = None,
    broker: str | None = None,
    control_port: int = DEFAULT_CONTROL_PORT,
    camera_control_port: int = DEFAULT_CAMERA_CONTROL_PORT,
    workdir: Path | None = None,
) -> int:
    """Run the simulated campus; returns 0, or 1 when the center saw a bad event or a gap.

    Raises:
        ConfigError: bad gateway config; ValueError: bad scenario file.
    """
    cfg = load_config(config)
    steps = load_scenario(scenario) if scenario is not None else None
    work = workdir or DEFAULT_WORKDIR
    if workdir is None:  # the demo's own folder: start afresh, keep it afterwards to read
        _refuse_if_running(work)
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if broker:
            host, _, port_text = broker.rpartition(":")
            port = int(port_text)
        else:
            mosquitto = MosquittoBroker(work / "mosquitto", port=DEFAULT_BROKER_PORT)
            await stack.enter_async_context(mosquitto)
            host, port = mosquitto.host, mosquitto.port
        modules = await stack.enter_async_context(simulated_modules(cfg))
        control = ControlServer(modules, port=control_port)
        await stack.enter_async_context(control)
        cameras = await stack.enter_async_context(simulated_cameras(cfg))
        if cameras:
            await stack.enter_async_context(CameraControl(cameras, port=camera_control_port))
        panels = await stack.enter_async_context(simulated_panels(cfg))
        devices = campus_devices(cfg, modules, cameras, panels)
        if devices.app is not None:
            stack.push_async_callback(devices.app.close)
        center = CenterConsole(host, port, jsonl_path=events_jsonl, key=cfg.commands.key())
        await stack.enter_async_context(center)
        log_path = work / "gateway.log"
        gateway = await _start_gateway(config, f"{host}:{port}", work / "outbox.sqlite", log_path)
        stack.push_async_callback(_stop_process, gateway)
        center.say(
            f"CAMPUS broker {host}:{port} · modules "
            + ", ".join(f"{i}@{m.host}:{m.port}" for i, m in modules.items())
            + f" · control http://127.0.0.1:{control.port} · gateway log {log_path}"
        )
        if cfg.bench.enabled:
            center.say(f"CAMPUS bench page {bench_url(cfg)} (the technician's view)")
        if cameras or devices.app is not None or panels:
            center.say(_camera_patrol_line(devices, camera_control_port))
        tasks: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
        if duration is not None:
            tasks.append(asyncio.create_task(asyncio.sleep(duration)))
        tasks.append(asyncio.create_task(gateway.wait()))
        if steps is not None:
            tasks.append(asyncio.create_task(_scenario(center, devices, steps)))
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                center.say(f"CAMPUS scenario failed: {task.exception()}")
        if gateway.returncode is not None:
            center.say(f"CAMPUS the gateway exited with {gateway.returncode}; see {log_path}")
        center.say("CAMPUS stopping")
    center.say(f"SUMMARY {center.summary()}")
    return 0 if center.invalid == 0 and not center.gaps else 1


def bench_url(cfg: GatewayConfig) -> str:
    """Where the gateway of ``cfg`` serves its bench page."""
    host = "127.0.0.1" if cfg.bench.host in ("0.0.0.0", "") else cfg.bench.host
    return f"http://{host}:{cfg.bench.port}/"


def _camera_patrol_line(devices: CampusDevices, camera_control_port: int) -> str:
    """The console's second CAMPUS line: cameras, their control, the patrol app's target."""
    parts = []
    if devices.cameras:
        parts.append(
            "cameras "
            + ", ".join(f"{i}@{c.options.host}:{c.port}" for i, c in devices.cameras.items())
            + f" · camera control http://127.0.0.1:{camera_control_port}"
        )
    if devices.app is not None:
        parts.append(f"patrol app → gateway {devices.app.host}:{devices.app.port}")
    if devices.panels:
        parts.append(
            "DC-09 panels "
            + ", ".join(
                f"{i} (account {p.account})→{p.host}:{p.port}" for i, p in devices.panels.items()
            )
        )
    return "CAMPUS " + " · ".join(parts)


async def _scenario(center: CenterConsole, devices: CampusDevices, steps: Scenario) -> None:
    """Wait until every module, camera and panel is online at the center, then play ``steps``."""
    await center.wait_for(
        lambda: {e["subject"] for e in center.events if e["type"] == "device.online"}
        >= set(devices.modules) | set(devices.cameras) | set(devices.panels),
        30.0,
    )
    await play(steps, devices, center.say)
    await asyncio.Event().wait()  # the scenario is over; the campus keeps running


async def _start_gateway(
    config: Path, broker: str, outbox: Path, log_path: Path
) -> asyncio.subprocess.Process:
    log = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", str(config),
            "--broker", broker, "--outbox", str(outbox), "--log-json",
            stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        log.close()


def _refuse_if_running(work: Path) -> None:
    """Refuse to clear the folder of a demo that is still running (its gateway holds the lock).

    Raises:
        OSError: another demo's gateway holds ``outbox.sqlite.lock`` in ``work``.
    """
    lock = work / "outbox.sqlite.lock"
    if not lock.exists():
        return
    try:
        unlock(lock_outbox(work / "outbox.sqlite"))
    except OutboxError as exc:
        raise OSError(
            f"a demo is already running (its gateway holds {lock}); stop it first, "
            "or give this one its own --workdir and ports"
        ) from exc


async def _stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()
