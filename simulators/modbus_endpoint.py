"""The lifetime every simulated Modbus device shares: one pymodbus server on one endpoint.

:class:`ModbusEndpoint` serves Modbus TCP on ``host:port`` or Modbus RTU on a serial
port, starts and stops as a whole and can be switched off and on again at the same
address (:meth:`ModbusEndpoint.power_cycle`). A subclass says what it serves and
how it counts requests, and what it resets or cancels around a start, a stop and a
power cycle. :func:`serve_modbus`/:func:`stop_modbus` start and stop the server
itself, without pymodbus' ``StartAsync*Server`` helpers (they keep a global "active
server").
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar

from pymodbus.datastore import ModbusBaseDeviceContext, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer

from simulators.lifetime import StartStop

Devices = ModbusBaseDeviceContext | Mapping[int, ModbusBaseDeviceContext]
"""What an endpoint serves: one device answering every unit id, or unit id → device."""


class ModbusEndpoint(StartStop):
    """A Modbus server on a real socket (TCP) or serial port (RTU).

    Args:
        host: TCP address to bind (TCP mode).
        port: TCP port to bind; 0 picks a free one, readable from :attr:`port`
            after :meth:`start` and kept across :meth:`power_cycle`.
        serial_port: serve Modbus RTU on this serial device path instead of TCP
            (``host``/``port`` are then ignored).
        baudrate: RTU line speed (bits/s).

    Subclasses implement :meth:`_devices` and :meth:`_trace_pdu`, and may override
    the hooks :meth:`_reset_before_start`, :meth:`_cancel_before_stop` and
    :meth:`_reset_at_power_on` (no-ops here).
    """

    _already_running: ClassVar[str] = "Modbus endpoint already running"
    """The :class:`RuntimeError` message for a second :meth:`start`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        serial_port: str | None,
        baudrate: int,
    ) -> None:
        self.host = host
        self._port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self._server: ModbusBaseServer | None = None
        self.connections = 0
        """Connections accepted since construction (TCP: a master's every (re)connect)."""

    @property
    def port(self) -> int:
        """The TCP port served (the one chosen by the OS when 0 was asked)."""
        return self._port

    @property
    def running(self) -> bool:
        """True while serving."""
        return self._server is not None

    async def start(self) -> None:
        """Start serving.

        Raises:
            RuntimeError: already running.
            OSError: the TCP port cannot be bound or the serial port opened.
        """
        if self._server is not None:
            raise RuntimeError(self._already_running)
        self._reset_before_start()
        devices = self._devices()
        single = isinstance(devices, ModbusBaseDeviceContext)  # one device for every unit id
        # ModbusServerContext carries no annotations in pymodbus 3.11.4
        context = ModbusServerContext(devices=devices, single=single)  # type: ignore[no-untyped-call]
        self._server, self._port = await serve_modbus(
            context,
            host=self.host,
            port=self._port,
            serial_port=self.serial_port,
            baudrate=self.baudrate,
            trace_pdu=self._trace_pdu,
            trace_connect=self._trace_connect,
        )

    async def stop(self) -> None:
        """Stop serving: close the listener and drop every connection. Idempotent."""
        server, self._server = self._server, None
        self._cancel_before_stop()
        if server is not None:
            await stop_modbus(server)

    async def power_cycle(self, off_seconds: float) -> None:
        """Switch off for ``off_seconds``, then on again at the same address.

        While off, connections are dropped and new ones refused.
        """
        await self.stop()
        await asyncio.sleep(off_seconds)
        self._reset_at_power_on()
        await self.start()

    def _trace_connect(self, connected: bool) -> None:
        """pymodbus ``trace_connect`` hook: count accepted connections."""
        if connected:
            self.connections += 1

    # -- what a subclass says ------------------------------------------------------

    @abstractmethod
    def _devices(self) -> Devices:
        """What to serve (asked at every start): one device for every unit id, or unit
        id → device (requests for other unit ids get no answer)."""

    @abstractmethod
    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus ``trace_pdu`` hook: every request received and reply sent."""

    def _reset_before_start(self) -> None:
        """Reset what every (re)start resets (request counters)."""

    def _cancel_before_stop(self) -> None:
        """Cancel what is under way when the server stops (delayed answers)."""

    def _reset_at_power_on(self) -> None:
        """Reset what a power cycle resets, just before the endpoint comes back."""


async def serve_modbus(
    context: ModbusServerContext,
    *,
    host: str,
    port: int,
    serial_port: str | None,
    baudrate: int,
    trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU],
    trace_connect: Callable[[bool], None] | None = None,
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
            trace_connect=trace_connect,
        )
    else:
        server = ModbusTcpServer(
            context,
            address=(host, port),
            ignore_missing_devices=True,
            trace_pdu=trace_pdu,
            trace_connect=trace_connect,
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
