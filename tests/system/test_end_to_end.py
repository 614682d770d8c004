"""End to end: simulated modules → gateway → real mosquitto → center console.

Everything here is real: pymodbus servers on real sockets, the gateway's own
tasks, Debian's mosquitto on a free port, and the center console that validates
every event against ``gateway/events/event.schema.json``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.config.alarm import EolLine
from gateway.daemon import Gateway, running
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.modbus_module import SimulatedModule
from tests.campus_helpers import demo_config_on, simulated_campus
from tests.fault_support import stored_types, wait_until
from tests.helpers import assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(90)


@dataclass
class Campus:
    gateway: Gateway
    center: CenterConsole
    modules: dict[str, SimulatedModule]

    def of(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.center.events
            if e["type"] == type_ and (subject is None or e["subject"] == subject)
        ]

    async def wait(self, type_: str, subject: str, state: str, within: float = 5.0) -> dict:
        def match(e: dict[str, Any]) -> bool:
            return e["type"] == type_ and e["subject"] == subject and e["data"]["state"] == state

        await self.center.wait_for(lambda: any(match(e) for e in self.center.events), within)
        return next(e for e in self.center.events if match(e))


@pytest.fixture
async def campus(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Campus]:
    async with simulated_campus() as modules:
        cfg = demo_config_on(mosquitto.port, modules)
        async with (
            signed_center(host=mosquitto.host, port=mosquitto.port) as center,
            running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway,
        ):
            result = Campus(gateway, center, modules)
            for module in modules:
                await result.wait("device.online", module, "instant")
            yield result
        assert center.invalid == 0
        for event in center.events:
            assert_valid_event(event)


async def test_panic_press_gives_one_alarm_within_one_second(campus: Campus) -> None:
    pressed = time.monotonic()
    campus.modules["gate-io"].press(0)
    event = await campus.wait("alarm.panic", "Z01", "active", within=1.0)
    latency = time.monotonic() - pressed
    assert latency < 1.0
    assert event["priority"] == 1
    assert (event["siacode"], event["cidcode"]) == ("PA", "120")
    assert event["data"]["name"] == "门卫室一键报警"
    assert event["data"]["location"] == "南门门卫室"
    assert event["source"] == "campus/demo-school/gw1/gate-io"
    await asyncio.sleep(0.5)
    assert len(campus.of("alarm.panic")) == 1


async def test_release_does_not_clear_panic_only_reset_does(campus: Campus) -> None:
    module = campus.modules["admin-io"]
    module.press(0)
    active = await campus.wait("alarm.panic", "Z02", "active")
    module.release(0)
    await asyncio.sleep(0.6)  # six polls with the button released
    assert [e["data"]["state"] for e in campus.of("alarm.panic", "Z02")] == ["active"]
    assert campus.gateway.engine is not None
    assert await campus.gateway.engine.reset("Z02")
    cleared = await campus.wait("alarm.panic", "Z02", "cleared")
    assert cleared["data"]["incident"] == active["id"]
    assert cleared["siacode"] == "PH"


async def test_held_panic_button_cannot_be_reset(campus: Campus) -> None:
    campus.modules["gate-io"].press(0)
    await campus.wait("alarm.panic", "Z01", "active")
    assert campus.gateway.engine is not None
    assert not await campus.gateway.engine.reset("Z01")


async def test_intrusion_zone_gives_active_then_cleared(campus: Campus) -> None:
    module = campus.modules["admin-io"]
    module.set_input(2, closed=False)  # Z06 is normally closed: opening it is the alarm
    active = await campus.wait("alarm.intrusion", "Z06", "active")
    module.set_input(2, closed=True)
    cleared = await campus.wait("alarm.intrusion", "Z06", "cleared")
    assert active["priority"] == 2 and active["cidcode"] == "130"
    assert cleared["data"]["incident"] == active["id"]
    assert cleared["seq"] > active["seq"]


async def test_tamper_alarms_and_restores(campus: Campus) -> None:
    module = campus.modules["gate-io"]
    module.set_input(11, closed=False)
    active = await campus.wait("alarm.tamper", "Z08", "active")
    module.set_input(11, closed=True)
    await campus.wait("alarm.tamper", "Z08", "cleared")
    assert active["siacode"] == "TA"


async def test_power_cycled_module_goes_offline_and_back_while_other_keeps_working(
    campus: Campus,
) -> None:
    cycle = asyncio.create_task(campus.modules["gate-io"].power_cycle(off_seconds=2.0))
    offline = await campus.wait("fault.device_offline", "gate-io", "active", within=3.0)
    other = campus.modules["admin-io"]
    other.set_input(3, closed=False)
    await campus.wait("alarm.intrusion", "Z07", "active")
    other.set_input(3, closed=True)
    await campus.wait("alarm.intrusion", "Z07", "cleared")
    await cycle
    online = [
        e
        for e in campus.of("device.online", "gate-io")
        if e["data"].get("incident") == offline["id"]
    ]
    if not online:
        await campus.center.wait_for(
            lambda: any(
                e["type"] == "device.online" and e["data"].get("incident") == offline["id"]
                for e in campus.center.events
            ),
            10.0,
        )
    assert offline["priority"] == 3 and offline["cidcode"] == "333"
    # the gate module works again after the power cycle
    campus.modules["gate-io"].set_input(1, closed=False)
    await campus.wait("alarm.perimeter", "Z03", "active")


async def test_events_recorded_while_broker_down_arrive_without_gap(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    async with simulated_campus() as modules:
        cfg = demo_config_on(broker.port, modules)
        await broker.start()
        # The center's persistent session exists before the gateway ever connects.
        async with signed_center(
            host=broker.host, port=broker.port, identifier="center-1", persistent=True
        ):
            pass
        await broker.stop()
        outbox = tmp_path / "outbox.sqlite"
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.outbox is not None
            online = len(cfg.modules)
            await wait_until(  # every module read and reported: a change now is a transition
                lambda: stored_types(outbox).count("device.online") == online, 20, "online"
            )
            modules["gate-io"].press(0)
            modules["admin-io"].set_input(2, closed=False)
            await wait_until(lambda: "alarm.intrusion" in stored_types(outbox), 10, "active")
            modules["admin-io"].set_input(2, closed=True)
            await wait_until(
                lambda: stored_types(outbox, "alarm.").count("alarm.intrusion") == 2
                and "alarm.panic" in stored_types(outbox),
                10,
                "panic, intrusion active and cleared stored",
            )
            recorded = await gateway.outbox.pending_count()
            assert recorded >= 6  # started, online per module, panic, intrusion active+cleared
            await broker.start()
            async with signed_center(
                host=broker.host, port=broker.port, identifier="center-1", persistent=True
            ) as center:
                await center.wait_for(lambda: len(center.events) >= recorded, 15.0)
                seqs = sorted(e["seq"] for e in center.events)
                assert seqs == list(range(1, len(seqs) + 1))
                assert {e["stream"] for e in center.events} == {gateway.outbox.stream}
                assert not center.gaps
                types = [e["type"] for e in center.events]
                assert "alarm.panic" in types and types.count("alarm.intrusion") == 2
        await broker.stop()


async def test_every_demo_zone_is_wired_to_its_physical_input(campus: Campus) -> None:
    """Every module's inputs (ADAM DIn, ioLogik DI-nn and AI-n, the RS-485 boards behind
    the converter) reach the zone the config names, and no other."""
    cfg = campus.gateway.cfg
    for zone in cfg.zones:
        module = campus.modules[zone.module]
        before = len(campus.center.events)
        if isinstance(zone.line, EolLine):
            module.set_analog(zone.input, sum(zone.line.alarm) // 2)  # the alarm band
        else:
            module.set_input(zone.input, closed=zone.contact == "NO")  # the alarm condition
        event = await campus.wait(f"alarm.{zone.type}", zone.id, "active")
        assert event["data"]["input"] == zone.input and event["data"]["name"] == zone.name
        if isinstance(zone.line, EolLine):
            module.set_analog(zone.input, sum(zone.line.normal) // 2)  # back to rest
        else:
            module.set_input(zone.input, closed=zone.contact == "NC")  # back to rest
        if zone.type != "panic":
            await campus.wait(f"alarm.{zone.type}", zone.id, "cleared")
        others = [
            e
            for e in campus.center.events[before:]
            if e["type"].startswith("alarm.") and e["subject"] != zone.id
        ]
        assert others == []
