"""The outbox under pressure: a full cap, a huge backlog, a full disk, a corrupt file.

Real SQLite files, a real tmpfs filled to the last byte (root only), Debian's
mosquitto, the pymodbus simulator, the center console. GB 50394 §5.2.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from structlog.testing import capture_logs

from gateway.daemon import running
from gateway.delivery.outbox import Outbox
from gateway.delivery.outbox.reads import _REREAD_S
from gateway.events.model import EventFactory
from simulators.broker import MosquittoBroker
from tests.fault_support import (
    PANIC,
    alarms,
    campus_config,
    module,
    stored_ids,
    stored_states,
    wait_until,
)
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(240)

TELEMETRY = EventFactory("campus/fault-school/gw1", lambda: False)


async def _fill_telemetry(outbox: Outbox, count: int, batch: int = 500) -> None:
    """``count`` priority-5 events, as a chatty telemetry source would make them."""
    for start in range(0, count, batch):
        await asyncio.gather(
            *(
                outbox.append(
                    TELEMETRY.make(
                        "camera.status",  # priority 5 (a real heartbeat is never stored)
                        device="cam1",
                        subject="cam1",
                        state="instant",
                        data={"sample": i},
                    )
                )
                for i in range(start, min(start + batch, count))
            )
        )


async def _center_session_then_broker_down(broker: MosquittoBroker) -> None:
    await broker.start()
    async with signed_center(broker.host, broker.port, identifier="c", persistent=True):
        pass
    await broker.stop()


async def test_full_outbox_sheds_telemetry_and_keeps_every_panic(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    await _center_session_then_broker_down(broker)
    async with module() as sim:
        cfg = campus_config(
            tmp_path,
            broker_port=broker.port,
            module_port=sim.port,
            max_rows=1000,
            alarm_reserve_rows=100,
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.outbox is not None and gateway.engine is not None
            outbox, poller = tmp_path / "outbox.sqlite", gateway.pollers["io"]

            def panics(state: str) -> int:
                return stored_states(outbox, "alarm.panic").count(state)

            await wait_until(lambda: None not in poller.inputs, 10, "module read")
            await _fill_telemetry(gateway.outbox, 2500)
            for channel in PANIC:  # six panics
                sim.press(channel)
            await wait_until(lambda: panics("active") == 6, 10, "six panics stored")
            await _fill_telemetry(gateway.outbox, 2500)
            for channel in PANIC:
                sim.release(channel)
            await wait_until(
                lambda: not any(poller.inputs[c] for c in PANIC), 10, "releases polled"
            )
            for channel in PANIC[:4]:  # reset, then four more panics: ten in all
                assert await gateway.engine.reset(f"P{channel}")
                sim.press(channel)
            await wait_until(lambda: panics("active") == 10, 10, "ten panics stored")
            assert panics("cleared") == 4
            assert gateway.outbox.stats.rows <= 1000
            await broker.start()
            async with signed_center(
                broker.host, broker.port, identifier="c", persistent=True
            ) as center:

                def pressed() -> list[dict]:
                    return [
                        e for e in alarms(center, "alarm.panic") if e["data"]["state"] == "active"
                    ]

                await wait_until(lambda: len(pressed()) == 10, 20, "all ten panics")
                await wait_until(
                    lambda: alarms(center, "gateway.buffer_shed"), 10, "a buffer_shed report"
                )
                for _ in range(200):  # the backlog drains without a restart
                    if await gateway.outbox.pending_count() == 0:
                        break
                    await asyncio.sleep(0.1)
                assert await gateway.outbox.pending_count() == 0

                def reported() -> int:
                    return sum(e["data"]["shed"] for e in alarms(center, "gateway.buffer_shed"))

                # A shed is reported within a second of it, so the last report can
                # be made after the backlog has drained: wait for it.
                shed_total = gateway.outbox.stats.shed_total
                await wait_until(
                    lambda: reported() == shed_total, 10, f"reports of all {shed_total} shed"
                )
            shed = alarms(center, "gateway.buffer_shed")
            total = sum(e["data"]["shed"] for e in shed)
            assert total == shed_total >= 4000
            assert set().union(*(e["data"]["by_priority"] for e in shed)) <= {"4", "5"}
            assert sum(e["data"]["undelivered"] for e in shed) == total
    await broker.stop()


async def test_live_panic_overtakes_a_100000_event_backlog(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    await broker.start()
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="counter", clean_session=False
    ) as sub:
        await sub.subscribe("campus/v1/+/+/events/#", qos=1)
    await broker.stop()
    async with module() as sim:
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.outbox is not None
            await _fill_telemetry(gateway.outbox, 100_000, batch=2000)
            await broker.start()
            uplink = gateway.uplink
            assert uplink is not None

            async def press_mid_drain() -> None:
                # Pressed once the gateway has sent 5,000 rows: the subscriber here may
                # lag far behind a drain (it shares this process), so its count is not
                # where the drain is.
                await wait_until(lambda: uplink.stats.published >= 5000, 60, "5,000 sent")
                sim.press(PANIC[0])

            received = 0
            panic_at: int | None = None
            async with (
                aiomqtt.Client(
                    broker.host, broker.port, identifier="counter", clean_session=False
                ) as sub,
                asyncio.TaskGroup() as tg,
            ):
                tg.create_task(press_mid_drain())
                await sub.subscribe("campus/v1/+/+/events/#", qos=1)
                async with asyncio.timeout(200):
                    async for message in sub.messages:
                        received += 1
                        if message.topic.matches("campus/v1/+/+/events/alarm/panic"):
                            assert isinstance(message.payload, bytes)
                            assert json.loads(message.payload)["data"]["state"] == "active"
                            panic_at = received
                            break
            # One publisher, one subscriber, QoS 1: the broker delivers in the order it
            # accepted, so ``panic_at`` is how many rows the gateway sent before it.
            assert panic_at is not None
            assert panic_at < 90_000, "the panic came only after most of the backlog"
    await broker.stop()


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("filling a size-limited filesystem needs root to mount a tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill_disk(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\xff" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


async def test_disk_full_keeps_alarms_and_raises_a_storage_fault(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "disk", "6m") as disk:
        async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
            cfg = campus_config(
                tmp_path / "cfg",
                broker_port=broker.port,
                module_port=sim.port,
                ballast_mb=1,
            )
            outbox_path = disk / "outbox.sqlite"
            async with (
                signed_center(broker.host, broker.port) as center,
                running(cfg, outbox_path=outbox_path) as gateway,
            ):
                assert gateway.outbox is not None
                assert (disk / "outbox.sqlite.ballast").exists()
                _fill_disk(disk)
                started = time.monotonic()
                await _fill_telemetry(gateway.outbox, 3000, batch=100)
                assert gateway.outbox.stats.disk_full >= 1
                for channel in PANIC:
                    sim.press(channel)
                await wait_until(
                    lambda: len(alarms(center, "alarm.panic")) == len(PANIC), 20, "every panic"
                )
                await wait_until(
                    lambda: alarms(center, "fault.storage"), 10, "a storage fault event"
                )
                fault = alarms(center, "fault.storage")[0]
                assert fault["data"]["state"] == "active" and "disk full" in fault["data"]["reason"]
                assert not (disk / "outbox.sqlite.ballast").exists()
                assert time.monotonic() - started < 60
                assert gateway.outbox.stats.commit_failures >= 1
                sim.release(PANIC[0])
                sim.press(PANIC[0])  # still latched: no new alarm, and no crash either
                await asyncio.sleep(0.3)
                assert len(alarms(center, "alarm.panic")) == len(PANIC)


async def test_a_start_on_a_full_disk_reads_the_file_again_only_after_a_pause(
    tmp_path: Path,
) -> None:
    """No outbox file yet and no byte free: its tables cannot be made, so every read
    of it fails. The panic still goes, and the uplink reads the file again once per
    ``_REREAD_S``, logging the failure once (review of 2026-12-04: it read again at
    once, 5,800 times a second, a core and 22 MB of log in 25 s)."""
    with _small_tmpfs(tmp_path / "disk", "2m") as disk:
        _fill_disk(disk)
        async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
            cfg = campus_config(tmp_path / "cfg", broker_port=broker.port, module_port=sim.port)
            with capture_logs() as logs:
                async with (
                    signed_center(broker.host, broker.port) as center,
                    running(cfg, outbox_path=disk / "outbox.sqlite") as gateway,
                ):
                    assert gateway.outbox is not None
                    outbox = gateway.outbox
                    sim.press(PANIC[0])
                    await wait_until(lambda: alarms(center, "alarm.panic"), 20, "the panic")
                    await wait_until(lambda: outbox.read_failures > 0, 10, "a failed read")
                    before = outbox.read_failures
                    await asyncio.sleep(3.0)  # the window the reads are counted over
                    during = outbox.read_failures - before
    assert during <= 3.0 / _REREAD_S + 3, during
    assert sum(1 for e in logs if e["event"] == "outbox.read_failed") == 1


async def test_corrupt_outbox_is_quarantined_and_a_new_stream_begins(tmp_path: Path) -> None:
    outbox_path = tmp_path / "outbox.sqlite"
    garbage = b"this is not a database, it is what a power cut left behind\n" * 200
    outbox_path.write_bytes(garbage)
    # The journal a persistent-journal file keeps between commits (header zeroed).
    journal = bytes(512) + b"pages of the corrupt file, not of a new one\n" * 20
    Path(f"{outbox_path}-journal").write_bytes(journal)
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=outbox_path) as gateway:
            assert gateway.outbox is not None
            await wait_until(lambda: alarms(center, "fault.storage"), 10, "storage fault")
            fault = alarms(center, "fault.storage")[0]
            moved = Path(fault["data"]["moved_to"])
            assert moved.read_bytes() == garbage  # kept for a technician, not deleted
            assert Path(f"{moved}-journal").read_bytes() == journal  # moved with it
            assert fault["data"]["stream"] == gateway.outbox.stream
            # gateway.started (priority 4) may come after the fault (priority 3).
            await wait_until(lambda: alarms(center, "gateway.started"), 10, "gateway.started")
            started = alarms(center, "gateway.started")[0]
            assert started["seq"] == 1 and started["stream"] == gateway.outbox.stream
            sim.press(PANIC[0])
            await wait_until(lambda: alarms(center, "alarm.panic"), 5, "the daemon runs on")


async def test_a_stalled_disk_does_not_make_the_poller_miss_contact_changes(
    tmp_path: Path,
) -> None:
    """Another process (a backup tool, say) holds the database's write lock for 1.5 s:
    commits wait, but polling goes on and every transition is stored afterwards."""
    import sqlite3

    broker = MosquittoBroker(tmp_path / "broker")  # never started: nothing is sent
    async with module() as sim:
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        outbox_path = tmp_path / "outbox.sqlite"
        async with running(cfg, outbox_path=outbox_path) as gateway:
            assert gateway.outbox is not None
            poller = gateway.pollers["io"]
            await wait_until(lambda: None not in poller.inputs, 5, "module read")
            await wait_until(lambda: stored_ids(outbox_path, "device.online"), 10, "online")
            blocker = sqlite3.connect(outbox_path, timeout=5)
            blocker.execute("BEGIN IMMEDIATE")  # the write lock, held
            try:
                for _ in range(8):  # 8 transitions while commits cannot happen
                    closed = not sim.inputs[4]
                    sim.set_input(4, closed=closed)
                    # The poller goes on reading and reports each one (a poller waiting
                    # for the disk would not): the next flip only once this one is seen.
                    await wait_until(lambda c=closed: poller.inputs[4] is c, 5, "flip polled")
            finally:
                blocker.rollback()
                blocker.close()
            await wait_until(
                lambda: len(stored_ids(outbox_path, "alarm.intrusion")) >= 8, 15, "8 stored"
            )
            assert len(stored_ids(outbox_path, "alarm.intrusion")) == 8
            assert gateway.dropped_observations == 0
