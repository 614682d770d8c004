"""Hostile Modbus replies (hypothesis), over a real TCP socket: whatever a module sends,
the driver returns exactly the bits the frame carries or raises DeviceProtocolError /
DeviceUnavailable; never another exception, never bits the frame did not say."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus_io.module import ModbusIoClient
from gateway.errors import DeviceProtocolError, DeviceUnavailable
from tests.drivers.modbus_io.test_modbus_client import raw_peer
from tests.modbus_support import tcp_module

INPUTS = 16  # the generic profile: FC02, 16 discrete inputs from address 0


def _bits(data: bytes, count: int) -> list[bool]:
    """Modbus packs bit 0 first, least significant bit of the first byte (MODBUS AP §6.2)."""
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


async def _read(pdu: bytes) -> list[bool] | Exception:
    async with raw_peer(pdu) as port:
        cfg = tcp_module("io", port, profile="generic", timeout_ms=60)
        async with ModbusIoClient(cfg) as client:
            try:
                return await client.read_inputs()
            except (DeviceProtocolError, DeviceUnavailable) as exc:
                assert exc.device_id == "io"
                return exc


replies = st.one_of(
    st.binary(min_size=1, max_size=40),  # anything at all
    st.builds(  # a well-formed FC02 header with any count and any data
        lambda n, data: bytes([0x02, n]) + data,
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
    st.builds(lambda code: bytes([0x82, code]), st.integers(0, 255)),  # exception responses
)


@settings(max_examples=40, deadline=None)
@given(replies)
def test_any_reply_gives_its_own_bits_or_a_device_error(pdu: bytes) -> None:
    outcome = asyncio.run(_read(pdu))
    if isinstance(outcome, list):
        # accepted: it was an FC02 reply carrying at least 16 bits, and we got those bits
        assert pdu[0] == 0x02 and len(pdu) >= 4
        assert outcome == _bits(pdu[2:], INPUTS)
