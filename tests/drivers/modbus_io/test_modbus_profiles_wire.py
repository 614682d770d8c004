"""Every register profile served over Modbus TCP and over a serial line (RTU through a
pty pair), and the cheap RS-485 boards' quirks byte for byte against the real frame
captures in ../shared/realdata/modbus."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import serial

from drivers.modbus_io.module import ModbusIoClient
from gateway.config.modbus_profiles import PROFILES
from simulators.modbus_module import SimulatedModule
from tests.helpers import REALDATA_PATH
from tests.modbus_support import PtyLink, tcp_module

REALDATA = REALDATA_PATH / "modbus"


@contextlib.asynccontextmanager
async def _served(profile: str, transport: str) -> AsyncIterator[tuple[SimulatedModule, dict]]:
    """The profile's simulator, and the module config fields that reach it."""
    if transport == "tcp":
        async with SimulatedModule(PROFILES[profile], unit=3) as sim:
            yield sim, {"transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}}
        return
    with PtyLink() as link:
        async with SimulatedModule(PROFILES[profile], serial_port=link.a, unit=3) as sim:
            yield sim, {"transport": {"type": "rtu", "port": link.b, "baudrate": 19200}}


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_profile_reads_inputs_and_analog_and_drives_outputs(
    profile: str, transport: str
) -> None:
    p = PROFILES[profile]
    async with _served(profile, transport) as (sim, fields):
        cfg = tcp_module("m", 0, profile=profile, unit=3, timeout_ms=300, **fields)
        async with ModbusIoClient(cfg) as client:
            for channel in range(p.di_count):
                sim.press(channel)
                wire = [(ch == channel) != p.active_low for ch in range(p.di_count)]
                assert await client.read_inputs() == wire, channel
                sim.release(channel)
            for channel in range(p.ai_count):
                sim.set_analog(channel, 1000 * (channel + 1) + 7)
            if p.ai_count:
                assert await client.read_analog() == [1000 * (c + 1) + 7 for c in range(p.ai_count)]
            else:
                with pytest.raises(ValueError, match="no analog inputs"):
                    await client.read_analog()
            for channel in range(p.do_count):
                await client.write_output(channel, True)
                assert sim.outputs == [ch == channel for ch in range(p.do_count)], channel
                await client.write_output(channel, False)
            assert sim.outputs == [False] * p.do_count


async def test_adam6051_outputs_are_bits_of_the_do_word_not_coils() -> None:
    """ADAM-6051: the manual lists no DO coils; 40303 (PDU 302) holds DO0/DO1 as bits."""
    async with (
        SimulatedModule(PROFILES["adam-6051"]) as sim,
        ModbusIoClient(tcp_module("m", sim.port, profile="adam-6051")) as client,
    ):
        await client.write_output(1, True)
        await client.write_output(0, True)
        await client.write_output(1, False)
        words = await client.line.read_registers("holding_registers", 302, 1, unit=1, device_id="m")
    assert sim.outputs == [True, False]
    assert words == [0b01]


def _frames(name: str) -> list[dict[str, str]]:
    path = REALDATA / name
    if not path.is_file():
        pytest.skip(f"real captures not present at {REALDATA}")
    exchanges: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))["exchanges"]
    return exchanges


@contextlib.contextmanager
def _master(port: str) -> Iterator[serial.Serial]:
    with serial.Serial(port, 9600, timeout=0.5) as line:
        yield line


def _exchange(port: str, tx: bytes) -> bytes:
    with _master(port) as line:
        line.write(tx)
        return bytes(line.read(64))


@pytest.mark.parametrize(
    ("capture", "profile", "setup"),
    [
        ("rtu_frames_485_relay_4ch_v1_1_board.json", "relay-4ch-485", {"press": 0}),
        ("rtu_frames_aliexpress_8ch_relay_8di_board.json", "relay-8ch-8di", {"press": 5}),
    ],
    ids=["485-relay-4ch", "aliexpress-8ch"],
)
async def test_cheap_board_simulator_answers_the_captured_frames_byte_for_byte(
    capture: str, profile: str, setup: dict[str, int]
) -> None:
    exchanges = [
        e for e in _frames(capture) if e["tx"][:2] == "01" and e["tx"].split()[1] in ("02", "05")
    ]
    assert exchanges
    with PtyLink() as link:
        async with SimulatedModule(PROFILES[profile], serial_port=link.a, unit=1) as sim:
            sim.press(setup["press"])
            for exchange in exchanges:
                tx = bytes.fromhex(exchange["tx"])
                rx = await asyncio.to_thread(_exchange, link.b, tx)
                assert rx.hex(" ") == exchange["rx"].lower(), exchange["what"]


async def test_4ch_board_ignores_a_short_read_and_reads_active_low() -> None:
    """'count 4 gets NO reply on this board': our profile asks 8 bits and inverts."""
    with PtyLink() as link:
        async with SimulatedModule(PROFILES["relay-4ch-485"], serial_port=link.a, unit=1) as sim:
            sim.press(0)
            short = bytes.fromhex("01 02 00 00 00 04 79 c9")  # FC02 @0 count 4, CRC ok
            assert await asyncio.to_thread(_exchange, link.b, short) == b""
            rtu = {"type": "rtu", "port": link.b, "baudrate": 9600}
            cfg = tcp_module("board", 0, profile="relay-4ch-485", transport=rtu, timeout_ms=300)
            async with ModbusIoClient(cfg) as client:
                assert await client.read_inputs() == [False, True, True, True]  # wire bits


async def test_analog_only_module_reads_raw_values_and_the_simulator_checks_them() -> None:
    async with (
        SimulatedModule(PROFILES["iologik-e1240"]) as sim,
        ModbusIoClient(tcp_module("ai", sim.port, profile="iologik-e1240")) as client,
    ):
        sim.set_analog(7, 65535)
        assert (await client.read_analog())[7] == 65535
    with pytest.raises(IndexError):
        sim.set_analog(8, 0)
    with pytest.raises(ValueError):
        sim.set_analog(0, 70000)
