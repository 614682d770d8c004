"""An outbox and state file on a disk that refuses every write, for root too (issue 11).

The outbox lives on a small ext4 image, loop-mounted; ``chattr +i`` on the
directory and every file in it makes them immutable (a read-only remount is
refused while SQLite holds the files). Real parts: the daemon as its own process,
Debian's mosquitto, the pymodbus module simulator with a siren on coil 0, the
center console. Root only (mount, chattr); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.runtime.state import AreaRecord
from gateway.runtime.state_store import StateStore
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.center_commands import CommandSender
from simulators.modbus_module import SimulatedModule
from tests.fault_support import (
    PANIC,
    alarms,
    loop_disk_missing,
    module,
    stored_ids,
    wait_until,
    write_config,
)
from tests.helpers import TEST_KEY
from tests.power_cut_support import Daemon

pytestmark = pytest.mark.timeout(240)

SIREN = """
[[outputs]]
id = "S1"
name = "门卫室警号"
kind = "siren"
module = "io"
channel = 0
zones = ["P10"]
duration_s = 60
"""


def _why_not() -> str | None:
    return loop_disk_missing(
        ("mkfs.ext4", "chattr", "losetup", "mount"), "mount -o loop, chattr +i"
    )


pytestmark = [pytestmark, pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


@contextlib.contextmanager
def ext4_image(tmp_path: Path) -> Any:
    """A 32 MiB ext4 image mounted on ``tmp_path/disk``; yields the mount point."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as fh:
        fh.truncate(32 << 20)
    _run("mkfs.ext4", "-q", "-F", image)
    _run("mount", "-o", "loop", image, mount)
    try:
        yield mount
    finally:
        immutable(mount, False)
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def immutable(directory: Path, on: bool) -> None:
    """``chattr +i`` (or ``-i``) on ``directory`` and every file in it."""
    paths = [directory, *(p for p in directory.iterdir() if p.name != "lost+found")]
    _run("chattr", "+i" if on else "-i", *paths)


@contextlib.asynccontextmanager
async def campus(
    tmp_path: Path, disk: Path
) -> AsyncIterator[tuple[SimulatedModule, CenterConsole, Daemon]]:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        CenterConsole(broker.host, broker.port) as center,
    ):
        config = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, heartbeat_s=1.0,
            outbox=disk / "outbox.sqlite",
        )  # fmt: skip
        with config.open("a", encoding="utf-8") as fh:
            fh.write(SIREN)
        async with Daemon(config, tmp_path) as daemon:
            yield sim, center, daemon


