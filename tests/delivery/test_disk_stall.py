"""An alarm never waits on the disk: a write lock held by another process (issue 11).

Real parts: the daemon as its own process, Debian's mosquitto, the pymodbus module
simulator, the center console, and a second process that holds ``BEGIN IMMEDIATE``
on the outbox file. GB 50394 §5.2.2 (no missed alarm), GA/T 368 (2 s).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from tests.fault_support import (
    INTRUSION,
    PANIC,
    alarms,
    daemon_process,
    module,
    stored_ids,
    toggle,
    write_config,
)

pytestmark = pytest.mark.timeout(180)

# Holds the write lock for argv[2] seconds (the fault lasts that long), says so first.
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def storage_faults(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [
        e for e in center.events if e["type"] == "fault.storage" and e["data"]["state"] == state
    ]


async def test_a_40_s_write_lock_holds_no_panic_and_is_reported(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    loop = asyncio.get_running_loop()
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        CenterConsole(broker.host, broker.port) as center,
    ):
        config = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, heartbeat_s=1.0
        )
        async with daemon_process(config, tmp_path / "daemon.log"):
            await center.wait_for(lambda: bool(alarms(center, "device.online")), 30)
            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, str(outbox), "40",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert locker.stdout is not None
            assert await locker.stdout.readline() == b"locked\n"
            locked_at = loop.time()
            sim.press(PANIC[0])
            await center.wait_for(lambda: bool(alarms(center, "alarm.panic")), 2.0)
            # Sent from memory: the file does not hold it.
            assert stored_ids(outbox, "alarm.panic") == []
            await center.wait_for(
                lambda: bool(storage_faults(center, "active")),
                5.0 - (loop.time() - locked_at),
            )
            [fault] = storage_faults(center, "active")
            assert "locked" in fault["data"]["reason"], fault
            # More of the period: the release and intrusion changes, all held.
            sim.release(PANIC[0])
            await toggle(sim, INTRUSION[:2], 4)
            await center.wait_for(
                lambda: any((h["data"].get("uncommitted") or 0) >= 1 for h in center.heartbeats),
                5,
            )
            beat = next(h for h in center.heartbeats if (h["data"].get("uncommitted") or 0) >= 1)
            assert beat["data"]["outbox_depth"] >= beat["data"]["uncommitted"]
            assert not storage_faults(center, "cleared")
            assert await locker.wait() == 0  # the lock ends
            await center.wait_for(lambda: bool(storage_faults(center, "cleared")), 15)
            # Every event of the period is in the file and at the center, no seq missing.
            await center.wait_for(
                lambda: set(stored_ids(outbox, "")) <= set(center.ids()) and not center.gaps, 15
            )
            stored = stored_ids(outbox, "")
            assert alarms(center, "alarm.panic")[0]["id"] in stored
            assert len(alarms(center, "alarm.intrusion")) == 8
            assert center.seq_conflicts == 0 and not center.gaps
            assert len({e["stream"] for e in center.events}) == 1
