"""Checkpoint stations: the poller against a real pymodbus station on a real socket.

The station keeps its records; the gateway reads them by index. A station that
stops answering gives a reader fault, and what it recorded meanwhile is read
after it recovers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from drivers.patrol_reader.positions import POSITION, PositionStore
from drivers.patrol_reader.station import StationPoller
from gateway.config.patrol import StationReaderConfig
from gateway.events.observation import DeviceHealth
from gateway.events.patrol_observation import ReaderBattery
from gateway.runtime.state_store import StateStore
from simulators.patrol_station import SimulatedStation
from tests.helpers import eventually
from tests.patrol_support import (
    GUARD_CARD,
    NIGHT,
    TZ,
    EventLog,
    FakeClock,
    Sink,
    make_engine,
    night_config,
    running,
)

pytestmark = pytest.mark.timeout(60)


def station_cfg(port: int, **fields: Any) -> StationReaderConfig:
    raw: dict[str, Any] = {
        "type": "station",
        "id": "cp1-station",
        "name": "南门巡更点",
        "checkpoint": "CP1",
        "transport": {"type": "tcp", "host": "127.0.0.1", "port": port},
        "poll_interval_ms": 20,
        "timeout_ms": 150,
        "offline_after": 2,
    }
    raw.update(fields)
    return StationReaderConfig.model_validate(raw)


async def test_records_are_read_by_index_with_their_own_times() -> None:
    async with SimulatedStation(station_id=7, tz=TZ) as station:
        times = [NIGHT + dt.timedelta(minutes=m) for m in (1, 2, 3)]
        for t in times:
            station.read_card(GUARD_CARD, t)
        sink = Sink()
        poller = StationPoller(station_cfg(station.port, station_id=7), sink, TZ)
        async with running(poller.run, "station"):
            await sink.wait_for(lambda: len(sink.hits()) == 3)
            station.read_card("0A0B0C0D0E", NIGHT + dt.timedelta(minutes=9))
            await sink.wait_for(lambda: len(sink.hits()) == 4)
        hits = sink.hits()
        assert [h.record for h in hits] == [0, 1, 2, 3]
        assert [h.devicetime for h in hits[:3]] == times
        assert hits[3].tag == "0A0B0C0D0E" and hits[0].tag == GUARD_CARD
        assert all(h.kind == "station" and h.battery_v == 4.1 for h in hits)
        assert sink.health() == ["online"]
        assert poller.next_index == 4


async def test_silent_station_goes_offline_and_nothing_recorded_meanwhile_is_lost() -> None:
    async with SimulatedStation(tz=TZ) as station:
        sink = Sink()
        poller = StationPoller(station_cfg(station.port), sink, TZ, backoff_cap_s=0.2)
        async with running(poller.run, "station"):
            station.read_card(GUARD_CARD, NIGHT)
            await sink.wait_for(lambda: len(sink.hits()) == 1)
            station.silent = True
            await sink.wait_for(lambda: sink.health() == ["online", "offline"])
            during = [
                station.read_card(GUARD_CARD, NIGHT + dt.timedelta(minutes=m)) for m in (5, 6)
            ]
            station.silent = False
            await sink.wait_for(lambda: len(sink.hits()) == 3)
        assert sink.health() == ["online", "offline", "online"]
        assert [h.record for h in sink.hits()] == [0, *during]
        offline = [o for o in sink.seen if isinstance(o, DeviceHealth) and o.state == "offline"]
        assert "no answer" in offline[0].reason and offline[0].failures == 2
        # the recovery is reported before the hits it brings
        order = [type(o).__name__ for o in sink.seen]
        assert order.index("DeviceHealth", 3) < order.index("PatrolHit", 3)


async def test_power_cycled_station_keeps_its_records() -> None:
    async with SimulatedStation(tz=TZ) as station:
        sink = Sink()
        poller = StationPoller(station_cfg(station.port), sink, TZ, backoff_cap_s=0.2)
        async with running(poller.run, "station"):
            await sink.wait_for(lambda: sink.health() == ["online"])
            await station.stop()
            station.read_card(GUARD_CARD, NIGHT)
            await sink.wait_for(lambda: sink.health()[-1:] == ["offline"])
            await station.start()
            await sink.wait_for(lambda: len(sink.hits()) == 1)
        assert sink.health() == ["online", "offline", "online"]


async def test_ring_overrun_is_counted_and_the_rest_is_read() -> None:
    async with SimulatedStation(tz=TZ, capacity=4) as station:
        for m in range(6):
            station.read_card(GUARD_CARD, NIGHT + dt.timedelta(minutes=m))
        sink = Sink()
        store = PositionStore()
        await store.save("cp1-station", 0)  # read up to record 0 before an outage
        poller = StationPoller(station_cfg(station.port), sink, TZ, positions=store)
        async with running(poller.run, "station"):
            await sink.wait_for(lambda: len(sink.hits()) == 4)
        assert [h.record for h in sink.hits()] == [2, 3, 4, 5]
        assert poller.overruns == 2


async def test_read_position_survives_a_restart(tmp_path: Path) -> None:
    async with SimulatedStation(tz=TZ) as station:
        for m in range(3):
            station.read_card(GUARD_CARD, NIGHT + dt.timedelta(minutes=m))
        first, second = Sink(), Sink()
        path = tmp_path / "state.sqlite"
        async with StateStore(path) as store:
            poller = StationPoller(
                station_cfg(station.port), first, TZ, positions=PositionStore(store)
            )
            async with running(poller.run, "station"):
                await first.wait_for(lambda: len(first.hits()) == 3)
                # the position is committed once the batch was taken
                await eventually(lambda: store.get(POSITION, "cp1-station") == 3)
        station.read_card(GUARD_CARD, NIGHT + dt.timedelta(minutes=5))
        async with StateStore(path) as store:
            again = StationPoller(
                station_cfg(station.port), second, TZ, positions=PositionStore(store)
            )
            async with running(again.run, "station"):
                await second.wait_for(lambda: len(second.hits()) >= 1)
                polled = station.requests
                await eventually(lambda: station.requests >= polled + 6)  # 3 more polls
        assert [h.record for h in second.hits()] == [3]


async def test_wrong_station_id_is_a_protocol_error() -> None:
    async with SimulatedStation(station_id=3, tz=TZ) as station:
        station.read_card(GUARD_CARD, NIGHT)
        sink = Sink()
        poller = StationPoller(station_cfg(station.port, station_id=4), sink, TZ)
        async with running(poller.run, "station"):
            await sink.wait_for(lambda: sink.health() == ["offline"])
        assert sink.hits() == [] and poller.protocol_errors >= 2


async def test_battery_flag_is_reported_once_per_change() -> None:
    async with SimulatedStation(tz=TZ, battery_v=3.9) as station:
        sink = Sink()
        poller = StationPoller(station_cfg(station.port), sink, TZ)
        async with running(poller.run, "station"):
            await sink.wait_for(lambda: any(isinstance(o, ReaderBattery) for o in sink.seen))
            station.battery_low = True
            station.battery_v = 3.3
            await sink.wait_for(
                lambda: any(isinstance(o, ReaderBattery) and o.flagged_low for o in sink.seen)
            )
        readings = [o for o in sink.seen if isinstance(o, ReaderBattery)]
        assert [(r.volts, r.flagged_low) for r in readings] == [(3.9, False), (3.3, True)]


async def test_station_outage_gives_a_fault_and_late_read_hits_are_judged_on_time() -> None:
    """Must show: reader fault, and hits after recovery not lost (engine on a fake clock)."""
    clock, log = FakeClock(NIGHT - dt.timedelta(minutes=1)), EventLog()
    async with SimulatedStation(tz=TZ, now=clock) as station:
        reader = station_cfg(station.port)
        cfg = night_config(readers=[reader.model_dump()])
        engine = make_engine(cfg, clock, log)
        poller = StationPoller(reader, engine.observe, TZ, backoff_cap_s=0.2, now=clock)
        async with running(poller.run, "station"):
            await log.wait_for(lambda: bool(log.of("device.online")))
            station.silent = True
            await log.wait_for(lambda: bool(log.of("fault.device_offline")))
            clock.set(NIGHT + dt.timedelta(minutes=4))
            station.read_card(GUARD_CARD)  # the guard is at CP1 on time, the line is down
            clock.set(NIGHT + dt.timedelta(minutes=20))  # CP1 deadline (20:15) has passed
            await engine.tick()
            assert [e.subject for e in log.of("patrol.missed")] == ["CP1"]
            station.silent = False
            await log.wait_for(lambda: bool(log.of("patrol.checkpoint")))
        (fault,) = log.of("fault.device_offline", "cp1-station")
        assert fault.priority == 3 and fault.cidcode == "333"
        (checkpoint,) = log.of("patrol.checkpoint")
        assert checkpoint.data["verdict"] == "on_time" and checkpoint.data["guard"] == "G1"
        assert checkpoint.data["devicetime"] == "2026-11-29T12:04:00.000Z"
        (cleared,) = [e for e in log.of("patrol.missed") if e.data["state"] == "cleared"]
        assert cleared.data["incident"] == log.of("patrol.missed")[0].id
        online = log.of("device.online", "cp1-station")
        assert online[-1].data["incident"] == fault.id
