"""A simulated RS-485 line: several simulated modules as units of one Modbus endpoint.

Either on a serial port (Modbus RTU, e.g. one end of a pty pair: the masters sees
the bus directly) or behind a simulated TCP-to-RTU converter (Modbus TCP in,
RTU out, like a Moxa MGate or a USR-TCP232 box). Either way the units share one
bus, so requests are served one at a time, whichever TCP connection they came on.

A unit that does not answer (``silent``, or switched off by ``power_cycle``):

* on a serial line: no answer at all; the master's own timeout is the cost;
* behind a converter: the converter holds the bus for ``converter_timeout_s``
  waiting for the unit, then answers exception 0x0B "gateway target device
  failed to respond" (Modbus Application Protocol v1.1b3 §7), or nothing when
  ``gateway_exceptions`` is off — every other request waits meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pymodbus.datastore import ModbusServerContext
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer

from simulators.lifetime import StartStop
from simulators.modbus_module import SimulatedModule, serve_modbus, stop_modbus


class SimulatedLine(StartStop):
    """Several :class:`SimulatedModule` units on one RTU bus, served on one endpoint.

    Args:
        units: unit id → module (not started on their own; mounting them here
            makes ``module.port``/``running``/``power_cycle`` follow the line).
        host, port: TCP address of the converter (TCP mode); port 0 picks a free one.
        serial_port: serve the bus as Modbus RTU on this serial device instead.
        baudrate: RTU line speed (bits/s).
        converter_timeout_s: how long the converter waits for a silent unit.
        gateway_exceptions: the converter answers 0x0B for a silent unit.

    Raises:
        ValueError: a unit id outside 1..247, or a module already on a line.
    """

    def __init__(
        self,
        units: Mapping[int, SimulatedModule],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        converter_timeout_s: float = 0.2,
        gateway_exceptions: bool = True,
    ) -> None:
        for unit, module in units.items():
            if not 1 <= unit <= 247:
                raise ValueError(f"unit {unit}: RS-485 units are 1..247 (0 is broadcast)")
            if module.line is not None:
                raise ValueError(f"unit {unit}: the module is already on a line")
        self.units = dict(units)
        self.host = host
        self._port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.converter_timeout_s = converter_timeout_s
        self.gateway_exceptions = gateway_exceptions
        self.lock = asyncio.Lock()
        self._server: ModbusBaseServer | None = None
        for unit, module in self.units.items():
            module.line = self
            module.unit = unit

    @property
    def port(self) -> int:
        """The converter's TCP port (the one chosen by the OS when 0 was asked)."""
        return self._port

    @property
    def running(self) -> bool:
        """True while the endpoint serves."""
        return self._server is not None

    async def start(self) -> None:
        """Start serving every unit.

        Raises:
            RuntimeError: already running.
            OSError: the TCP port cannot be bound or the serial port opened.
        """
        if self._server is not None:
            raise RuntimeError("simulated line already running")
        for module in self.units.values():
            module.reset_counters()
        devices = {unit: module.memory for unit, module in self.units.items()}
        context = ModbusServerContext(devices=devices, single=False)  # type: ignore[no-untyped-call]
        self._server, self._port = await serve_modbus(
            context,
            host=self.host,
            port=self._port,
            serial_port=self.serial_port,
            baudrate=self.baudrate,
            trace_pdu=self._trace_pdu,
        )

    async def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        for module in self.units.values():
            module.memory.cancel_delayed()
        if server is not None:
            await stop_modbus(server)

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        module = self.units.get(pdu.dev_id)
        return pdu if module is None else module.trace_pdu(sending, pdu)
