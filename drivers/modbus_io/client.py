"""Modbus connections to I/O modules' lines: the only file that imports pymodbus.

A :class:`ModbusLine` is one connection to one physical line — a module's own TCP
socket, a serial port with several RS-485 units, or one TCP-to-RTU converter with
several units behind it — shared by every unit on it, one request at a time. What
to ask one module (its unit and register profile) is
:class:`drivers.modbus_io.module.ModbusIoClient`'s job.

Every pymodbus outcome is translated here (STYLE.md rule 3), so nothing above this
file knows that pymodbus 3.11 reports some failures as values and others as
exceptions:

=============================================================  =====================
pymodbus outcome                                               raised here
=============================================================  =====================
``connect()`` returns False (refused, unreachable, no port)    DeviceUnavailable
``ConnectionException`` (transport gone before the request)    DeviceUnavailable
``ModbusIOException`` "No response received" (timeout)         DeviceUnavailable
timeout, but bytes did arrive that never formed a frame        DeviceProtocolError
exception response 0x06 busy, 0x0A/0x0B gateway path/target    DeviceUnavailable
any other exception response (``isError()``), e.g. 0x02       DeviceProtocolError
wrong function code, more or fewer data bytes than asked,     DeviceProtocolError
byte count disagreeing with its data, bad echo
=============================================================  =====================

``DeviceProtocolError.raw`` is the received frame as hex (MBAP or RTU ADU, as seen
on the wire, captured with pymodbus' ``trace_packet`` hook) so a log line can be
pasted into a test (STYLE.md rule 9).

pymodbus 3.11.4 quirks handled here (read in ``client/base.py``,
``transaction/transaction.py``, ``transport/transport.py``):

* the unit is ``device_id=`` (``slave=`` is gone), given per request, so one
  client serves every unit of a line;
* ``reconnect_delay=0`` switches off pymodbus' own reconnect task: the poller
  owns backoff;
* ``retries=0``: one silent unit costs exactly one ``timeout_ms`` per attempt;
* ``TransactionManager.execute`` turns a ``CancelledError`` into
  ``ModbusIOException("Request cancelled outside pymodbus.")``; we turn it back
  into ``CancelledError`` when our task is being cancelled;
* a silent unit costs only its own time: one unit's timeout leaves the shared
  connection open for its neighbours. pymodbus' ``FramerBase.handleFrame`` skips a
  frame whose unit id (and, for MBAP, transaction id) is not the request's, so a
  late answer of the silent unit can never be taken for a neighbour's answer; the
  unit's own breaker (:meth:`~drivers.modbus_io.poller.ModulePoller.next_start`)
  keeps its next request one backoff window away;
* a converter (Modbus TCP to RTU, a TCP line of several units) goes on waiting for
  a silent unit after we gave up, often 1 s (Moxa MGate's default) against our
  500 ms, and serves one request at a time: what we send meanwhile queues behind
  it, times out too, and the queue grows (a review of 2026-12-06: a panic 18 s late
  behind two silent neighbours). After a unit timed out there, the next request
  waits until the converter answers for it (its late reply, exception 0x0B) or a
  little past ``converter_timeout_ms`` after the timed-out request was sent (+10 %
  and 50 ms: sent just as it gives up, the next one would still meet a busy bus);
  the late reply is a whole frame pymodbus skips (its transaction id is not the
  request's), not a stream out of step;
* the line itself is taken for failed, and the transport closed so the next call
  reconnects, when the connection is lost, when ``min(2, units)`` *different*
  units time out with no good answer in between (a dead converter or bus, or a
  line of one unit), or when bytes arrived that never formed a frame (the stream
  is out of step). Counted in :attr:`ModbusLine.opens`.

Addresses are 0-based PDU addresses from :mod:`gateway.config.modbus_profiles`
(sources: ``../shared/realdata/modbus/*.json``, see that module).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypedDict

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.config.transports import RtuTransport, TcpTransport
from gateway.errors import DeviceProtocolError, DeviceUnavailable

_PymodbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient
BitTable = Literal["coils", "discrete_inputs"]
RegisterTable = Literal["input_registers", "holding_registers"]


class _CommonArgs(TypedDict):
    """Keyword arguments both pymodbus async clients take, the same for TCP and RTU."""

    name: str
    reconnect_delay: float
    reconnect_delay_max: float
    timeout: float
    retries: int
    trace_packet: Callable[[bool, bytes], bytes]


_FC = {
    "coils": 0x01,
    "discrete_inputs": 0x02,
    "holding_registers": 0x03,
    "input_registers": 0x04,
    "write_coil": 0x05,
    "write_register": 0x06,
}

_TRANSIENT_EXCEPTIONS = frozenset(
    {ExcCodes.DEVICE_BUSY, ExcCodes.GATEWAY_PATH_UNAVIABLE, ExcCodes.GATEWAY_NO_RESPONSE}
)
"""Modbus Application Protocol v1.1b3 §7: 0x06 busy, 0x0A/0x0B the gateway cannot reach
the unit behind it. These say "not now", not "your request is wrong"."""


class ModbusLine:
    """One Modbus master connection to one physical line, shared by its units.

    All requests share one ``asyncio.Lock`` (one lock per physical line, STYLE.md
    rule 7): a poll of one unit and an output write to another never overlap on
    the wire. The connection opens on the first request and reopens on demand
    after it was lost or closed after a timeout.

    One unit's timeout does not close the connection the other units use; it is
    closed when the line itself fails (see the module docstring).

    Args:
        transport: where the line is (``[[modules]] transport``).
        timeout_ms: how long one request waits for its answer.
        name: for logs and pymodbus (the line or module id).
        units: how many units share the line (1 for a module's own socket); with
            two or more, the connection is closed only when two different units
            time out in a row.
        converter_timeout_ms: how long a converter (a TCP line of two or more
            units) waits for a unit before it gives up (module docstring).
    """

    def __init__(
        self,
        transport: TcpTransport | RtuTransport,
        *,
        timeout_ms: int,
        name: str,
        units: int = 1,
        converter_timeout_ms: int = 0,
    ):
        self._transport = transport
        self._timeout_ms = timeout_ms
        self._name = name
        self._lock = asyncio.Lock()
        self._client: _PymodbusClient | None = None
        self._rx = b""
        # A converter (Modbus TCP to RTU) with several units behind it goes on waiting
        # for a silent unit after we gave up; what we send meanwhile queues behind it.
        self._converter = isinstance(transport, TcpTransport) and units > 1
        self._silent_to_fail = min(2, max(1, units))
        self._silent_units: set[int] = set()
        self._opens = 0
        self._hold_s = converter_timeout_ms / 1000
        self._sent_at = 0.0  # monotonic time the last request was sent
        self._drain_until: float | None = None
        self._heard = asyncio.Event()

    @property
    def name(self) -> str:
        """The line's name."""
        return self._name

    @property
    def opens(self) -> int:
        """How many times the connection was opened (1 on a healthy line; each reopen
        after a line failure adds one)."""
        return self._opens

    @property
    def connected(self) -> bool:
        """True while a transport is open (the units may still be silent)."""
        return self._client is not None and self._client.connected

    async def connect(self, device_id: str) -> None:
        """Open the connection unless it is open already.

        Raises:
            DeviceUnavailable: refused, no TCP handshake within ``timeout_ms``, or the
                serial port cannot be opened; carries ``device_id``.
        """
        async with self._lock:
            await self._ensure_connected(device_id)

    async def close(self) -> None:
        """Close the connection; safe to call twice. The next request reconnects."""
        self._drop()
        # let asyncio run the transport's connection_lost callback now, not after
        # the caller has moved on
        await asyncio.sleep(0)

    async def read_bits(
        self, table: BitTable, address: int, count: int, *, unit: int, device_id: str
    ) -> list[bool]:
        """Read ``count`` bits from ``address`` (FC01 coils or FC02 discrete inputs).

        Returns:
            Exactly ``count`` booleans as they are on the wire.

        Raises:
            DeviceUnavailable: cannot connect, timeout, connection lost, or a
                busy/gateway exception response.
            DeviceProtocolError: another exception response, a reply with the wrong
                function code, more or fewer bits than asked, or a byte count that
                disagrees with its data; ``raw`` is the frame as hex.
        """
        async with self._lock:
            reply = await self._request(
                lambda c: (c.read_coils if table == "coils" else c.read_discrete_inputs)(
                    address, count=count, device_id=unit
                ),
                table,
                unit,
                device_id,
            )
            self._check_size(len(reply.bits) // 8, (count + 7) // 8, table, unit, device_id)
            return list(reply.bits[:count])

    async def read_registers(
        self, table: RegisterTable, address: int, count: int, *, unit: int, device_id: str
    ) -> list[int]:
        """Read ``count`` 16-bit registers (FC04 input or FC03 holding registers).

        Returns:
            ``count`` unsigned values 0..65535.

        Raises:
            DeviceUnavailable, DeviceProtocolError: as :meth:`read_bits`.
        """
        async with self._lock:
            return await self._read_registers(table, address, count, unit, device_id)

    async def write_coil(self, address: int, on: bool, *, unit: int, device_id: str) -> None:
        """Switch one coil with FC05 and check the echo.

        Raises:
            DeviceUnavailable: as :meth:`read_bits`.
            DeviceProtocolError: an exception response, or the echo does not repeat
                our address and value.
        """
        async with self._lock:
            reply = await self._request(
                lambda c: c.write_coil(address, on, device_id=unit), "write_coil", unit, device_id
            )
            echoed = bool(reply.bits and reply.bits[0])
            if reply.address != address or echoed != on:
                raise self._protocol_error(
                    f"write coil echo mismatch: sent address {address} value {on}, "
                    f"got address {reply.address} value {echoed}",
                    device_id,
                )

    async def write_register_bit(
        self, address: int, bit: int, on: bool, *, unit: int, device_id: str
    ) -> None:
        """Set one bit of a holding register: FC03 read, FC06 write, in one turn of the line.

        Raises:
            DeviceUnavailable: as :meth:`read_bits`.
            DeviceProtocolError: an exception response or a wrong echo.
        """
        async with self._lock:
            (word,) = await self._read_registers("holding_registers", address, 1, unit, device_id)
            value = word | (1 << bit) if on else word & ~(1 << bit)
            reply = await self._request(
                lambda c: c.write_register(address, value, device_id=unit),
                "write_register",
                unit,
                device_id,
            )
            if reply.address != address or list(reply.registers[:1]) != [value]:
                raise self._protocol_error(
                    f"write register echo mismatch: sent address {address} value {value}",
                    device_id,
                )

    # -- internals ---------------------------------------------------------------

    async def _read_registers(
        self, table: RegisterTable, address: int, count: int, unit: int, device_id: str
    ) -> list[int]:
        reply = await self._request(
            lambda c: (
                c.read_input_registers if table == "input_registers" else c.read_holding_registers
            )(address, count=count, device_id=unit),
            table,
            unit,
            device_id,
        )
        self._check_size(2 * len(reply.registers), 2 * count, table, unit, device_id)
        return [int(r) & 0xFFFF for r in reply.registers[:count]]

    async def _request(
        self,
        call: Callable[[_PymodbusClient], Awaitable[ModbusPDU]],
        function: str,
        unit: int,
        device_id: str,
    ) -> ModbusPDU:
        """Connect if needed, send one request, and check its reply (lock held by the caller)."""
        await self._drain()  # before the request is made: a stop meanwhile leaves none
        client = await self._ensure_connected(device_id)
        reply = await self._execute(call(client), device_id, unit)
        what = function.replace("_", " ")
        what = what if function.startswith("write") else f"read {what}"
        return self._check(reply, _FC[function], what, device_id)

    def _make_client(self) -> _PymodbusClient:
        transport = self._transport
        common = _CommonArgs(
            name=self._name,
            reconnect_delay=0.0,  # 0 = no pymodbus reconnect task; the poller backs off
            reconnect_delay_max=0.0,
            timeout=self._timeout_ms / 1000,
            retries=0,
            trace_packet=self._trace,
        )
        if isinstance(transport, TcpTransport):
            return AsyncModbusTcpClient(transport.host, port=transport.port, **common)
        return AsyncModbusSerialClient(
            transport.port,
            baudrate=transport.baudrate,
            parity=transport.parity,
            stopbits=transport.stopbits,
            bytesize=transport.bytesize,
            **common,
        )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus ``trace_packet`` hook: keep what the line sent since our request."""
        # pymodbus hands us its whole receive buffer each time, so the last call
        # holds every byte received for the current request.
        self._rx = b"" if sending else data
        if not sending:
            self._heard.set()
        return data

    async def _ensure_connected(self, device_id: str) -> _PymodbusClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._make_client()
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnavailable(f"connect failed: {exc}", device_id=device_id) from exc
        if not ok or not client.connected:
            client.close()
            raise DeviceUnavailable(f"cannot connect to {self._where()}", device_id=device_id)
        self._client = client
        self._opens += 1
        self._silent_units.clear()
        return client

    async def _drain(self) -> None:
        """After a unit timed out behind a converter: wait until the converter answers
        for it (its late reply, or exception 0x0B) or a little past
        ``converter_timeout_ms`` after that request was sent, so that no request queues
        behind it (module docstring)."""
        until, self._drain_until = self._drain_until, None
        if until is None:
            return
        left = until - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), left)

    async def _execute(self, call: Awaitable[ModbusPDU], device_id: str, unit: int) -> ModbusPDU:
        """Await one pymodbus request and translate what it raises."""
        self._rx = b""
        self._sent_at = time.monotonic()
        try:
            reply = await call
        except ConnectionException as exc:
            self._drop()
            raise DeviceUnavailable(f"connection lost: {exc}", device_id=device_id) from exc
        except ModbusException as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus turned our cancellation into ModbusIOException
                self._drop()
                raise asyncio.CancelledError from exc
            received = self._rx
            if received and not (self._converter and _late_answers(received)):
                self._drop()
                raise DeviceProtocolError(
                    f"no valid answer within {self._timeout_ms} ms, only undecodable "
                    f"or foreign bytes ({exc})",
                    device_id=device_id,
                    raw=received.hex(" "),
                ) from exc
            self._silent_units.add(unit)
            line_failed = len(self._silent_units) >= self._silent_to_fail
            if self._converter:  # on a new connection too: the converter is still busy
                self._heard.clear()
                # A little past the converter's timeout: sent just as it gives up, the
                # next request would still meet a busy bus.
                self._drain_until = self._sent_at + self._hold_s * 1.1 + 0.05
            if line_failed:
                self._drop()
            raise DeviceUnavailable(
                f"no answer within {self._timeout_ms} ms from {self._where()} unit {unit}"
                + ("; line closed" if line_failed else ""),
                device_id=device_id,
            ) from exc
        self._silent_units.clear()
        return reply

    def _check(self, reply: ModbusPDU, function: int, what: str, device_id: str) -> ModbusPDU:
        """Turn an exception response or a wrong reply into an exception."""
        if reply.isError():
            code = reply.exception_code
            try:
                name = ExcCodes(code).name
            except ValueError:
                name = "unknown"
            message = f"{what}: exception response {code:#04x} ({name})"
            if code in _TRANSIENT_EXCEPTIONS:
                raise DeviceUnavailable(message, device_id=device_id)
            raise self._protocol_error(message, device_id)
        if reply.function_code != function:
            raise self._protocol_error(
                f"{what}: reply has function code {reply.function_code:#04x}, "
                f"expected {function:#04x}",
                device_id,
            )
        return reply

    def _check_size(
        self, decoded: int, expected: int, table: str, unit: int, device_id: str
    ) -> None:
        """A read reply carries exactly the data bytes asked for, and says so.

        MODBUS Application Protocol v1.1b3 §6.1-6.4: the byte count is ⌈N/8⌉ for N
        bits, 2N for N registers, and that many data bytes follow. pymodbus 3.11
        unpacks a bit reply from whatever follows the byte count and a register
        reply by the byte count alone, so over MBAP (whose length field frames the
        reply, not the byte count) both fields are checked here on the frame as
        received; an RTU reply is framed by its byte count and its CRC.

        Args:
            decoded: data bytes pymodbus decoded (8 bits or 2 bytes per register).
            expected: data bytes the request asks for.

        Raises:
            DeviceProtocolError: fewer or more data bytes than asked, or a byte
                count that disagrees with the data that follows it.
        """
        what = table.replace("_", " ")
        if decoded != expected:
            size = "short" if decoded < expected else "long"
            raise self._protocol_error(
                f"{size} reply to read {what}: {decoded} data bytes, expected {expected}",
                device_id,
            )
        if isinstance(self._transport, TcpTransport):
            pdu = _last_pdu(self._rx, unit, _FC[table])
            count = pdu[1] if pdu is not None and len(pdu) > 1 else None
            if pdu is not None and not count == len(pdu) - 2 == expected:
                raise self._protocol_error(
                    f"reply to read {what}: byte count {count} with "
                    f"{max(0, len(pdu) - 2)} data bytes, expected {expected}",
                    device_id,
                )

    def _protocol_error(self, message: str, device_id: str) -> DeviceProtocolError:
        return DeviceProtocolError(message, device_id=device_id, raw=self._rx.hex(" "))

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _where(self) -> str:
        t = self._transport
        return f"{t.host}:{t.port}" if isinstance(t, TcpTransport) else t.port


def _last_pdu(received: bytes, unit: int, function: int) -> bytes | None:
    """The PDU of the last whole MBAP frame in ``received`` from ``unit`` with ``function``.

    ``received`` is what the line received since the request (a late answer to an
    earlier request may come before the reply). MBAP (Modbus Messaging on TCP/IP
    v1.0b §3.1.3): transaction id 2, protocol id 2, length 2 (of what follows),
    unit 1, then the PDU.
    """
    found = None
    while len(received) >= 8:
        size = 6 + int.from_bytes(received[4:6], "big")
        frame, received = received[:size], received[size:]
        if len(frame) == size and frame[6] == unit and frame[7] == function:
            found = frame[7:]
    return found


def _late_answers(received: bytes) -> bool:
    """Is ``received`` nothing but whole MBAP frames (answers to requests that timed
    out earlier, which a converter sends late)? Such bytes leave the stream in step:
    pymodbus skips a frame whose transaction id is not the request's."""
    while received:
        if len(received) < 8 or received[2:4] != b"\x00\x00":
            return False
        size = 6 + int.from_bytes(received[4:6], "big")
        if len(received) < size:
            return False
        received = received[size:]
    return True
