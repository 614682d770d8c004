"""A simulated digital-I/O module: a real pymodbus server serving one register profile.

One :class:`SimulatedModule` object per simulated device, bound to the host/port (or
serial port) its owner chose; no process-wide state of our own and none of pymodbus'
``StartAsync*Server`` helpers (they keep a global "active server"). Faults are plain
attributes that can be changed while it runs (STYLE.md rule 12).

The memory map follows the profile (``drivers.modbus_io.profiles``, sources in
``../shared/realdata/modbus/``), all addresses 0-based PDU:

* discrete inputs (FC02): channel ``n`` at ``di_address + n``;
* coils (FC01/FC05/FC15): output ``n`` at ``do_address + n``; below and around the
  outputs the coil space mirrors the inputs at ``di_address + n``, because the
  ADAM-6000 manual Appendix B.2 lists DI as 0X (coil) space read with FC01 while
  real ADAM-6050 units answer FC02 at the same addresses (SecPi capture), so both
  kinds of reader work;
* every other bit up to the end of the map (rounded up to 16 bits) reads 0, like
  a real ADAM-6050 answering FC02 at address 12 in the SecPi capture
  ``adam6050_observed_pymodbus_repl_read_discrete_inputs_addr1_count12.json``;
  beyond it, exception 0x02 (illegal data address). Writes outside the outputs
  get 0x02; register function codes get 0x01 (illegal function).

Inputs are set as the physical contact (``closed``); the wire bit is
``closed XOR active_low`` (the profile's polarity unless overridden, e.g. the
board in ``rtu_frames_485_relay_4ch_v1_1_board.json`` reads 0 when triggered).
"""

from __future__ import annotations

import asyncio
import weakref

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusBaseDeviceContext, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer

from drivers.modbus_io.profiles import RegisterProfile
from simulators.lifetime import StartStop

_FC_READ_COILS = 0x01
_FC_READ_DISCRETE_INPUTS = 0x02
_FC_WRITE_COILS = frozenset({0x05, 0x0F})


