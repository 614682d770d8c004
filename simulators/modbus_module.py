"""A simulated I/O module: a real pymodbus server serving one register profile.

One :class:`SimulatedModule` object per simulated device, bound to the host/port (or
serial port) its owner chose, or mounted as one unit of a
:class:`~simulators.modbus_line.SimulatedLine` (several units behind one
TCP-to-RTU converter or on one serial line). No process-wide state of our own and
none of pymodbus' ``StartAsync*Server`` helpers (they keep a global "active
server"). Faults are plain attributes that can be changed while it runs (STYLE.md
rule 12).

The memory map and the boards' quirks are :mod:`simulators.modbus_memory`.
"""

from __future__ import annotations

import asyncio

from pymodbus.pdu import ModbusPDU

from gateway.config.modbus_profiles import RegisterProfile
from simulators.modbus_endpoint import Devices, ModbusEndpoint
from simulators.modbus_memory import FC_BIT_READS, Bus, Memory


class SimulatedModule(ModbusEndpoint):
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

    _already_running = "simulated module already running or mounted on a line"

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
        super().__init__(host=host, port=port, serial_port=serial_port, baudrate=baudrate)
        self.profile = profile
        self.unit = unit
        self.active_low = profile.active_low if active_low is None else active_low
        self.delay_s = delay_s
        self.silent = silent
        self.short_reply = short_reply
        self.requests = 0
        self.max_concurrent = 0
        self.line: Bus | None = None
        self._powered = True
        self._in_flight = 0
        self._closed = [False] * profile.di_count
        self._analog = [0] * profile.ai_count
        self._outputs = [False] * profile.do_count
        self.memory = Memory(self)

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
        if self.line is not None:
            raise RuntimeError(self._already_running)
        await super().start()

    async def power_cycle(self, off_seconds: float) -> None:
        """Switch the module off for ``off_seconds``, then on again at the same address.

        While off, connections are dropped and new ones refused (a line's unit just
        stops answering). The physical inputs keep their state (the contacts do not
        move); the outputs come back off (relays de-energised at power-on).
        """
        if self.line is None:
            await super().power_cycle(off_seconds)
            return
        self._powered = False
        await asyncio.sleep(off_seconds)
        self._reset_at_power_on()
        self._powered = True

    def reset_counters(self) -> None:
        """Zero ``requests`` and ``max_concurrent`` (done at every start)."""
        self.requests = 0
        self.max_concurrent = 0
        self._in_flight = 0

    def _devices(self) -> Devices:
        return self.memory if self.unit is None else {self.unit: self.memory}

    def _reset_before_start(self) -> None:
        self.reset_counters()

    def _cancel_before_stop(self) -> None:
        self.memory.cancel_delayed()

    def _reset_at_power_on(self) -> None:
        self._outputs = [False] * self.profile.do_count

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
        if self.short_reply and pdu.function_code in FC_BIT_READS:
            whole_bytes = (len(pdu.bits) + 7) // 8
            pdu.bits = pdu.bits[: max(0, whole_bytes - 1) * 8]
        return pdu

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return self.trace_pdu(sending, pdu)


def _check_channel(channel: int, count: int, what: str) -> None:
    if not 0 <= channel < count:
        raise IndexError(f"{what} {channel} does not exist (0..{count - 1})")
