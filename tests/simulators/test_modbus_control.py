"""The simulator control endpoint over real HTTP/1.1 on a local socket."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config.modbus_profiles import PROFILES
from simulators.modbus_control import ControlError, ControlServer, control_request
from simulators.modbus_module import SimulatedModule
from tests.modbus_support import free_port


async def test_routes_drive_the_modules() -> None:
    gate = SimulatedModule(PROFILES["adam-6050"])
    hall = SimulatedModule(PROFILES["iologik-e1210"])
    async with gate, hall, ControlServer({"gate-io": gate, "hall-io": hall}) as control:
        port = control.port
        state = await control_request("127.0.0.1", port, "GET", "/modules")
        assert set(state["modules"]) == {"gate-io", "hall-io"}
        assert state["modules"]["hall-io"]["inputs"] == [False] * 16
        assert state["modules"]["gate-io"]["address"] == f"127.0.0.1:{gate.port}"

        answer = await control_request("127.0.0.1", port, "POST", "/modules/gate-io/press/3")
        assert answer["inputs"][3] is True and gate.inputs[3]
        await control_request("127.0.0.1", port, "POST", "/modules/gate-io/release/3")
        assert not gate.inputs[3]
        await control_request(
            "127.0.0.1", port, "POST", "/modules/hall-io/inputs/15", {"closed": True}
        )
        assert hall.inputs[15]
        one = await control_request("127.0.0.1", port, "GET", "/modules/hall-io")
        assert one["inputs"][15] is True and one["outputs"] == []

        accepted = await control_request(
            "127.0.0.1", port, "POST", "/modules/gate-io/power-cycle", {"off_seconds": 0.3}
        )
        assert accepted["power_cycle"] == {"off_seconds": 0.3}
        await asyncio.sleep(0.05)
        assert not gate.running
        await asyncio.sleep(0.4)
        assert gate.running


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/modules/nope", None, 404),
        ("POST", "/modules/gate-io/press/12", None, 404),
        ("POST", "/modules/gate-io/press/x", None, 400),
        ("POST", "/modules/gate-io/inputs/1", {"closed": "yes"}, 400),
        ("POST", "/modules/gate-io/power-cycle", {"off_seconds": -1}, 400),
        ("GET", "/modules/gate-io/press/1", None, 405),
        ("POST", "/modules", None, 405),
        ("GET", "/elsewhere", None, 404),
    ],
)
async def test_bad_requests_get_an_error_status(
    method: str, path: str, body: dict[str, object] | None, status: int
) -> None:
    gate = SimulatedModule(PROFILES["adam-6050"])
    async with ControlServer({"gate-io": gate}) as control:
        with pytest.raises(ControlError) as info:
            await control_request("127.0.0.1", control.port, method, path, body)
    assert info.value.status == status
    assert info.value.body["error"]


async def test_power_cycle_of_a_stopped_module_is_a_conflict() -> None:
    gate = SimulatedModule(PROFILES["adam-6050"])
    async with ControlServer({"gate-io": gate}) as control:
        with pytest.raises(ControlError) as info:
            await control_request("127.0.0.1", control.port, "POST", "/modules/gate-io/power-cycle")
    assert info.value.status == 409


async def test_client_reports_an_endpoint_that_is_not_there() -> None:
    with pytest.raises(ControlError) as info:
        await control_request("127.0.0.1", free_port(), "GET", "/modules", timeout_s=2)
    assert info.value.status == 0


async def test_analog_route_sets_a_raw_value_and_refuses_bad_ones() -> None:
    ai = SimulatedModule(PROFILES["iologik-e1240"])
    async with ai, ControlServer({"finance-ai": ai}) as control:
        port = control.port
        answer = await control_request(
            "127.0.0.1", port, "POST", "/modules/finance-ai/analog/3", {"value": 65000}
        )
        assert answer["analog"][3] == 65000 and ai.analog[3] == 65000
        with pytest.raises(ControlError, match=r"0\.\.65535") as bad:
            await control_request(
                "127.0.0.1", port, "POST", "/modules/finance-ai/analog/3", {"value": 70000}
            )
        assert bad.value.status == 400
        with pytest.raises(ControlError, match="does not exist") as missing:
            await control_request(
                "127.0.0.1", port, "POST", "/modules/finance-ai/analog/8", {"value": 1}
            )
        assert missing.value.status == 404
