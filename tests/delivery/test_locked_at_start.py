"""A start while another process holds an exclusive lock on the outbox (issue 11).

The file cannot even be read: the daemon still starts its devices, sends a panic
from memory, obeys SIGTERM, and never gives a seq twice. Real parts: the daemon
as its own process, a second process holding ``BEGIN EXCLUSIVE``, mosquitto, the
module simulator, the center console.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from tests.fault_support import PANIC, alarms, module, wait_until, write_config
from tests.power_cut_support import Daemon

pytestmark = pytest.mark.timeout(180)

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # held until the test says so
db.execute("ROLLBACK")
"""


async def test_a_start_on_a_locked_outbox_sends_from_memory_and_stops(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    loop = asyncio.get_running_loop()
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        CenterConsole(broker.host, broker.port) as center,
    ):
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with Daemon(config, tmp_path) as daemon:
            await daemon.start()  # a first run makes the file and stops cleanly
            await center.wait_for(lambda: bool(alarms(center, "device.online")), 30)
            await daemon.stop()
            [first] = alarms(center, "gateway.started")

            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, str(outbox),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert locker.stdin is not None and locker.stdout is not None
            assert await locker.stdout.readline() == b"locked\n"
            try:
                process = await daemon.start()
                await center.wait_for(lambda: len(alarms(center, "device.online")) == 2, 30)
                second = alarms(center, "gateway.started")[1]
                assert second["data"]["new_stream_reason"] == "unreadable at start"
                pressed = loop.time()
                sim.press(PANIC[0])
                await center.wait_for(lambda: bool(alarms(center, "alarm.panic")), 2.0)
                assert loop.time() - pressed < 2.0
                asked = loop.time()
                process.send_signal(signal.SIGTERM)  # while the disk is locked
                assert await asyncio.wait_for(process.wait(), 10) == 0
                assert loop.time() - asked < 10
                log = daemon.log.read_text(errors="replace")
                assert '"event": "outbox.unreadable"' in log
                assert '"event": "outbox.closed_with_held_rows"' in log
            finally:
                locker.stdin.write(b"go\n")
                await locker.stdin.drain()
                await locker.wait()

            # The lock is gone: the old stream carries on (the second run's stream was
            # never written, so none of its seqs can come back). What the second run
            # held is stored from its spill and goes again, its own stream and seq kept.
            [panic] = alarms(center, "alarm.panic")
            await daemon.start()
            await center.wait_for(lambda: len(alarms(center, "gateway.started")) == 3, 30)
            third = alarms(center, "gateway.started")[2]
            assert third["stream"] == first["stream"] != second["stream"]
            await center.wait_for(lambda: center.copies[panic["id"]] == 2, 10)
            again = [e for e in alarms(center, "alarm.panic") if e["id"] == panic["id"]]
            assert {(e["stream"], e["seq"]) for e in again} == {(panic["stream"], panic["seq"])}
            assert '"event": "outbox.spill_restored"' in daemon.log.read_text(errors="replace")
            await wait_until(lambda: not center.gaps, 10, f"no seq missing: {center.gaps}")
            assert center.seq_conflicts == 0
