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


def _modules(transport: dict[str, Any], converter_timeout_ms: int = 80) -> list[ModuleConfig]:
    return [
        tcp_module(
            f"u{i + 1}",
            0,
            profile=name,
            unit=i + 1,
            transport=transport,
            poll_interval_ms=int(PERIOD_S * 1000),
            timeout_ms=100,
            converter_timeout_ms=converter_timeout_ms,
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


def _generic_units(sim: SimulatedLine, **fields: Any) -> list[ModuleConfig]:
    """A ``generic`` module ``u<unit>`` for each unit of ``sim`` (TCP, behind its
    converter), with ``fields``."""
    transport = {"type": "tcp", "host": "127.0.0.1", "port": sim.port}
    return [
        tcp_module(f"u{u}", 0, profile="generic", unit=u, transport=transport, **fields)
        for u in sim.units
    ]


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


async def test_the_line_is_reopened_when_every_unit_falls_silent() -> None:
    """Two units silent one after the other, with no answer between, is taken for a
    line failure (a converter losing its bus): close and reconnect. Silent units
    with a healthy one answering between them are not (a review of 2026-12-06: the
    reopening reported a healthy neighbour offline)."""
    recorder = Recorder()
    async with SimulatedLine(_units(), converter_timeout_s=0.08, gateway_exceptions=False) as sim:
        modules = _modules({"type": "tcp", "host": "127.0.0.1", "port": sim.port})
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            for unit in range(1, 9):
                await recorder.wait_for(health(f"u{unit}", "online"))
            for unit in range(1, 9):
                sim.units[unit].silent = True
            await wait_until(lambda: line.line.opens >= 2, 5, "the line reopened")
    assert sim.connections >= 2


@pytest.mark.parametrize("exceptions", [False, True], ids=["mute-converter", "answers-0x0B"])
async def test_two_silent_neighbours_behind_a_slow_converter_hold_a_press_under_two_seconds(
    exceptions: bool,
) -> None:
    """A converter waits 1 s for a silent unit (Moxa MGate's default) against our
    300 ms. Requests sent meanwhile queued behind it and the queue grew: a review of
    2026-12-06 saw a panic 18-23 s late, and the healthy unit reported offline."""
    recorder = Recorder()
    units = {u: SimulatedModule(PROFILES["generic"]) for u in (1, 2, 3)}
    async with SimulatedLine(units, converter_timeout_s=1.0, gateway_exceptions=exceptions) as sim:
        modules = _generic_units(sim, poll_interval_ms=20, timeout_ms=300, offline_after=3)
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            for u in units:
                await recorder.wait_for(health(f"u{u}", "online"))
            sim.units[2].silent = sim.units[3].silent = True
            # Each newly silent unit's first attempt holds the bus for the converter's
            # second whatever we do; from then on the healthy unit goes between them.
            await recorder.wait_for(health("u2", "offline"), 10)
            await recorder.wait_for(health("u3", "offline"), 10)
            loop = asyncio.get_running_loop()
            took = []
            for press in range(4):
                await asyncio.sleep(0.37)  # a different phase against the neighbours each time
                closed = press % 2 == 0
                before = len(recorder.inputs("u1"))
                pressed_at = loop.time()
                (sim.units[1].press if closed else sim.units[1].release)(0)
                await recorder.wait_for(lambda _o, n=before: len(recorder.inputs("u1")) > n, 5)
                took.append(loop.time() - pressed_at)
    assert max(took) < 2.0, took
    assert [h.state for h in recorder.health("u1")] == ["online"]


async def test_after_a_failed_poll_the_unit_that_answered_last_goes_first() -> None:
    """The scheduling rule behind the test above, on its own: right after a failed
    poll the healthy unit that answered last goes first (the neighbour just tried may
    hold a converter's bus for a second); otherwise the earliest due, failing or not
    (a unit always put behind healthy ones starved on a busy line)."""
    recorder = Recorder()
    units = {u: SimulatedModule(PROFILES["generic"]) for u in (1, 2, 3)}
    async with SimulatedLine(units, converter_timeout_s=0.05) as sim:
        modules = _generic_units(sim, timeout_ms=100, converter_timeout_ms=50)
        (line,) = build_lines(modules, recorder)
        u1, u2, u3 = line.pollers
        try:
            for poller in (u3, u1):  # u1 answered last
                await poller.poll_once()
            sim.units[2].silent = True
            await u2.poll_once()
            assert u2.failing and not u1.failing and not u3.failing
            line._answered_at = [2.0, 0.0, 1.0]  # as run() keeps them: u1 answered last
            line._after_failure = True
            assert line._next([0.0, 0.0, 0.0], 1.0) == 0  # u1, though u3 is due as early
            line._answered_at = [1.0, 0.0, 2.0]
            assert line._next([0.0, 0.0, 0.0], 1.0) == 2
            line._after_failure = False
            assert line._next([0.5, 0.1, 0.6], 1.0) == 1  # else the earliest due, failing
            assert line._next([2.0, 3.0, 0.5], 1.0) == 2
        finally:
            await line.line.close()


async def test_a_unit_back_from_a_short_silence_is_polled_again_on_a_busy_line() -> None:
    """Three slow neighbours (30 ms an answer, polled every 50 ms: more than the line
    carries) and a unit silent for half a second: once it answers again its press is
    seen (a review of 2026-12-06: a rule that always put a failing unit behind the
    healthy ones never polled it again)."""
    recorder = Recorder()
    units = {u: SimulatedModule(PROFILES["generic"]) for u in (1, 2, 3, 4)}
    async with SimulatedLine(units, converter_timeout_s=0.3) as sim:
        modules = _generic_units(
            sim, poll_interval_ms=50, timeout_ms=300, converter_timeout_ms=300, offline_after=3
        )
        (line,) = build_lines(modules, recorder)
        async with _polling(line):
            for u in units:
                await recorder.wait_for(health(f"u{u}", "online"))
            for u in (1, 2, 3):
                sim.units[u].delay_s = 0.03
            sim.units[4].silent = True
            await wait_until(lambda: line.pollers[3].failing, 5, "u4 failing")
            sim.units[4].silent = False
            before = len(recorder.inputs("u4"))
            sim.units[4].press(10)
            await recorder.wait_for(lambda _o: len(recorder.inputs("u4")) > before, 3)
