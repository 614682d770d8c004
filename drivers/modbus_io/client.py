"""One Modbus connection to one digital-I/O module: the only file that imports pymodbus.

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
wrong function code, fewer bits than asked, bad FC05 echo      DeviceProtocolError
=============================================================  =====================

``DeviceProtocolError.raw`` is the received frame as hex (MBAP or RTU ADU, as seen
on the wire, captured with pymodbus' ``trace_packet`` hook) so a log line can be
pasted into a test (STYLE.md rule 9).

pymodbus 3.11.4 quirks handled here (read in ``client/base.py``,
``transaction/transaction.py``, ``transport/transport.py``):

* the unit is ``device_id=`` (``slave=`` is gone);
* ``reconnect_delay=0`` switches off pymodbus' own reconnect task: the poller
  owns backoff;
* ``retries=0``: one silent unit costs exactly one ``timeout_ms`` per attempt;
* ``TransactionManager.execute`` turns a ``CancelledError`` into
  ``ModbusIOException("Request cancelled outside pymodbus.")``; we turn it back
  into ``CancelledError`` when our task is being cancelled;
* after any timeout or lost connection we close the transport, and the next call
  reconnects: a late answer can then never be taken for the answer to the next
  request (RTU frames carry no transaction id, and pymodbus' own server stamps a
  delayed answer with the newest transaction id of the connection).

Addresses are 0-based PDU addresses from :mod:`drivers.modbus_io.profiles`
(sources: ``../shared/realdata/modbus/*.json``, see that module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypedDict

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.modbus_io.profiles import PROFILES, RegisterProfile
from gateway.config import ModuleConfig, TcpTransport
from gateway.errors import DeviceProtocolError, DeviceUnavailable

_PymodbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class _CommonArgs(TypedDict):
    """Keyword arguments both pymodbus async clients take, the same for TCP and RTU."""

    name: str
    reconnect_delay: float
    reconnect_delay_max: float
    timeout: float
    retries: int
    trace_packet: Callable[[bool, bytes], bytes]


_FC_READ = {"coils": 0x01, "discrete_inputs": 0x02}
_FC_WRITE_COIL = 0x05
_TRANSIENT_EXCEPTIONS = frozenset(
    {ExcCodes.DEVICE_BUSY, ExcCodes.GATEWAY_PATH_UNAVIABLE, ExcCodes.GATEWAY_NO_RESPONSE}
)
"""Modbus Application Protocol v1.1b3 §7: 0x06 busy, 0x0A/0x0B the gateway cannot reach
the unit behind it. These say "not now", not "your request is wrong"."""


class ModbusIoClient:
    """An async Modbus master for one module, TCP or RTU, one request at a time.

    Use as ``async with ModbusIoClient(cfg) as client: bits = await client.read_inputs()``.
    The connection is opened in ``__aenter__`` and reopened on demand by the next
    call after it was lost or closed after a timeout. All calls share one
    ``asyncio.Lock`` (one lock per physical line, STYLE.md rule 7), so a poll and
    an output write never overlap on the wire.

    Args:
        cfg: the module's configuration (transport, ``unit``, ``timeout_ms``).
        profile: its register profile; defaults to ``PROFILES[cfg.profile]``.
    """

    def __init__(self, cfg: ModuleConfig, profile: RegisterProfile | None = None) -> None:
        self._cfg = cfg
        self._profile = profile if profile is not None else PROFILES[cfg.profile]
        self._lock = asyncio.Lock()
        self._client: _PymodbusClient | None = None
        self._rx = b""

    @property
    def device_id(self) -> str:
        """The configured module id, carried by every error raised here."""
        return self._cfg.id

    @property
    def profile(self) -> RegisterProfile:
        """The register profile this client reads with."""
        return self._profile

    @property
    def connected(self) -> bool:
        """True while a transport is open (it may still be silent)."""
        return self._client is not None and self._client.connected

    async def __aenter__(self) -> Self:
        """Connect.

        Raises:
            DeviceUnavailable: the module refused, did not answer the TCP
                handshake within ``timeout_ms``, or the serial port cannot be opened.
        """
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (bounded: pymodbus closes synchronously)."""
        await self.close()

    async def connect(self) -> None:
        """Open the connection unless it is open already.

        Raises:
            DeviceUnavailable: as for ``__aenter__``.
        """
        async with self._lock:
            await self._ensure_connected()

    async def close(self) -> None:
        """Close the connection; safe to call twice. The next call reconnects."""
        self._drop()
        # let asyncio run the transport's connection_lost callback now, not after
        # the caller has moved on
        await asyncio.sleep(0)

    async def read_inputs(self) -> list[bool]:
        """Read the raw wire bits of every digital input.

        Sends the profile's ``di_function`` (FC02 discrete inputs or FC01 coils) for
        ``profile.read_count`` bits from ``profile.di_address`` to unit ``cfg.unit``
        and waits at most ``cfg.timeout_ms``.

        Returns:
            ``profile.di_count`` booleans, index = channel, as they are on the wire
            (no active-low inversion: that is the poller's job).

        Raises:
            DeviceUnavailable: not connected and cannot connect, timeout, connection
                lost, or a busy/gateway exception response.
            DeviceProtocolError: any other exception response, a reply with the wrong
                function code or fewer bits than asked; ``raw`` is the frame as hex.
        """
        p = self._profile
        function = _FC_READ[p.di_function]
        async with self._lock:
            client = await self._ensure_connected()
            if function == 0x02:
                call = client.read_discrete_inputs(
                    p.di_address, count=p.read_count, device_id=self._cfg.unit
                )
            else:
                call = client.read_coils(p.di_address, count=p.read_count, device_id=self._cfg.unit)
            reply = self._check(await self._execute(call), function, f"read {p.di_function}")
            if len(reply.bits) < p.read_count:
                raise self._protocol_error(
                    f"short reply: {len(reply.bits)} bits, asked for {p.read_count}"
                )
            return list(reply.bits[: p.di_count])

    async def write_output(self, channel: int, on: bool) -> None:
        """Switch one digital output (relay, siren coil) with FC05 at ``do_address + channel``.

        Raises:
            ValueError: ``channel`` is not in ``0..profile.do_count - 1``.
            DeviceUnavailable: as for :meth:`read_inputs`.
            DeviceProtocolError: an exception response, or the echo does not repeat
                our address and value.
        """
        p = self._profile
        if not 0 <= channel < p.do_count:
            raise ValueError(
                f"{self._cfg.id}: output {channel} does not exist on {p.model} "
                f"(outputs 0..{p.do_count - 1})"
            )
        address = p.do_address + channel
        async with self._lock:
            client = await self._ensure_connected()
            call = client.write_coil(address, on, device_id=self._cfg.unit)
            reply = self._check(await self._execute(call), _FC_WRITE_COIL, "write coil")
            echoed = bool(reply.bits and reply.bits[0])
            if reply.address != address or echoed != on:
                raise self._protocol_error(
                    f"write coil echo mismatch: sent address {address} value {on}, "
                    f"got address {reply.address} value {echoed}"
                )

    # -- internals ---------------------------------------------------------------

    def _make_client(self) -> _PymodbusClient:
        transport = self._cfg.transport
        timeout = self._cfg.timeout_ms / 1000
        common = _CommonArgs(
            name=self._cfg.id,
            reconnect_delay=0.0,  # 0 = no pymodbus reconnect task; the poller backs off
            reconnect_delay_max=0.0,
            timeout=timeout,
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
        """pymodbus ``trace_packet`` hook: keep what the module sent since our request."""
        # pymodbus hands us its whole receive buffer each time, so the last call
        # holds every byte received for the current request.
        self._rx = b"" if sending else data
        return data

    async def _ensure_connected(self) -> _PymodbusClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._make_client()
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise DeviceUnavailable(f"connect failed: {exc}", device_id=self._cfg.id) from exc
        if not ok or not client.connected:
            client.close()
            raise DeviceUnavailable(f"cannot connect to {self._where()}", device_id=self._cfg.id)
        self._client = client
        return client

    async def _execute(self, call: Awaitable[ModbusPDU]) -> ModbusPDU:
        """Await one pymodbus request and translate what it raises."""
        self._rx = b""
        try:
            return await call
        except ConnectionException as exc:
            self._drop()
            raise DeviceUnavailable(f"connection lost: {exc}", device_id=self._cfg.id) from exc
        except ModbusException as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus turned our cancellation into ModbusIOException
                self._drop()
                raise asyncio.CancelledError from exc
            received = self._rx
            self._drop()
            if received:
                raise DeviceProtocolError(
                    f"no valid answer within {self._cfg.timeout_ms} ms, only undecodable "
                    f"or foreign bytes ({exc})",
                    device_id=self._cfg.id,
                    raw=received.hex(" "),
                ) from exc
            raise DeviceUnavailable(
                f"no answer within {self._cfg.timeout_ms} ms from {self._where()}",
                device_id=self._cfg.id,
            ) from exc

    def _check(self, reply: ModbusPDU, function: int, what: str) -> ModbusPDU:
        """Turn an exception response or a wrong reply into an exception."""
        if reply.isError():
            code = reply.exception_code
            try:
                name = ExcCodes(code).name
            except ValueError:
                name = "unknown"
            message = f"{what}: exception response {code:#04x} ({name})"
            if code in _TRANSIENT_EXCEPTIONS:
                raise DeviceUnavailable(message, device_id=self._cfg.id)
            raise self._protocol_error(message)
        if reply.function_code != function:
            raise self._protocol_error(
                f"{what}: reply has function code {reply.function_code:#04x}, "
                f"expected {function:#04x}"
            )
        return reply

    def _protocol_error(self, message: str) -> DeviceProtocolError:
        return DeviceProtocolError(message, device_id=self._cfg.id, raw=self._rx.hex(" "))

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _where(self) -> str:
        t = self._cfg.transport
        if isinstance(t, TcpTransport):
            return f"{t.host}:{t.port} unit {self._cfg.unit}"
        return f"{t.port} unit {self._cfg.unit}"
