"""ModulePoller against real pymodbus servers on real sockets: debounce, polarity,
health transitions, outages of one module among several, overlap, bad frames."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from drivers.modbus_io.poller import ModulePoller
from gateway.config.modbus_profiles import PROFILES
from gateway.errors import DeviceUnavailable
from gateway.events.observation import AnalogChanged, DeviceHealth, InputChanged, Observation
from simulators.modbus_module import SimulatedModule
from tests.modbus_support import Recorder, change, free_port, health, running, tcp_module

ADAM = PROFILES["adam-6050"]


async def test_first_read_reports_every_channel_as_initial_after_online() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM) as sim:
        sim.press(4)
        async with running(ModulePoller(tcp_module("m", sim.port), recorder)) as poller:
            await recorder.wait_for(lambda o: len(recorder.inputs()) == ADAM.di_count)
            assert poller.health == "online"
    first, *rest = recorder.seen
    assert isinstance(first, DeviceHealth)
    assert (first.state, first.previous) == ("online", "starting")
    initial = rest[: ADAM.di_count]
    assert all(isinstance(o, InputChanged) and o.initial for o in initial)
    assert [o.closed for o in recorder.inputs()] == [ch == 4 for ch in range(ADAM.di_count)]


async def test_debounce_drops_a_short_pulse_and_reports_a_long_one() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM) as sim:
        cfg = tcp_module("m", sim.port, debounce_ms=250)
        poller = ModulePoller(cfg, recorder, debounce_ms={1: 0})
        async with running(poller):
            await recorder.wait_for(lambda o: len(recorder.inputs()) == ADAM.di_count)
            sim.press(0)  # 80 ms pulse < 250 ms debounce: never reported
            await asyncio.sleep(0.08)
            sim.release(0)
            await asyncio.sleep(0.4)
            assert [o for o in recorder.inputs() if not o.initial] == []

            sim.press(0)  # held well beyond the debounce: reported once
            pressed = asyncio.get_running_loop().time()
            await recorder.wait_for(change("m", 0, True))
            assert asyncio.get_running_loop().time() - pressed >= 0.25

            sim.press(1)  # per-channel override 0 ms: the same 80 ms pulse is reported
            await asyncio.sleep(0.08)
            sim.release(1)
            await recorder.wait_for(change("m", 1, True))
            await recorder.wait_for(change("m", 1, False))
    assert [(o.channel, o.closed) for o in recorder.inputs() if not o.initial] == [
        (0, True),
        (1, True),
        (1, False),
    ]


@pytest.mark.parametrize(
    ("wire_active_low", "cfg_active_low"),
    [(False, False), (True, True)],
    ids=["normal-wire", "inverted-wire-inverted-config"],
)
async def test_reported_state_is_the_physical_contact(
    wire_active_low: bool, cfg_active_low: bool
) -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM, active_low=wire_active_low) as sim:
        sim.press(2)
        cfg = tcp_module("m", sim.port, active_low=cfg_active_low)
        async with running(ModulePoller(cfg, recorder)) as poller:
            await recorder.wait_for(lambda o: len(recorder.inputs()) == ADAM.di_count)
            assert poller.inputs == [ch == 2 for ch in range(ADAM.di_count)]
            sim.release(2)
            await recorder.wait_for(change("m", 2, False))


async def test_profile_and_config_polarity_cancel_out() -> None:
    """An active-low board (the '485 Relay 4CH' in realdata: 0 = triggered) with
    ``active_low = true`` in the config as well reads as an active-high one."""
    active_low_board = dataclasses.replace(ADAM, name="test-active-low", active_low=True)
    recorder = Recorder()
    async with SimulatedModule(active_low_board) as sim:
        sim.press(5)
        profile_only = ModulePoller(tcp_module("a", sim.port), recorder, profile=active_low_board)
        both = ModulePoller(
            tcp_module("b", sim.port, active_low=True), recorder, profile=active_low_board
        )
        async with running(profile_only), running(both):
            await recorder.wait_for(lambda o: len(recorder.inputs()) == 2 * ADAM.di_count)
            assert profile_only.inputs == [ch == 5 for ch in range(ADAM.di_count)]
            assert both.inputs == [ch != 5 for ch in range(ADAM.di_count)]


async def test_power_cycle_of_one_module_does_not_stall_another_and_loses_nothing() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM) as sim_a, SimulatedModule(ADAM) as sim_b:
        poller_a = ModulePoller(tcp_module("a", sim_a.port), recorder)
        poller_b = ModulePoller(tcp_module("b", sim_b.port), recorder)
        async with running(poller_a), running(poller_b):
            await recorder.wait_for(lambda o: len(recorder.inputs()) == 2 * ADAM.di_count)
            cycle = asyncio.create_task(sim_a.power_cycle(0.8))
            await recorder.wait_for(health("a", "offline"))
            sim_a.press(7)  # happens while "a" is off the network
            sim_b.press(3)  # "b" keeps reporting during the outage
            await recorder.wait_for(change("b", 3, True), within=0.5)
            assert poller_a.health == "offline"
            await cycle
            await recorder.wait_for(health("a", "online"), within=6)
            await recorder.wait_for(change("a", 7, True), within=1)
    transitions = [(h.previous, h.state) for h in recorder.health("a")]
    assert transitions == [("starting", "online"), ("online", "offline"), ("offline", "online")]
    assert recorder.health("a")[1].reason
    assert [h.state for h in recorder.health("b")] == ["online"]
    assert poller_a.failures >= 2 and poller_b.failures == 0


async def test_silent_unit_goes_offline_and_comes_back() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM) as sim:
        poller = ModulePoller(tcp_module("m", sim.port, timeout_ms=100), recorder)
        async with running(poller):
            await recorder.wait_for(health("m", "online"))
            sim.silent = True
            offline = await recorder.wait_for(health("m", "offline"))
            assert isinstance(offline, DeviceHealth)
            assert "no answer within 100 ms" in offline.reason
            assert offline.failures == 2
            sim.silent = False
            await recorder.wait_for(lambda o: len(recorder.health("m")) == 3, within=6)
    assert [h.state for h in recorder.health("m")] == ["online", "offline", "online"]


async def test_unreachable_at_start_goes_offline_and_online_when_it_appears() -> None:
    recorder = Recorder()
    port = free_port()
    poller = ModulePoller(tcp_module("m", port), recorder)
    async with running(poller):
        offline = await recorder.wait_for(health("m", "offline"))
        assert isinstance(offline, DeviceHealth) and offline.previous == "starting"
        assert "cannot connect" in offline.reason
        async with SimulatedModule(ADAM, port=port) as sim:
            sim.press(9)
            await recorder.wait_for(health("m", "online"), within=6)
            await recorder.wait_for(lambda o: len(recorder.inputs()) == ADAM.di_count)
    assert all(o.initial for o in recorder.inputs())
    assert [o.closed for o in recorder.inputs()] == [ch == 9 for ch in range(ADAM.di_count)]


async def test_polls_never_overlap_and_missed_ticks_are_skipped() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM, delay_s=0.06) as sim:  # each answer takes 3 periods
        poller = ModulePoller(tcp_module("m", sim.port, timeout_ms=500), recorder)
        async with running(poller):
            await recorder.wait_for(health("m", "online"))
            sim.requests = 0
            await asyncio.sleep(0.6)
            served = sim.requests
            # ... while outputs are switched through the same connection
            await poller.write_output(1, True)
            assert sim.output(1)
    assert sim.max_concurrent == 1
    assert 5 <= served <= 10, served  # ~0.6 s / 80 ms (next free 20 ms tick), never 30
    assert poller.failures == 0


async def test_malformed_replies_are_logged_once_counted_and_fail_the_poll() -> None:
    recorder = Recorder()
    async with SimulatedModule(ADAM) as sim:
        with capture_logs() as logs:
            poller = ModulePoller(tcp_module("m", sim.port, offline_after=3), recorder)
            async with running(poller):
                await recorder.wait_for(health("m", "online"))
                sim.short_reply = True
                await recorder.wait_for(health("m", "offline"))
                sim.short_reply = False
                await recorder.wait_for(lambda o: len(recorder.health("m")) == 3, within=6)
    bad = [entry for entry in logs if entry["event"] == "modbus.bad_frame"]
    assert len(bad) == 1
    # a 1-byte FC02 reply to a 12-bit read, as sent on the wire (MBAP + PDU)
    assert bad[0]["raw"].endswith("00 04 01 02 01 00")
    assert bad[0]["device_id"] == "m"
    assert poller.protocol_errors >= 3
    assert poller.failures == poller.protocol_errors


async def test_a_failing_sink_is_counted_and_the_observation_offered_again() -> None:
    recorder = Recorder()
    calls = 0

    async def flaky(observation: Observation) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("sink down")
        await recorder(observation)

    async with SimulatedModule(ADAM) as sim:
        poller = ModulePoller(tcp_module("m", sim.port), flaky)
        async with running(poller):
            await recorder.wait_for(lambda o: len(recorder.inputs()) == ADAM.di_count)
    assert poller.errors == 1
    assert [h.state for h in recorder.health("m")] == ["online"]


async def test_write_output_reaches_the_coil_and_reports_an_unreachable_module() -> None:
    async with SimulatedModule(ADAM) as sim:
        poller = ModulePoller(tcp_module("m", sim.port), Recorder())
        async with running(poller):
            await poller.write_output(5, True)
            assert sim.outputs == [False] * 5 + [True]
            with pytest.raises(ValueError, match="output 6 does not exist"):
                await poller.write_output(6, True)
    unreachable = ModulePoller(tcp_module("m", free_port()), Recorder())
    with pytest.raises(DeviceUnavailable):
        await unreachable.write_output(0, True)


def test_debounce_for_a_channel_the_module_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="input 12"):
        ModulePoller(tcp_module("m", 1), Recorder(), debounce_ms={12: 50})


async def test_analog_inputs_are_reported_when_they_move_past_the_deadband() -> None:
    e1240 = PROFILES["iologik-e1240"]
    recorder = Recorder()

    def analog(value: int) -> Callable[[Observation], bool]:
        return lambda o: isinstance(o, AnalogChanged) and o.value == value

    async with SimulatedModule(e1240) as sim:
        sim.set_analog(2, 12000)
        cfg = tcp_module("ai", sim.port, profile=e1240.name)
        poller = ModulePoller(cfg, recorder, analog_channels=[2], analog_deadband=100)
        async with running(poller):
            first = await recorder.wait_for(analog(12000))
            sim.set_analog(2, 12050)  # noise within the deadband
            await asyncio.sleep(0.2)
            sim.set_analog(2, 65000)  # the loop is cut
            cut = await recorder.wait_for(analog(65000))
            assert poller.analog == {2: 65000}
    assert isinstance(first, AnalogChanged) and first.initial and first.channel == 2
    assert isinstance(cut, AnalogChanged) and not cut.initial
    assert [o.value for o in recorder.seen if isinstance(o, AnalogChanged)] == [12000, 65000]
    assert recorder.inputs() == []  # the E1240 has no digital inputs: none asked for


def test_analog_channel_the_module_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="analog inputs"):
        ModulePoller(tcp_module("m", 1), Recorder(), analog_channels=[0])
