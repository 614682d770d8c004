"""ModbusIoClient over its ModbusLine: every pymodbus outcome becomes DeviceUnavailable
or DeviceProtocolError (or a clean CancelledError), tested on real sockets against the
simulator or a raw TCP peer that sends exactly the bytes a broken module would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from drivers.modbus_io.client import ModbusLine
from drivers.modbus_io.module import ModbusIoClient
from gateway.config.modbus_profiles import PROFILES
from gateway.config.transports import TcpTransport
from gateway.errors import DeviceProtocolError, DeviceUnavailable
from simulators.modbus_module import SimulatedModule
from tests.modbus_support import free_port, tcp_module

ADAM = PROFILES["adam-6050"]


@contextlib.asynccontextmanager
async def raw_peer(pdu: bytes, *, unit: int = 1) -> AsyncIterator[int]:
    """A TCP peer answering every request with ``pdu`` in a well-formed MBAP header
    (our transaction id echoed); yields its port."""

    handlers: set[asyncio.Task[object]] = set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                request = await reader.readexactly(12)
                header = request[:2] + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big")
                writer.write(header + bytes([unit]) + pdu)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)  # the client has hung up


async def test_connect_refused_raises_device_unavailable() -> None:
    with pytest.raises(DeviceUnavailable, match="cannot connect") as info:
        async with ModbusIoClient(tcp_module("gate-io", free_port())):
            pass
    assert info.value.device_id == "gate-io"


async def test_silent_unit_costs_one_timeout_and_the_next_call_reconnects() -> None:
    async with (
        SimulatedModule(ADAM, silent=True) as sim,
        ModbusIoClient(tcp_module("m", sim.port, timeout_ms=100)) as client,
    ):
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable, match="no answer within 100 ms"):
            await client.read_inputs()
        assert time.monotonic() - started < 0.5
        assert not client.connected  # dropped: a late answer cannot be misread
        sim.silent = False
        sim.press(0)
        assert (await client.read_inputs())[0] is True


async def test_short_reply_raises_protocol_error_with_the_frame_as_hex() -> None:
    async with (
        SimulatedModule(ADAM, short_reply=True) as sim,
        ModbusIoClient(tcp_module("m", sim.port)) as client,
    ):
        with pytest.raises(
            DeviceProtocolError,
            match="short reply to read discrete inputs: 1 data bytes, expected 2",
        ) as info:
            await client.read_inputs()
    assert info.value.raw == "00 01 00 00 00 04 01 02 01 00"


async def test_exception_response_raises_protocol_error() -> None:
    beyond_the_map = dataclasses.replace(ADAM, di_address=40)
    async with (
        SimulatedModule(ADAM) as sim,
        ModbusIoClient(tcp_module("m", sim.port), beyond_the_map) as client,
    ):
        with pytest.raises(DeviceProtocolError, match="0x02 \\(ILLEGAL_ADDRESS\\)") as info:
            await client.read_inputs()
    assert info.value.raw.endswith("01 82 02")


@pytest.mark.parametrize(
    ("pdu", "error", "match"),
    [
        (bytes.fromhex("8206"), DeviceUnavailable, "DEVICE_BUSY"),
        (bytes.fromhex("820b"), DeviceUnavailable, "GATEWAY_NO_RESPONSE"),
        (bytes.fromhex("8204"), DeviceProtocolError, "DEVICE_FAILURE"),
        (bytes.fromhex("010200"), DeviceProtocolError, "function code 0x01, expected 0x02"),
        (bytes.fromhex("0201ff"), DeviceProtocolError, "short reply"),
        (bytes.fromhex("0202ffffff"), DeviceProtocolError, "long reply.*3 data bytes"),
        (bytes.fromhex("0203ffff"), DeviceProtocolError, "byte count 3 with 2 data bytes"),
        (bytes.fromhex("0201ffff"), DeviceProtocolError, "byte count 1 with 2 data bytes"),
    ],
    ids=[
        "busy",
        "gateway-target",
        "device-failure",
        "wrong-function",
        "one-byte",
        "three-bytes",
        "count-above-data",
        "count-below-data",
    ],
)
async def test_replies_from_a_raw_peer_are_translated(
    pdu: bytes, error: type[Exception], match: str
) -> None:
    async with raw_peer(pdu) as port, ModbusIoClient(tcp_module("m", port)) as client:
        with pytest.raises(error, match=match):
            await client.read_inputs()


@pytest.mark.parametrize(
    ("pdu", "match"),
    [
        (bytes.fromhex("0403000102"), "byte count 3 with 3 data bytes, expected 2"),
        (bytes.fromhex("0402000102"), "byte count 2 with 3 data bytes, expected 2"),
        (bytes.fromhex("040400010203"), "long reply to read input registers"),
    ],
    ids=["odd-count", "data-beyond-count", "two-registers"],
)
async def test_register_replies_must_carry_exactly_what_was_asked(pdu: bytes, match: str) -> None:
    async with raw_peer(pdu) as port:
        line = ModbusLine(
            TcpTransport(type="tcp", host="127.0.0.1", port=port), timeout_ms=150, name="m"
        )
        try:
            with pytest.raises(DeviceProtocolError, match=match) as info:
                await line.read_registers("input_registers", 0, 1, unit=1, device_id="m")
        finally:
            await line.close()
    assert info.value.raw.endswith(pdu.hex(" "))
    assert line.opens == 1  # a whole frame: the stream is in step, the line stays open


async def test_bytes_that_never_form_our_reply_are_a_protocol_error() -> None:
    foreign = bytes.fromhex("020200")  # a valid FC02 reply, but from unit 7
    async with (
        raw_peer(foreign, unit=7) as port,
        ModbusIoClient(tcp_module("m", port, timeout_ms=100)) as client,
    ):
        with pytest.raises(DeviceProtocolError, match="undecodable or foreign") as info:
            await client.read_inputs()
    assert info.value.raw == "00 01 00 00 00 04 07 02 02 00"


async def test_cancellation_stays_cancellation_and_the_client_recovers() -> None:
    async with (
        SimulatedModule(ADAM, delay_s=0.3) as sim,
        ModbusIoClient(tcp_module("m", sim.port, timeout_ms=1000)) as client,
    ):
        read = asyncio.create_task(client.read_inputs())
        await asyncio.sleep(0.05)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        sim.delay_s = 0
        assert await client.read_inputs() == [False] * ADAM.di_count


async def test_fc01_reader_sees_inputs_in_the_coil_mirror_and_outputs_stay_apart() -> None:
    coil_reader = dataclasses.replace(ADAM, di_function="coils")
    async with SimulatedModule(ADAM) as sim:
        sim.press(11)
        cfg = tcp_module("m", sim.port)
        async with ModbusIoClient(cfg, coil_reader) as client:
            await client.write_output(0, True)  # coil 16, just above the inputs
            assert await client.read_inputs() == [ch == 11 for ch in range(ADAM.di_count)]
            assert sim.output(0)


async def test_write_output_switches_the_coil_and_checks_the_channel() -> None:
    async with SimulatedModule(ADAM) as sim, ModbusIoClient(tcp_module("m", sim.port)) as client:
        await client.write_output(3, True)
        assert sim.outputs == [False, False, False, True, False, False]
        await client.write_output(3, False)
        assert not sim.output(3)
        with pytest.raises(ValueError, match="output 6 does not exist"):
            await client.write_output(6, True)
    moxa = PROFILES["iologik-e1210"]
    async with (
        SimulatedModule(moxa) as sim,
        ModbusIoClient(tcp_module("e1210", sim.port, profile=moxa.name)) as client,
    ):
        with pytest.raises(ValueError, match=r"outputs 0\.\.-1"):
            await client.write_output(0, True)


async def test_power_cycle_keeps_inputs_resets_outputs_and_refuses_meanwhile() -> None:
    async with SimulatedModule(ADAM) as sim:
        sim.press(2)
        async with ModbusIoClient(tcp_module("m", sim.port)) as client:
            await client.write_output(1, True)
            cycle = asyncio.create_task(sim.power_cycle(0.3))
            await asyncio.sleep(0.05)
            assert not sim.running
            with pytest.raises(DeviceUnavailable):
                await client.read_inputs()
            await cycle
            assert (await client.read_inputs())[2] is True
            assert sim.outputs == [False] * ADAM.do_count


async def test_simulator_on_a_taken_port_raises_oserror() -> None:
    async with SimulatedModule(ADAM) as sim:
        with pytest.raises(OSError, match=f"127.0.0.1:{sim.port}"):
            await SimulatedModule(ADAM, port=sim.port).start()
