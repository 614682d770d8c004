"""Networked readers (live JSON lines) and handheld batch uploads, over real sockets.

The simulated phone app and handheld (``simulators.patrol_readers``) are the
clients; the gateway's listeners are the servers. A guard walks a round on a
controllable clock (``simulators.patrol_guard``) and the tour engine judges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.patrol_reader.handheld import HandheldReader
from drivers.patrol_reader.lines import Cfg, LineReader
from drivers.patrol_reader.network import NetworkReader
from gateway.config.patrol import HandheldReaderConfig, NetworkReaderConfig
from gateway.events.patrol_observation import ReaderBattery
from simulators.patrol_guard import PatrolDevices, Walk, walk_round
from simulators.patrol_readers import Handheld, PhoneApp
from tests.fault_support import wait_until
from tests.helpers import REPO_ROOT, free_port
from tests.patrol_support import (
    GUARD_CARD,
    NIGHT,
    TAGS,
    TZ,
    EventLog,
    FakeClock,
    Sink,
    make_engine,
    night_config,
    running,
)

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def listening(reader: LineReader[Any]) -> AsyncIterator[None]:
    """``reader`` serving for the block, from the moment it listens."""
    async with running(reader.run, reader.device_id):
        await reader.ready.wait()
        yield


def reader_cfg(model: type[Cfg], **fields: Any) -> Cfg:
    """A network or handheld reader config listening on a free local port."""
    raw: dict[str, Any] = {"id": "r1", "listen": {"host": "127.0.0.1", "port": free_port()}}
    raw["type"] = "network" if model is NetworkReaderConfig else "handheld"
    raw.update(fields)
    return model.model_validate(raw)


def network_cfg() -> NetworkReaderConfig:
    return reader_cfg(NetworkReaderConfig, id="app", offline_after_s=0.3)


def handheld_cfg(**fields: Any) -> HandheldReaderConfig:
    return reader_cfg(HandheldReaderConfig, id="wand", device_number=7, guard="G1", **fields)


async def test_network_reader_acks_each_line_after_the_sink_took_it() -> None:
    sink, cfg = Sink(), network_cfg()
    reader = NetworkReader(cfg, sink, TZ)
    app = PhoneApp("127.0.0.1", cfg.listen.port)
    async with listening(reader):
        first = await app.hit(TAGS["CP1"], NIGHT, guard="G1", battery_v=3.9)
        second = await app.hit(TAGS["CP2"].lower(), NIGHT + dt.timedelta(minutes=9))
        bad = await app.send_line('{"tag": "0400000003"}')
        beat = await app.heartbeat(battery_v=3.4)
        await app.close()
    assert (first, second, beat) == ({"ack": 1}, {"ack": 2}, {"ack": 3})
    assert bad == {"error": "app: bad JSON line: a hit needs a time"}
    hits = sink.hits()
    assert [h.tag for h in hits] == [TAGS["CP1"], TAGS["CP2"]]
    assert hits[0].guard == "G1" and hits[0].battery_v == 3.9 and hits[0].kind == "network"
    assert hits[1].devicetime == NIGHT + dt.timedelta(minutes=9)
    assert [o.volts for o in sink.seen if isinstance(o, ReaderBattery)] == [3.4]
    assert reader.bad_lines == 1 and reader.taken == 3


async def test_silent_network_reader_goes_offline_and_back() -> None:
    sink, cfg = Sink(), network_cfg()
    reader = NetworkReader(cfg, sink, TZ)
    app = PhoneApp("127.0.0.1", cfg.listen.port)
    async with listening(reader):
        await app.heartbeat()
        await sink.wait_for(lambda: sink.health() == ["online", "offline"], within=3)
        await app.heartbeat()
        await sink.wait_for(lambda: sink.health() == ["online", "offline", "online"])
        await app.close()


async def test_handheld_upload_is_acked_and_cleared() -> None:
    sink, cfg = Sink(), handheld_cfg()
    reader = HandheldReader(cfg, sink, TZ)
    wand = Handheld(7, TZ)
    for n, cp in enumerate(["CP1", "CP2"]):
        wand.scan(TAGS[cp], NIGHT + dt.timedelta(minutes=10 * n))
    async with listening(reader):
        answer = await wand.upload(
            "127.0.0.1", cfg.listen.port, extra_lines=["8,2026-11-29 20:30:00,04,3"]
        )
    assert answer == "ACK 2 1"
    assert wand.memory == []
    hits = sink.hits()
    assert [(h.tag, h.record, h.kind) for h in hits] == [
        (TAGS["CP1"], 1, "handheld"),
        (TAGS["CP2"], 2, "handheld"),
    ]
    assert hits[1].devicetime == NIGHT + dt.timedelta(minutes=10)
    assert reader.bad_lines == 1  # record of reader 8, not 7


async def test_handheld_upload_with_missing_lines_is_refused_but_nothing_is_dropped() -> None:
    sink, cfg = Sink(), handheld_cfg()
    reader = HandheldReader(cfg, sink, TZ)
    async with listening(reader):
        r, w = await asyncio.open_connection("127.0.0.1", cfg.listen.port)
        w.write(b"7,2026-11-29 20:00:01,0400000001,3.9\nEND 2\n")
        await w.drain()
        answer = await r.readline()
        w.close()
        await w.wait_closed()
    assert answer == b"NAK 1 2\n"
    assert len(sink.hits()) == 1


async def test_batch_upload_three_hours_late_through_a_socket_is_judged_and_deduplicated() -> None:
    """Must show: judged by the reader's timestamps; a repeated upload gives no second event."""
    clock, log = FakeClock(NIGHT - dt.timedelta(minutes=5)), EventLog()
    wand_cfg = handheld_cfg(clock_skew_s=90)
    cfg = night_config(readers=[wand_cfg.model_dump()])
    engine = make_engine(cfg, clock, log)
    reader = HandheldReader(wand_cfg, engine.observe, TZ, now=clock)
    devices = PatrolDevices(
        handheld=Handheld(7, TZ), handheld_address=("127.0.0.1", wand_cfg.listen.port)
    )
    walk = Walk.of(cfg, "night", pace_s=600, late_s=60)  # one stop every 10 min, a minute late

    async def no_wait(seconds: float) -> None:
        clock.advance(seconds=seconds)

    steps = await walk_round(walk, devices, NIGHT, via="handheld", now=clock, sleep=no_wait)
    assert devices.handheld is not None and len(devices.handheld.memory) == 6  # card + 5 stops
    kept = list(devices.handheld.memory)
    clock.set(steps[-1].at + dt.timedelta(hours=3))
    await engine.tick()
    missed_before = len(log.of("patrol.missed"))
    async with listening(reader):
        assert await devices.upload() == "ACK 6 0"
        first = len(log.events)
        devices.handheld.memory.extend(kept)  # the reader sends it all again
        assert await devices.upload() == "ACK 6 0"
    assert len(log.events) == first, "a repeated upload gave events"
    checkpoints = log.of("patrol.checkpoint")
    assert [e.subject for e in checkpoints] == list(TAGS)
    assert {e.data["verdict"] for e in checkpoints} == {"on_time"}
    assert all(e.data["delay_s"] >= 3 * 3600 for e in checkpoints)
    assert all(e.data["guard"] == "G1" for e in checkpoints)
    assert len(log.of("patrol.round_completed")) == 1
    round1 = [e for e in log.of("patrol.missed") if e.data["round_number"] == 1]
    assert missed_before >= 5 and len([e for e in round1 if e.data["state"] == "cleared"]) == 5
    assert engine.duplicates == 6
    assert GUARD_CARD in {t for t, _, _ in kept}


