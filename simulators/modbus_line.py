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

from pymodbus.pdu import ModbusPDU

from simulators.modbus_endpoint import Devices, ModbusEndpoint
from simulators.modbus_module import SimulatedModule


class SimulatedLine(ModbusEndpoint):
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

    _already_running = "simulated line already running"

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
        super().__init__(host=host, port=port, serial_port=serial_port, baudrate=baudrate)
        self.units = dict(units)
        self.converter_timeout_s = converter_timeout_s
        self.gateway_exceptions = gateway_exceptions
        self.lock = asyncio.Lock()
        for unit, module in self.units.items():
            module.line = self
            module.unit = unit

    def _devices(self) -> Devices:
        return {unit: module.memory for unit, module in self.units.items()}

    def _reset_before_start(self) -> None:
        for module in self.units.values():
            module.reset_counters()

    def _cancel_before_stop(self) -> None:
        for module in self.units.values():
            module.memory.cancel_delayed()

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        module = self.units.get(pdu.dev_id)
        return pdu if module is None else module.trace_pdu(sending, pdu)
