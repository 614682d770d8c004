"""Several units on one line: Modbus RTU over a pty pair and behind a TCP-to-RTU
converter, one shared connection, a breaker per unit. Real pymodbus on both ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.modbus_io.line_poller import LinePoller, build_lines
from drivers.modbus_io.module import ModbusIoClient
from gateway.config.modbus_profiles import PROFILES
from gateway.config.root import ModuleConfig
from gateway.errors import DeviceUnavailable
from simulators.modbus_line import SimulatedLine
from simulators.modbus_module import SimulatedModule
from tests.fault_support import wait_until
from tests.modbus_support import PtyLink, Recorder, change, health, tcp_module

pytestmark = pytest.mark.timeout(60)

# eight RS-485 boards of the kinds a school's cabinets hold, unit id = index + 1
BOARDS = [
    "adam-4150",
    "relay-4ch-485",
    "relay-8ch-8di",
    "waveshare-io-8ch",
    "adam-4150",
    "relay-8ch-8di",
    "waveshare-io-8ch",
    "relay-4ch-485",
]
PERIOD_S = 0.2


def _units() -> dict[int, SimulatedModule]:
    return {i + 1: SimulatedModule(PROFILES[name]) for i, name in enumerate(BOARDS)}


def _modules(transport: dict[str, Any]) -> list[ModuleConfig]:
    return [
        tcp_module(
            f"u{i + 1}",
            0,
            profile=name,
            unit=i + 1,
            transport=transport,
            poll_interval_ms=int(PERIOD_S * 1000),
            timeout_ms=100,
            offline_after=2,
        )
        for i, name in enumerate(BOARDS)
    ]


@contextlib.asynccontextmanager
async def _line(kind: str) -> AsyncIterator[tuple[SimulatedLine, list[ModuleConfig]]]:
    """The eight boards on a pty pair (``rtu``) or behind a converter (``tcp``)."""
    if kind == "rtu":
        with PtyLink() as link:
            async with SimulatedLine(_units(), serial_port=link.a, baudrate=19200) as sim:
                yield sim, _modules({"type": "rtu", "port": link.b, "baudrate": 19200})
    else:
        async with SimulatedLine(_units(), converter_timeout_s=0.1) as sim:
            yield sim, _modules({"type": "tcp", "host": "127.0.0.1", "port": sim.port})


@contextlib.asynccontextmanager
async def _polling(line: LinePoller) -> AsyncIterator[LinePoller]:
    task = asyncio.create_task(line.run(), name=f"line[{line.name}]")
    try:
        yield line
        assert not task.done(), task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("kind", ["rtu", "tcp"], ids=["rtu-over-pty", "tcp-to-rtu-converter"])
async def test_silent_unit_five_of_eight_leaves_the_others_their_poll_period(kind: str) -> None:
    recorder = Recorder()
    async with _line(kind) as (sim, modules):
        (line,) = build_lines(modules, recorder)
        assert len(line.pollers) == 8 and line.name.startswith("line:")
        async with _polling(line):
            for unit in range(1, 9):
                await recorder.wait_for(health(f"u{unit}", "online"))
            sim.units[5].silent = True
            await recorder.wait_for(health("u5", "offline"), within=5)
            for module in sim.units.values():
                module.requests = 0
            window = 3.0
            await asyncio.sleep(window)
            counts = {unit: module.requests for unit, module in sim.units.items()}
            sim.units[5].silent = False
            await recorder.wait_for(lambda o: len(recorder.health("u5")) == 3, within=8)
    periods = {unit: window / n for unit, n in counts.items() if unit != 5 and n}
    assert len(periods) == 7, counts
    for unit, period in periods.items():
        assert abs(period - PERIOD_S) <= 0.2 * PERIOD_S, (unit, period, counts)
    # the breaker: the silent unit was tried with doubling waits (about
    # log2(window / period) times), not 15 times at its period
    assert counts[5] <= 4, counts
    assert [h.state for h in recorder.health("u5")] == ["online", "offline", "online"]
    assert all(len(recorder.health(f"u{u}")) == 1 for u in range(1, 9) if u != 5)


async def test_inputs_and_outputs_of_every_unit_over_rtu_reach_their_own_board() -> None:
    recorder = Recorder()
    async with _line("rtu") as (sim, modules):
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            await recorder.wait_for(lambda o: len(recorder.health()) == 8)
            for unit, module in sim.units.items():
                module.press(unit % module.profile.di_count)
            for unit, module in sim.units.items():
                await recorder.wait_for(change(f"u{unit}", unit % module.profile.di_count, True))
            for poller in line.pollers:
                await poller.write_output(1, True)
    for unit, module in sim.units.items():
        assert module.outputs == [ch == 1 for ch in range(module.profile.do_count)], unit
    # every board reported exactly its own pressed input, nothing else
    changes = [(o.device_id, o.channel) for o in recorder.inputs() if not o.initial]
    assert sorted(changes) == sorted(
        (f"u{u}", u % m.profile.di_count) for u, m in sim.units.items()
    )


async def test_converter_answers_gateway_target_failed_for_a_silent_unit() -> None:
    units = {1: SimulatedModule(PROFILES["adam-4150"], silent=True)}
    async with SimulatedLine(units, converter_timeout_s=0.05) as sim:
        cfg = tcp_module("u1", sim.port, profile="adam-4150", unit=1, timeout_ms=500)
        async with ModbusIoClient(cfg) as client:
            started = asyncio.get_running_loop().time()
            with pytest.raises(DeviceUnavailable, match="0x0b"):
                await client.read_inputs()
            assert asyncio.get_running_loop().time() - started < 0.4  # 0x0B, not our timeout


def test_a_line_refuses_broadcast_units_and_modules_already_mounted() -> None:
    module = SimulatedModule(PROFILES["adam-4150"])
    with pytest.raises(ValueError, match="0 is broadcast"):
        SimulatedLine({0: module})
    SimulatedLine({1: module})
    with pytest.raises(ValueError, match="already on a line"):
        SimulatedLine({2: module})


async def test_a_silent_unit_behind_a_mute_converter_costs_its_neighbours_nothing() -> None:
    """Issue 11: a converter that answers nothing for a silent unit (no 0x0B); the
    other seven units' short contact changes all arrive on the one connection."""
    recorder = Recorder()
    units = _units()
    async with SimulatedLine(units, converter_timeout_s=0.08, gateway_exceptions=False) as sim:
        modules = _modules({"type": "tcp", "host": "127.0.0.1", "port": sim.port})
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            for unit in range(1, 9):
                await recorder.wait_for(health(f"u{unit}", "online"))
            assert sim.connections == 1
            sim.units[5].silent = True
            await recorder.wait_for(health("u5", "offline"), within=5)
            others = [u for u in units if u != 5]
            asked = sim.units[5].requests
            pulses = 4
            for _ in range(pulses):
                # a pulse of three poll periods: seen by a poller that keeps its period
                for unit in others:
                    sim.units[unit].press(0)
                await asyncio.sleep(3 * PERIOD_S)
                for unit in others:
                    sim.units[unit].release(0)
                await asyncio.sleep(3 * PERIOD_S)
            for unit in others:
                await recorder.wait_for(
                    lambda o, u=unit: (
                        sum(1 for c in recorder.inputs(f"u{u}") if not c.initial) >= 2 * pulses
                    ),
                    within=5,
                )
            silent_asks = sim.units[5].requests - asked
    for unit in others:
        states = [c.closed for c in recorder.inputs(f"u{unit}") if not c.initial and c.channel == 0]
        assert states == [True, False] * pulses, (unit, states)
    assert silent_asks >= 2  # the silent unit was tried (and timed out) during the pulses
    assert sim.connections == 1, f"the shared connection was reopened {sim.connections - 1} times"
    assert line.line.opens == 1


async def test_the_line_is_reopened_when_several_units_fall_silent() -> None:
    """Two units silent one after the other is taken for a line failure (a converter
    losing its bus): close and reconnect, though the other units still answer (so
    pymodbus' own count of unanswered requests never closes it)."""
    recorder = Recorder()
    async with SimulatedLine(_units(), converter_timeout_s=0.08, gateway_exceptions=False) as sim:
        modules = _modules({"type": "tcp", "host": "127.0.0.1", "port": sim.port})
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            for unit in range(1, 9):
                await recorder.wait_for(health(f"u{unit}", "online"))
            sim.units[2].silent = sim.units[3].silent = True
            await wait_until(lambda: line.line.opens >= 2, 5, "the line reopened")
    assert sim.connections >= 2
