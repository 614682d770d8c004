"""``…/status`` tells the truth: ``offline`` after a clean stop, a crash or a silent death.

The gateway runs as its own process (``campus-gateway run``) against a real
mosquitto; the signals are real. MQTT 5.0 §3.1.2.5 (Will), §3.1.2.10 (Keep
Alive): a broker that hears nothing for 1.5 × keepalive drops the client and
publishes its Will; with the default keepalive of 6 s that is 9 s (mosquitto
checks in whole seconds: at most 11 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiomqtt
import pytest

from simulators.broker import MosquittoBroker
from tests.fault_support import daemon_process, module, wait_until, write_config
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(120)

STATUS = "campus/v1/fault-school/gw1/status"
GATEWAY = "fault-school/gw1"


@dataclass
class StatusWatch:
    """Every message on the gateway's status topic: (monotonic time, payload, retain)."""

    seen: list[tuple[float, str, bool]] = field(default_factory=list)

    @property
    def last(self) -> str | None:
        return self.seen[-1][1] if self.seen else None

    def since(self, t: float, payload: str) -> float | None:
        """Seconds after ``t`` when ``payload`` first came at or after ``t``, or None."""
        return next((at - t for at, text, _ in self.seen if at >= t and text == payload), None)


@contextlib.asynccontextmanager
async def watch_status(broker: MosquittoBroker) -> AsyncIterator[StatusWatch]:
    watch = StatusWatch()
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(STATUS, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = bytes(message.payload).decode()  # type: ignore[arg-type]
                watch.seen.append((time.monotonic(), payload, bool(message.retain)))

        task = asyncio.create_task(collect())
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def retained_status(broker: MosquittoBroker) -> str:
    """The retained status a new subscriber gets."""
    async with watch_status(broker) as watch:
        await wait_until(lambda: watch.seen, 5, "a retained status")
    _, payload, retain = watch.seen[0]
    assert retain
    return payload


def _timed_out_at(broker: MosquittoBroker) -> float | None:
    """When (UNIX s, whole seconds) the broker dropped a client for its keepalive, or None."""
    for line in broker.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "has exceeded timeout" in line:
            stamp = line.split(": ", 1)[0]
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timestamp()
    return None


async def test_sigterm_leaves_a_retained_offline(tmp_path: Path) -> None:
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with watch_status(broker) as watch:
            async with daemon_process(config, tmp_path / "daemon.log") as daemon:
                await wait_until(lambda: watch.last == "online", 20, "online")
                daemon.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(daemon.wait(), 15) == 0
            await wait_until(lambda: watch.last == "offline", 5, "offline published")
        assert await retained_status(broker) == "offline"
        log = (tmp_path / "daemon.log").read_text()
        assert "uplink.goodbye_failed" not in log


async def test_after_sigkill_offline_arrives_at_once(tmp_path: Path) -> None:
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with (
            watch_status(broker) as watch,
            daemon_process(config, tmp_path / "daemon.log") as daemon,
        ):
            await wait_until(lambda: watch.last == "online", 20, "online")
            killed = time.monotonic()
            daemon.send_signal(signal.SIGKILL)
            await wait_until(lambda: watch.since(killed, "offline") is not None, 15, "Last Will")
        assert await retained_status(broker) == "offline"


async def test_a_frozen_gateway_is_declared_offline_within_15_s(tmp_path: Path) -> None:
    """SIGSTOP: the socket stays open and says nothing; only the keepalive can tell."""
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with (
            watch_status(broker) as watch,
            daemon_process(config, tmp_path / "daemon.log") as daemon,
        ):
            await wait_until(lambda: watch.last == "online", 20, "online")
            frozen, frozen_wall = time.monotonic(), time.time()
            daemon.send_signal(signal.SIGSTOP)
            try:
                await wait_until(
                    lambda: watch.since(frozen, "offline") is not None, 30, "Last Will"
                )
            finally:
                daemon.send_signal(signal.SIGCONT)
            # Timed by the broker's own log (whole seconds, rounded up), not by when this
            # loaded test process got round to reading the Will.
            dropped = _timed_out_at(broker)
            assert dropped is not None, broker.log_tail()
            assert dropped + 1 - frozen_wall <= 15.0, dropped - frozen_wall
            # Woken up, it finds its connection gone, reconnects and says so.
            await wait_until(lambda: watch.last == "online", 30, "online again")


async def test_the_console_declares_a_frozen_gateways_path_down_within_30_s_and_up_after(
    tmp_path: Path,
) -> None:
    """Issue 10 item 6: 3 x heartbeat_s (10 s by default) without a heartbeat is a path
    down at the center, whatever the broker says; the next heartbeat brings it up."""
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with (
            signed_center(broker.host, broker.port, out=io.StringIO()) as console,
            daemon_process(config, tmp_path / "daemon.log") as daemon,
        ):
            await console.wait_for(lambda: console.paths.get(GATEWAY) == "up", 30)
            frozen = time.monotonic()
            daemon.send_signal(signal.SIGSTOP)
            try:
                await console.wait_for(lambda: console.paths[GATEWAY] == "down", 40)
                down_after = time.monotonic() - frozen
            finally:
                daemon.send_signal(signal.SIGCONT)
            # The last heartbeat may reach the console a moment after the freeze.
            assert 20.0 <= down_after <= 30.5
            await console.wait_for(lambda: console.paths[GATEWAY] == "up", 30)
        assert isinstance(console.out, io.StringIO)
        text = console.out.getvalue()
        assert text.count(f"PATH down {GATEWAY}") == 1 and text.count(f"PATH up {GATEWAY}") == 2
