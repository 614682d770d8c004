"""A simulated I/O module: a real pymodbus server serving one register profile.

One :class:`SimulatedModule` object per simulated device, bound to the host/port (or
serial port) its owner chose, or mounted as one unit of a
:class:`~simulators.modbus_line.SimulatedLine` (several units behind one
TCP-to-RTU converter or on one serial line). No process-wide state of our own and
none of pymodbus' ``StartAsync*Server`` helpers (they keep a global "active
server"). Faults are plain attributes that can be changed while it runs (STYLE.md
rule 12).

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
  get 0x02;
* registers: analog channel ``n`` at ``ai_address + n`` in the profile's
  ``ai_function`` table (FC04 or FC03); for a ``word`` DO profile (ADAM-6051) the
  holding register ``do_word_address`` holds the outputs as bits (FC03/FC06).
  Other registers get 0x02, other function codes 0x01 (illegal function).

Quirks served as the boards have them: a bit read shorter than the profile's
``min_read_count`` gets no answer at all ('485 Relay 4CH v1.1': "count=4 gets no
reply"). Inputs are set as the physical contact (``closed``); the wire bit is
``closed XOR active_low`` (the profile's polarity unless overridden).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusBaseDeviceContext, ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer

from drivers.modbus_io.profiles import RegisterProfile
from simulators.lifetime import StartStop

if TYPE_CHECKING:
    from simulators.modbus_line import SimulatedLine

_FC_READ_COILS = 0x01
_FC_READ_DISCRETE_INPUTS = 0x02
_FC_READ_HOLDING = 0x03
_FC_READ_INPUT_REGISTERS = 0x04
_FC_WRITE_REGISTER = 0x06
_FC_WRITE_COILS = frozenset({0x05, 0x0F})
_FC_BIT_READS = frozenset({_FC_READ_COILS, _FC_READ_DISCRETE_INPUTS})


class SimulatedModule(StartStop):
    """A Modbus I/O module on a real socket (TCP) or serial port (RTU), or a line's unit.

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
        self.line: SimulatedLine | None = None
        self._powered = True
        self._in_flight = 0
        self._closed = [False] * profile.di_count
        self._analog = [0] * profile.ai_count
        self._outputs = [False] * profile.do_count
        self.memory = _Memory(self)
        self._server: ModbusBaseServer | None = None

    # -- lifetime ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port served (the line's when the module is a line's unit)."""
        return self.line.port if self.line is not None else self._port

    @property
    def running(self) -> bool:
        """True while it answers: its server is up, or its line's and it is powered."""
        if self.line is not None:
            return self.line.running and self._powered
        return self._server is not None

    async def start(self) -> None:
        """Start serving on its own address.

        Raises:
            RuntimeError: already running, or mounted on a line (start the line).
            OSError: the TCP port cannot be bound or the serial port opened.
        """
        if self._server is not None or self.line is not None:
            raise RuntimeError("simulated module already running or mounted on a line")
        self.reset_counters()
        devices = self.memory if self.unit is None else {self.unit: self.memory}
        # ModbusServerContext carries no annotations in pymodbus 3.11.4
        context = ModbusServerContext(devices=devices, single=self.unit is None)  # type: ignore[no-untyped-call]
        self._server, self._port = await serve_modbus(
            context,
            host=self.host,
            port=self._port,
            serial_port=self.serial_port,
            baudrate=self.baudrate,
            trace_pdu=self.trace_pdu,
        )

    async def stop(self) -> None:
        """Stop serving: close the listener and drop every connection. Idempotent."""
        server, self._server = self._server, None
        self.memory.cancel_delayed()
        if server is not None:
            await stop_modbus(server)

    async def power_cycle(self, off_seconds: float) -> None:
        """Switch the module off for ``off_seconds``, then on again at the same address.

        While off, connections are dropped and new ones refused (a line's unit just
        stops answering). The physical inputs keep their state (the contacts do not
        move); the outputs come back off (relays de-energised at power-on).
        """
        if self.line is not None:
            self._powered = False
            await asyncio.sleep(off_seconds)
            self._outputs = [False] * self.profile.do_count
            self._powered = True
            return
        await self.stop()
        await asyncio.sleep(off_seconds)
        self._outputs = [False] * self.profile.do_count
        await self.start()

    def reset_counters(self) -> None:
        """Zero ``requests`` and ``max_concurrent`` (done at every start)."""
        self.requests = 0
        self.max_concurrent = 0
        self._in_flight = 0

    # -- the physical side ---------------------------------------------------------

    def set_input(self, channel: int, closed: bool) -> None:
        """Set the contact on input ``channel`` (0-based, as labelled on the module).

        Raises:
            IndexError: no such input.
        """
        _check_channel(channel, self.profile.di_count, "input")
        self._closed[channel] = closed

    def press(self, channel: int) -> None:
        """Close the contact on input ``channel`` (a panic button pressed)."""
        self.set_input(channel, True)

    def release(self, channel: int) -> None:
        """Open the contact on input ``channel``."""
        self.set_input(channel, False)

    def set_analog(self, channel: int, value: int) -> None:
        """Set analog input ``channel`` to the raw ``value`` (0..65535).

        Raises:
            IndexError: no such analog input.
            ValueError: ``value`` outside 0..65535.
        """
        _check_channel(channel, self.profile.ai_count, "analog input")
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"raw value {value} is not 0..65535")
        self._analog[channel] = value

    @property
    def inputs(self) -> list[bool]:
        """Contact state of every input (True = closed), index = channel."""
        return list(self._closed)

    @property
    def analog(self) -> list[int]:
        """Raw value of every analog input, index = channel."""
        return list(self._analog)

    @property
    def outputs(self) -> list[bool]:
        """State of every output as last written by a client, index = channel."""
        return list(self._outputs)

    def output(self, channel: int) -> bool:
        """State of output ``channel`` as last written by a client.

        Raises:
            IndexError: no such output.
        """
        _check_channel(channel, self.profile.do_count, "output")
        return self._outputs[channel]

    # -- the wire side (used by _Memory) -------------------------------------------

    @property
    def answering(self) -> bool:
        """False while silent or switched off: requests get no answer."""
        return self._powered and not self.silent

    def wire_input(self, channel: int) -> bool:
        """The bit input ``channel`` shows on the wire (polarity applied)."""
        return self._closed[channel] != self.active_low

    def write_output(self, channel: int, on: bool) -> None:
        """A client switched output ``channel``."""
        self._outputs[channel] = on

    def unanswered(self) -> None:
        """A request got no answer (silence): it is no longer in flight."""
        self._in_flight = max(0, self._in_flight - 1)

    # -- pymodbus hooks --------------------------------------------------------------

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus ``trace_pdu`` hook: count requests, truncate replies when asked."""
        if not sending:
            self.requests += 1
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
            return pdu
        self._in_flight = max(0, self._in_flight - 1)
        if self.short_reply and pdu.function_code in _FC_BIT_READS:
            whole_bytes = (len(pdu.bits) + 7) // 8
            pdu.bits = pdu.bits[: max(0, whole_bytes - 1) * 8]
        return pdu


async def serve_modbus(
    context: ModbusServerContext,
    *,
    host: str,
    port: int,
    serial_port: str | None,
    baudrate: int,
    trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU],
) -> tuple[ModbusBaseServer, int]:
    """Start a pymodbus server (RTU on ``serial_port``, else TCP on ``host:port``).

    Requests for unit ids not in ``context`` get no answer (an RS-485 bus).

    Returns:
        The server and the TCP port it listens on (``port`` for RTU).

    Raises:
        OSError: the TCP port cannot be bound or the serial port opened.
    """
    server: ModbusBaseServer
    if serial_port is not None:
        server = ModbusSerialServer(
            context,
            framer=FramerType.RTU,
            port=serial_port,
            baudrate=baudrate,
            ignore_missing_devices=True,
            trace_pdu=trace_pdu,
        )
    else:
        server = ModbusTcpServer(
            context, address=(host, port), ignore_missing_devices=True, trace_pdu=trace_pdu
        )
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        # pymodbus logs the OSError and raises a bare RuntimeError instead
        where = serial_port or f"{host}:{port}"
        raise OSError(f"cannot serve Modbus on {where}: {exc}") from exc
    if serial_port is None:
        listener: asyncio.Server = server.transport  # type: ignore[assignment]
        port = listener.sockets[0].getsockname()[1]
    return server, port


async def stop_modbus(server: ModbusBaseServer) -> None:
    """Shut a server down and let asyncio deliver ``connection_lost`` to its connections."""
    await server.shutdown()  # type: ignore[no-untyped-call]
    await asyncio.sleep(0)
    await asyncio.sleep(0)


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
        self._entered: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()

    def cancel_delayed(self) -> None:
        """Cancel requests still waiting out ``delay_s`` (the module was switched off)."""
        for task in list(self._entered):
            task.cancel()

    async def async_getValues(
        self, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        refused = await self._enter()
        if refused is not None:
            return refused
        p = self._owner.profile
        if func_code in _FC_BIT_READS and count < p.min_read_count:
            self._no_answer()  # the '485 Relay 4CH' board ignores short reads
        if func_code in (_FC_READ_HOLDING, _FC_READ_INPUT_REGISTERS, _FC_WRITE_REGISTER):
            return self._registers(func_code, address, count)
        if func_code not in (*_FC_BIT_READS, *_FC_WRITE_COILS):
            return ExcCodes.ILLEGAL_FUNCTION
        if address < 0 or address + count > self._size:
            return ExcCodes.ILLEGAL_ADDRESS
        coils = func_code != _FC_READ_DISCRETE_INPUTS
        return [self._bit(a, coils) for a in range(address, address + count)]

    async def async_setValues(
        self, func_code: int, address: int, values: list[int] | list[bool]
    ) -> None | ExcCodes:
        refused = await self._enter()
        if refused is not None:
            return refused
        p = self._owner.profile
        if func_code == _FC_WRITE_REGISTER and p.do_function == "word":
            if address != p.do_word_address:
                return ExcCodes.ILLEGAL_ADDRESS
            for channel in range(p.do_count):
                self._owner.write_output(channel, bool(int(values[0]) >> channel & 1))
            return None
        if func_code not in _FC_WRITE_COILS or p.do_function != "coil":
            return ExcCodes.ILLEGAL_FUNCTION
        if not (p.do_address <= address and address + len(values) <= p.do_address + p.do_count):
            return ExcCodes.ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            self._owner.write_output(address - p.do_address + offset, bool(value))
        return None

    def _registers(self, func_code: int, address: int, count: int) -> list[int] | ExcCodes:
        p, owner = self._owner.profile, self._owner
        ai_code = (
            _FC_READ_INPUT_REGISTERS if p.ai_function == "input_registers" else _FC_READ_HOLDING
        )
        start = address - p.ai_address
        if func_code == ai_code and start >= 0 and start + count <= p.ai_count:
            return owner.analog[start : start + count]
        word = p.do_function == "word" and func_code != _FC_READ_INPUT_REGISTERS
        if word and address == p.do_word_address and count == 1:
            return [sum(1 << ch for ch, on in enumerate(owner.outputs) if on)]
        return ExcCodes.ILLEGAL_ADDRESS

    def _bit(self, address: int, coils: bool) -> bool:
        p = self._owner.profile
        outputs = p.do_function == "coil" and p.do_address <= address < p.do_address + p.do_count
        if coils and outputs:
            return self._owner.output(address - p.do_address)
        if p.di_address <= address < p.di_address + p.di_count:
            return self._owner.wire_input(address - p.di_address)
        return False

    def _no_answer(self) -> NoReturn:
        """Give this request no answer at all (pymodbus skips unknown units)."""
        self._owner.unanswered()
        raise NoSuchIdException("no answer")

    async def _enter(self) -> ExcCodes | None:
        """Once per request (a write touches the memory twice): take the line, wait
        ``delay_s``, and go silent when the module is.

        Returns:
            The exception a converter answers for a silent unit, or None.
        """
        task = asyncio.current_task()
        if task is None or task in self._entered:
            return None
        self._entered.add(task)
        owner = self._owner
        line = owner.line
        if line is None:
            if owner.delay_s > 0:
                await asyncio.sleep(owner.delay_s)
            if not owner.answering:
                self._no_answer()
            return None
        async with line.lock:  # one request at a time on the RS-485 side
            if owner.answering:
                if owner.delay_s > 0:
                    await asyncio.sleep(owner.delay_s)
                return None
            if line.serial_port is not None:
                self._no_answer()
            await asyncio.sleep(line.converter_timeout_s)  # the converter waits in vain
        if line.gateway_exceptions:
            return ExcCodes.GATEWAY_NO_RESPONSE
        self._no_answer()