def faults(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [
        e for e in center.events if e["type"] == "fault.storage" and e["data"]["state"] == state
    ]


async def _panic_while_unwritable(
    sim: SimulatedModule, center: CenterConsole, daemon: Daemon
) -> float:
    """Press the panic: it reaches the center and the siren sounds within 2 s,
    ``fault.storage`` is raised within 5 s. Returns when it was pressed."""
    loop = asyncio.get_running_loop()
    pressed = loop.time()
    sim.press(PANIC[0])
    try:
        await center.wait_for(lambda: bool(alarms(center, "alarm.panic")), 2.0)
    finally:
        assert daemon.alive(), f"the daemon died: {daemon.process and daemon.process.returncode}"
    await wait_until(lambda: sim.output(0), 2.0 - (loop.time() - pressed), "siren coil on")
    await center.wait_for(lambda: bool(faults(center, "active")), 5.0)
    return pressed


async def _mended(disk: Path, center: CenterConsole) -> None:
    """``chattr -i``: without a restart every held event is stored and at the center,
    with no seq missing, and the fault clears."""
    immutable(disk, False)
    outbox = disk / "outbox.sqlite"
    await center.wait_for(lambda: bool(faults(center, "cleared")), 15)
    await center.wait_for(
        lambda: set(stored_ids(outbox, "")) == set(center.ids()) and not center.gaps, 15
    )
    panic = alarms(center, "alarm.panic")[0]
    assert panic["id"] in stored_ids(outbox, "alarm.panic")
    assert center.seq_conflicts == 0


async def _stops_while_unwritable(disk: Path, daemon: Daemon) -> None:
    """``chattr +i`` again, then SIGTERM: the daemon is gone within 10 s, cleanly."""
    immutable(disk, True)
    assert daemon.process is not None
    loop = asyncio.get_running_loop()
    asked = loop.time()
    daemon.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(daemon.process.wait(), 10)
    assert loop.time() - asked < 10
    assert code == 0, daemon.log.read_text(errors="replace")[-3000:]


async def test_an_outbox_made_unwritable_while_running(tmp_path: Path) -> None:
    with ext4_image(tmp_path) as disk:
        async with campus(tmp_path, disk) as (sim, center, daemon):
            await daemon.start()
            await center.wait_for(lambda: bool(alarms(center, "device.online")), 30)
            immutable(disk, True)
            await _panic_while_unwritable(sim, center, daemon)
            [fault] = faults(center, "active")
            assert "not permitted" in fault["data"]["reason"] or "readonly" in str(fault), fault
            await _mended(disk, center)
            await _stops_while_unwritable(disk, daemon)


async def test_an_outbox_unwritable_at_start(tmp_path: Path) -> None:
    with ext4_image(tmp_path) as disk:
        async with campus(tmp_path, disk) as (sim, center, daemon):
            await daemon.start()  # a first run makes the files, then stops cleanly
            await center.wait_for(lambda: bool(alarms(center, "device.online")), 30)
            await daemon.stop()
            [first] = alarms(center, "gateway.started")
            immutable(disk, True)
            await daemon.start()
            await center.wait_for(lambda: len(alarms(center, "gateway.started")) == 2, 30)
            second = alarms(center, "gateway.started")[1]
            assert second["stream"] != first["stream"]
            assert second["data"]["new_stream_reason"] == "unwritable at start"
            await center.wait_for(lambda: len(alarms(center, "device.online")) == 2, 10)
            await _panic_while_unwritable(sim, center, daemon)
            log = daemon.log.read_text(errors="replace")
            assert '"event": "outbox.unwritable"' in log
            await _mended(disk, center)
            await _stops_while_unwritable(disk, daemon)


_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a hot rollback journal (SQLite file format §4)

_KILLED_IN_A_TRANSACTION = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=PERSIST")
db.execute("PRAGMA cache_size=2")  # spill to the file within the transaction
db.execute("BEGIN IMMEDIATE")
db.executemany(
    "INSERT OR REPLACE INTO state (kind, key, value) VALUES ('meta', ?, ?)",
    [(str(i), '"' + 'x' * 500 + '"') for i in range(200)],
)
os._exit(0)  # killed: no commit, no rollback
"""


def hot_journal(state: Path) -> None:
    """Leave ``state`` as a kill within a commit does: a hot journal beside it."""
    subprocess.run([sys.executable, "-c", _KILLED_IN_A_TRANSACTION, str(state)], check=True)
    journal = state.with_name(state.name + "-journal")
    assert journal.read_bytes()[:8] == _JOURNAL_MAGIC, "no hot journal was left"


def digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


async def test_a_state_file_with_a_hot_journal_on_an_immutable_disk(tmp_path: Path) -> None:
    """Reading needs the journal rolled back, which needs a write: the store runs unread,
    refuses every write, and leaves both files as they were for the next start."""
    with ext4_image(tmp_path) as disk:
        state = disk / "outbox-state.sqlite"
        since = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
        async with StateStore(state) as store:
            await store.put_area("PERIM", AreaRecord(True, since, "duty-1"))
        hot_journal(state)
        journal = state.with_name(state.name + "-journal")
        before = digest(state, journal)
        immutable(disk, True)
        async with StateStore(state) as store:
            assert store.unread is not None, "the file was read after all"
            assert "readonly" in store.unread or "not permitted" in store.unread, store.unread
            assert store.areas == {}
            await store.put_area("PERIM", AreaRecord(False, since, "cmd"))  # in memory only
            assert store.unsaved == 1 and not store.areas["PERIM"].armed
        assert digest(state, journal) == before
        immutable(disk, False)
        async with StateStore(state) as store:  # the journal rolled back: armed, as before
            assert store.unread is None
            assert store.areas["PERIM"] == AreaRecord(True, since, "duty-1")


async def test_a_daemon_whose_state_file_cannot_be_read_still_carries_a_panic(
    tmp_path: Path,
) -> None:
    """Before, the daemon exited at start (systemd restarted it into the same error):
    no alarm path at all. Now: the panic within 2 s, ``fault.storage`` naming the state
    file, and the center's signed commands obeyed (the latched panic reset): changes
    act in memory, and the state file is left as it was."""
    with ext4_image(tmp_path) as disk:
        async with campus(tmp_path, disk) as (sim, center, daemon):
            await daemon.start()  # a first run makes the files, then stops cleanly
            await center.wait_for(lambda: bool(alarms(center, "device.online")), 30)
            await daemon.stop()
            state = disk / "outbox-state.sqlite"
            hot_journal(state)
            immutable(disk, True)
            await daemon.start()
            await center.wait_for(lambda: len(alarms(center, "gateway.started")) == 2, 30)
            await _panic_while_unwritable(sim, center, daemon)
            await center.wait_for(
                lambda: any(f["data"].get("path") == str(state) for f in faults(center, "active")),
                5,
            )
            [fault] = [f for f in faults(center, "active") if f["data"].get("path") == str(state)]
            assert "nothing is saved to the file in this run" in fault["data"]["reason"]
            assert '"event": "state.unread"' in daemon.log.read_text(errors="replace")
            journal = state.with_name(state.name + "-journal")
            before = digest(state, journal)
            sim.release(PANIC[0])
            async with CommandSender(
                center.host, center.port, "fault-school", "gw1", key=TEST_KEY
            ) as sender:
                results: list[dict[str, Any]] = []

                async def reset_done() -> bool:  # "still violated" until the release is polled
                    results.append(await sender.send("reset", {"zone": f"P{PANIC[0]}"}))
                    return results[-1]["status"] == "ok"

                await wait_until(reset_done, 5, f"the panic reset: {results[-1:]}")
            await center.wait_for(
                lambda: any(e["data"]["state"] == "cleared" for e in alarms(center, "alarm.panic")),
                5,
            )
            assert digest(state, journal) == before
            await _stops_while_unwritable(disk, daemon)
