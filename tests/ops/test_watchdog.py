"""The systemd watchdog: ``WATCHDOG=1`` only while the rules (and the rest) make progress.

systemd's side is played by the test: a Unix datagram socket named in
``NOTIFY_SOCKET`` (what sd_notify(3) writes to) and ``WATCHDOG_USEC``. The
gateway runs in-process against real mosquitto and a simulated module.

How the rules are stalled: the rules task's step (``AlarmSystem.observe``) is
replaced, on that one gateway object, by one that waits for an event the test
holds, i.e. a lost wake-up, the hang a watchdog exists for. Everything else is
the real daemon: the real rules task pulls a real observation from a real module
poll and then hangs inside it. A lock held on the outbox file would not do: the
rules would then wait on the disk, which is deliberately *not* a stall (the
outbox keeps those alarms in memory and retries; a restart would lose them),
and :func:`test_rules_waiting_on_a_locked_outbox_is_not_a_stall` shows that.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.daemon import Gateway, running
from gateway.events.observation import Observation
from simulators.broker import MosquittoBroker
from tests.fault_support import PANIC, module, wait_until
from tests.ops_support import ops_config

pytestmark = pytest.mark.timeout(90)

PERIOD_USEC = 400_000  # pings every 0.2 s
STALL_S = 1.0


class NotifySocket:
    """The systemd end of sd_notify: collects every datagram the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def start(self) -> None:
        """Read datagrams as they come (a reader on the test's event loop)."""
        asyncio.get_running_loop().add_reader(self.sock, self._read)

    def _read(self) -> None:
        now = asyncio.get_running_loop().time()
        while True:
            try:
                self.messages.append((now, self.sock.recv(4096).decode()))
            except BlockingIOError:
                return

    def drain(self) -> list[tuple[float, str]]:
        return self.messages

    def pings_since(self, t: float) -> int:
        return sum(1 for at, m in self.drain() if at >= t and m == "WATCHDOG=1")

    def saw(self, text: str) -> bool:
        return any(m == text for _, m in self.drain())


@pytest.fixture
async def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    sock.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(PERIOD_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().remove_reader(sock.sock)
    sock.sock.close()


@contextlib.asynccontextmanager
async def campus(tmp_path: Path) -> AsyncIterator[tuple[Gateway, object]]:
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        path, _ = ops_config(
            tmp_path, broker_port=broker.port, module_port=sim.port,
            extra=f"\n[watchdog]\nstall_s = {STALL_S}\n",
        )  # fmt: skip
        async with running(load_config(path)) as gateway:
            yield gateway, sim


async def _pinging(notify: NotifySocket) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wait_until(lambda: notify.pings_since(start) >= 3, 5, "WATCHDOG=1 pings")


async def test_a_stalled_rules_task_stops_the_watchdog(
    tmp_path: Path, notify: NotifySocket
) -> None:
    async with campus(tmp_path) as (gateway, sim):
        assert gateway.alarm is not None and gateway.watchdog is not None
        await wait_until(lambda: notify.saw("READY=1"), 5, "READY=1")
        await _pinging(notify)

        release = asyncio.Event()
        entered = asyncio.Event()

        async def hung_observe(obs: Observation) -> None:
            entered.set()
            await release.wait()  # the lost wake-up

        gateway.alarm.observe = hung_observe  # type: ignore[method-assign]
        sim.set_input(PANIC[0], closed=True)  # a real poll brings a real observation
        await asyncio.wait_for(entered.wait(), 5)
        await wait_until(lambda: notify.saw("STATUS=stalled: rules"), STALL_S + 3, "stall said")
        silent_from = asyncio.get_running_loop().time()
        await asyncio.sleep(4 * PERIOD_USEC / 1e6)  # two whole watchdog periods
        assert notify.pings_since(silent_from) == 0, "pinged while the rules were stalled"
        assert gateway.watchdog.withheld > 0

        release.set()  # the rules move again: the pings come back
        await wait_until(lambda: notify.saw("STATUS=running"), 5, "recovery said")
        await _pinging(notify)


async def test_rules_waiting_on_a_locked_outbox_is_not_a_stall(
    tmp_path: Path, notify: NotifySocket
) -> None:
    async with campus(tmp_path) as (gateway, sim):
        assert gateway.outbox is not None
        await wait_until(lambda: notify.saw("READY=1"), 5, "READY=1")
        await _pinging(notify)
        # A technician's sqlite3 shell holding a write transaction on the outbox.
        with contextlib.closing(sqlite3.connect(gateway.outbox.path, timeout=0)) as shell:
            shell.execute("BEGIN EXCLUSIVE")
            failures = gateway.outbox.stats.commit_failures
            sim.set_input(PANIC[0], closed=True)
            await wait_until(  # SQLite's busy timeout: 5 s per attempt
                lambda: gateway.outbox.stats.commit_failures > failures, 15, "commits failing"
            )
            start = asyncio.get_running_loop().time()
            await asyncio.sleep(STALL_S + 1.0)
            assert gateway.progress is not None and gateway.progress.stalled() == []
            assert notify.pings_since(start) >= 3, "a storage fault must not stop the watchdog"
            shell.rollback()
        await wait_until(lambda: gateway.rules_done > 0, 15, "the panic stored once the lock went")
