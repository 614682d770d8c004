"""Retained zone and area states over a real mosquitto, read as a dashboard reads them:
a brand-new subscriber, with no custom code and no event history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.daemon import running
from simulators.broker import MosquittoBroker
from tests.campus_helpers import demo_config_on, demo_gateway, simulated_campus
from tests.dashboard_support import Retained, clear_retained, read_retained, retained_until

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/demo-school/gw1"
Z01 = f"{PREFIX}/zone/Z01/state"
ALL = f"{PREFIX}/+/+/state"
ZONES = {f"{PREFIX}/zone/Z{n:02d}/state" for n in range(1, 15)}


def _latched(found: Retained) -> bool:
    state: Any = found.get(Z01)
    return isinstance(state, dict) and state["state"] == "alarm" and state["latched"] is True


async def test_a_released_panic_reads_latched_alarm_for_a_new_subscriber_and_after_a_restart(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    outbox = tmp_path / "o.sqlite"
    host, port = mosquitto.host, mosquitto.port
    async with simulated_campus() as modules:
        gate = modules["gate-io"]
        async with demo_gateway(mosquitto, outbox, modules) as campus:
            normal = await retained_until(
                host, port, Z01, lambda f: f.get(Z01, {}).get("state") == "normal", 5, "Z01 normal"
            )
            gate.press(0)
            await campus.wait("alarm.panic", "Z01", "active", within=2.0)
            gate.release(0)
            await retained_until(
                host, port, Z01, lambda f: f[Z01]["violated"] is False, 5, "button released"
            )
            state = (await read_retained(host, port, Z01))[Z01]
            assert (state["state"], state["latched"]) == ("alarm", True)
            assert state["since"] > normal[Z01]["since"]
            assert state["incident"] == campus.of("alarm.panic", "Z01")[0]["id"]
            assert (state["name"], state["type"], state["area_armed"]) == (
                "门卫室一键报警",
                "panic",
                True,
            )
        await clear_retained(host, port, Z01)  # only the restarted gateway can put it back
        assert Z01 not in await read_retained(host, port, Z01)
        async with demo_gateway(mosquitto, outbox, modules):  # modules read, button at rest
            again = await retained_until(host, port, Z01, _latched, 5, "latched after restart")
            assert again[Z01]["since"] == state["since"]


async def test_states_follow_commands(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    host, port = mosquitto.host, mosquitto.port
    teach, z06 = f"{PREFIX}/area/TEACH/state", f"{PREFIX}/zone/Z06/state"
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
    ):
        found = await retained_until(
            host, port, ALL, lambda f: teach in f and set(f) >= ZONES, 10, "every state"
        )
        assert found[teach]["state"] == "armed" and found[z06]["area_armed"] is True
        await campus.ok("disarm", {"area": "TEACH"})
        modules["admin-io"].set_input(2, closed=False)  # Z06 open while disarmed
        found = await retained_until(
            host, port, ALL,
            lambda f: f[z06]["state"] == "open" and f[teach]["state"] == "disarmed",
            5, "disarmed, Z06 open",
        )  # fmt: skip
        assert found[teach]["by"] == "duty-officer" and found[z06]["area_armed"] is False
        await campus.ok("bypass", {"zone": "Z06"})
        await retained_until(
            host, port, z06, lambda f: f[z06]["state"] == "bypassed", 5, "Z06 bypassed"
        )


async def test_states_are_published_again_after_a_broker_restart(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    host, port = mosquitto.host, mosquitto.port
    async with (
        simulated_campus() as modules,
        running(demo_config_on(port, modules), outbox_path=tmp_path / "o.sqlite"),
    ):
        modules["gate-io"].press(0)
        await retained_until(host, port, Z01, _latched, 5, "Z01 latched")
        await mosquitto.restart()  # no persistence: every retained message is gone
        again = await retained_until(
            host, port, ALL, lambda f: _latched(f) and len(f) == len(ZONES) + 2, 15,
            "every zone and area state published again after the reconnect",
        )  # fmt: skip
        assert {t for t in again if "/zone/" in t} == ZONES