class SimulatedModule(StartStop):
    """A Modbus DI/DO module on a real socket (TCP) or serial port (RTU).

    Args:
        profile: the register map to serve.
        host: TCP address to bind (TCP mode).
        port: TCP port to bind; 0 picks a free one, readable from :attr:`port`
            after :meth:`start` and kept across :meth:`power_cycle`.
        serial_port: serve Modbus RTU on this serial device path instead of TCP
            (e.g. the slave end of a pty; ``host``/``port`` are then ignored).
        baudrate: RTU line speed (bits/s).
        unit: answer only this unit id (others get silence, as on an RS-485 bus);
            None answers every unit id, like most Modbus TCP modules.
        active_low: wire polarity; None takes ``profile.active_low``. True means
            a closed contact reads 0 (a module with "invert" enabled, a cheap board).
        delay_s: answer every request this many seconds late.
        silent: accept the connection and the request, never answer.
        short_reply: answer bit reads with one data byte fewer than asked (a
            malformed, truncated reply).

    Attributes:
        delay_s, silent, short_reply: the fault knobs, changeable at any time.
        requests: requests received since the last (re)start.
        max_concurrent: most requests seen in progress at once (received, not
            yet answered) since the last (re)start.
    """

    def __init__(
        self,
        profile: RegisterProfile,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        unit: int | None = None,
        active_low: bool | None = None,
        delay_s: float = 0.0,
        silent: bool = False,
        short_reply: bool = False,
    ) -> None:
        self.profile = profile
        self.host = host
        self._port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.unit = unit
        self.active_low = profile.active_low if active_low is None else active_low
        self.delay_s = delay_s
        self.silent = silent
        self.short_reply = short_reply
        self.requests = 0
        self.max_concurrent = 0
        self._in_flight = 0
        self._closed = [False] * profile.di_count
        self._outputs = [False] * profile.do_count
        self._memory = _Memory(self)
        self._server: ModbusBaseServer | None = None

    # -- lifetime ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port served (the one chosen by the OS when 0 was asked)."""
        return self._port

    @property
    def running(self) -> bool:
        """True while the server listens (TCP) or holds the serial port (RTU)."""
        return self._server is not None

    async def start(self) -> None:
        """Start serving.

        Raises:
            RuntimeError: already running.
            OSError: the TCP port cannot be bound or the serial port opened.
        """
        if self._server is not None:
            raise RuntimeError("simulated module already running")
        self.requests = 0
        self.max_concurrent = 0
        self._in_flight = 0
        devices = self._memory if self.unit is None else {self.unit: self._memory}
        # ModbusServerContext and shutdown() carry no annotations in pymodbus 3.11.4
        context = ModbusServerContext(devices=devices, single=self.unit is None)  # type: ignore[no-untyped-call]
        server: ModbusBaseServer
        if self.serial_port is not None:
            server = ModbusSerialServer(
                context,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        else:
            server = ModbusTcpServer(
                context,
                address=(self.host, self._port),
                ignore_missing_devices=True,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            # pymodbus logs the OSError and raises a bare RuntimeError instead
            where = self.serial_port or f"{self.host}:{self._port}"
            raise OSError(f"cannot serve Modbus on {where}: {exc}") from exc
        if self.serial_port is None:
            listener: asyncio.Server = server.transport  # type: ignore[assignment]
            self._port = listener.sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Stop serving: close the listener and drop every connection. Idempotent."""
        server, self._server = self._server, None
        self._memory.cancel_delayed()
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            # let asyncio deliver connection_lost to the dropped connections
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def power_cycle(self, off_seconds: float) -> None:
        """Switch the module off for ``off_seconds``, then on again at the same address.

        While off, connections are dropped and new ones refused. The physical
        inputs keep their state (the contacts do not move); the outputs come back
        off (relays de-energised at power-on).
        """
        await self.stop()
        await asyncio.sleep(off_seconds)
        self._outputs = [False] * self.profile.do_count
        await self.start()

    # -- the physical side ---------------------------------------------------------

    def set_input(self, channel: int, closed: bool) -> None:
        """Set the contact on input ``channel`` (0-based, as labelled on the module).

        Raises:
            IndexError: no such input.
        """
        self._check_channel(channel, self.profile.di_count, "input")
        self._closed[channel] = closed

    def press(self, channel: int) -> None:
        """Close the contact on input ``channel`` (a panic button pressed)."""
        self.set_input(channel, True)

    def release(self, channel: int) -> None:
        """Open the contact on input ``channel``."""
        self.set_input(channel, False)

    @property
    def inputs(self) -> list[bool]:
        """Contact state of every input (True = closed), index = channel."""
        return list(self._closed)

    @property
    def outputs(self) -> list[bool]:
        """State of every output as last written by a client, index = channel."""
        return list(self._outputs)

    def output(self, channel: int) -> bool:
        """State of output ``channel`` as last written by a client.

        Raises:
            IndexError: no such output.
        """
        self._check_channel(channel, self.profile.do_count, "output")
        return self._outputs[channel]

    # -- the wire side (used by _Memory) -------------------------------------------

    def wire_input(self, channel: int) -> bool:
        """The bit input ``channel`` shows on the wire (polarity applied)."""
        return self._closed[channel] != self.active_low

    def write_output(self, channel: int, on: bool) -> None:
        """A client switched output ``channel``."""
        self._outputs[channel] = on

    # -- pymodbus hooks --------------------------------------------------------------

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
            return pdu
        self._in_flight = max(0, self._in_flight - 1)
        if self.short_reply and pdu.function_code in (_FC_READ_COILS, _FC_READ_DISCRETE_INPUTS):
            whole_bytes = (len(pdu.bits) + 7) // 8
            pdu.bits = pdu.bits[: max(0, whole_bytes - 1) * 8]
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        return b"" if sending and self.silent else packet

    @staticmethod
    def _check_channel(channel: int, count: int, what: str) -> None:
        if not 0 <= channel < count:
            raise IndexError(f"{what} {channel} does not exist (0..{count - 1})")


class _Memory(ModbusBaseDeviceContext):
    """The module's Modbus memory, computed from the owner's state on every request."""

    def __init__(self, owner: SimulatedModule) -> None:
        self._owner = owner
        p = owner.profile
        end = max(p.di_address + p.read_count, p.do_address + p.do_count, 1)
        self._size = (end + 15) // 16 * 16
        self._delayed: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()

    def cancel_delayed(self) -> None:
        """Cancel requests still waiting out ``delay_s`` (the module was switched off)."""
        for task in list(self._delayed):
            task.cancel()

    async def async_getValues(
        self, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        await self._delay()
        if func_code not in (_FC_READ_COILS, _FC_READ_DISCRETE_INPUTS, *_FC_WRITE_COILS):
            return ExcCodes.ILLEGAL_FUNCTION
        if address < 0 or address + count > self._size:
            return ExcCodes.ILLEGAL_ADDRESS
        coils = func_code != _FC_READ_DISCRETE_INPUTS
        return [self._bit(a, coils) for a in range(address, address + count)]

    async def async_setValues(
        self, func_code: int, address: int, values: list[int] | list[bool]
    ) -> None | ExcCodes:
        await self._delay()
        if func_code not in _FC_WRITE_COILS:
            return ExcCodes.ILLEGAL_FUNCTION
        p = self._owner.profile
        if not (p.do_address <= address and address + len(values) <= p.do_address + p.do_count):
            return ExcCodes.ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            self._owner.write_output(address - p.do_address + offset, bool(value))
        return None

    def _bit(self, address: int, coils: bool) -> bool:
        p = self._owner.profile
        if coils and p.do_address <= address < p.do_address + p.do_count:
            return self._owner.output(address - p.do_address)
        if p.di_address <= address < p.di_address + p.di_count:
            return self._owner.wire_input(address - p.di_address)
        return False

    async def _delay(self) -> None:
        """Wait ``delay_s`` once per request (a write touches the memory twice)."""
        task = asyncio.current_task()
        if self._owner.delay_s <= 0 or task is None or task in self._delayed:
            return
        self._delayed.add(task)
        await asyncio.sleep(self._owner.delay_s)