async def test_overlong_and_non_utf8_lines_are_answered_and_skipped() -> None:
    sink, cfg = Sink(), network_cfg()
    reader = NetworkReader(cfg, sink, TZ)
    async with listening(reader):
        r, w = await asyncio.open_connection("127.0.0.1", cfg.listen.port)
        good = b'{"tag": "0400000001", "time": 0}\n'
        w.write(b"x" * 70_000 + b"\n" + b"\xff\xfe junk\n" + good)
        await w.drain()
        answers = [await asyncio.wait_for(r.readline(), 5) for _ in range(3)]
        w.close()
        await w.wait_closed()
    assert b'"error"' in answers[0] and b"not UTF-8" in answers[-2]
    assert answers[-1] == b'{"ack": null}\n'
    assert len(sink.hits()) == 1 and reader.bad_lines == len(answers) - 1


_CTRL_C = """
import asyncio, signal, sys
from zoneinfo import ZoneInfo
from drivers.patrol_reader.network import NetworkReader
from gateway.config.patrol import NetworkReaderConfig
from gateway.runtime.logsetup import configure_logging

async def sink(_obs):
    return None

async def main() -> None:
    cfg = NetworkReaderConfig.model_validate(
        {"id": "app", "type": "network", "listen": {"host": "127.0.0.1", "port": int(sys.argv[1])}}
    )
    reader = NetworkReader(cfg, sink, ZoneInfo("Asia/Shanghai"))
    task = asyncio.create_task(reader.run())
    await reader.ready.wait()
    _r, w = await asyncio.open_connection("127.0.0.1", reader.port)
    while not reader._connections:  # served: the connection task runs
        await asyncio.sleep(0.01)
    signal.raise_signal(signal.SIGINT)  # Ctrl-C
    await task

# Ctrl-C as a terminal delivers it: a process started in the background of a
# non-interactive shell (as a CI runner may start the suite) inherits SIGINT
# ignored, asyncio.run then installs no handler and the raised signal does nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)
configure_logging("info", json=True)
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
"""


def test_ctrl_c_with_a_reader_connected_leaves_no_traceback() -> None:
    """Issue 11: Ctrl-C left an 18-line CancelledError traceback from ``_connection``
    (asyncio's done-callback of the connection task). A real SIGINT, a real socket."""
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C, str(free_port())],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=30,
        check=True,
    )
    *lines, last = done.stderr.splitlines()
    assert last == "interrupted", done.stderr
    events = [json.loads(line)["event"] for line in lines]  # every line JSON
    assert events == ["patrol.listening", "patrol.connected", "patrol.connection_closed"]
    assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr


async def test_a_phone_is_served_when_every_slot_holds_a_dead_connection() -> None:
    """Phones that roam between access points leave half-open connections; a night
    of them must not shut the guards' scans out (review of 2026-12-05): at the cap a
    newer connection closes the oldest, and the port never serves more at once."""
    sink, cfg = Sink(), network_cfg()
    reader = NetworkReader(cfg, sink, TZ)
    async with listening(reader):
        dead = [await asyncio.open_connection("127.0.0.1", cfg.listen.port) for _ in range(64)]
        try:
            await wait_until(lambda: reader.cap.active == 64, 5, "all 64 served")
            app = PhoneApp("127.0.0.1", cfg.listen.port)
            assert await app.hit(TAGS["CP1"], NIGHT, guard="G1") == {"ack": 1}
            await app.close()
            assert reader.cap.refused == 1 and reader.cap.active <= 64
            with contextlib.suppress(ConnectionResetError):  # the one closed
                assert await asyncio.wait_for(dead[0][0].read(), 5) == b""
        finally:
            for _, writer in dead:
                writer.close()
    assert [h.tag for h in sink.hits()] == [TAGS["CP1"]]
