"""Reads and drives one I/O module by its register profile, over a :class:`ModbusLine`.

The module's unit id and profile (``gateway.config.modbus_profiles``) decide which
requests go on the wire; the line (``drivers.modbus_io.client``) sends them and
translates pymodbus' outcomes into ``DeviceUnavailable``/``DeviceProtocolError``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from drivers.modbus_io.client import ModbusLine
from gateway.config.modbus_profiles import PROFILES, RegisterProfile
from gateway.config.root import ModuleConfig


class ModbusIoClient:
    """Reads and drives one module, on a line of its own or on a shared :class:`ModbusLine`.

    Use as ``async with ModbusIoClient(cfg) as client: bits = await client.read_inputs()``.
    With a line of its own the connection is opened in ``__aenter__`` and closed in
    ``__aexit__``; a shared line is left to its owner.

    Args:
        cfg: the module's configuration (transport, ``unit``, ``timeout_ms``).
        profile: its register profile; defaults to ``PROFILES[cfg.profile]``.
        line: the shared line the module is on; None opens one of its own.
    """

    def __init__(
        self,
        cfg: ModuleConfig,
        profile: RegisterProfile | None = None,
        *,
        line: ModbusLine | None = None,
    ) -> None:
        self._cfg = cfg
        self._profile = profile if profile is not None else PROFILES[cfg.profile]
        self._owns_line = line is None
        self.line = line or ModbusLine(cfg.transport, timeout_ms=cfg.timeout_ms, name=cfg.id)

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
        """True while the line's transport is open (the module may still be silent)."""
        return self.line.connected

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
        """Close the connection when it is the module's own (pymodbus closes at once)."""
        await self.close()

    async def connect(self) -> None:
        """Open the line unless it is open already.

        Raises:
            DeviceUnavailable: as for ``__aenter__``.
        """
        await self.line.connect(self._cfg.id)

    async def close(self) -> None:
        """Close the line if it is the module's own; safe to call twice."""
        if self._owns_line:
            await self.line.close()

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
                function code, more or fewer bits than asked, or a byte count that
                disagrees with its data; ``raw`` is the frame as hex.
        """
        p = self._profile
        bits = await self.line.read_bits(
            p.di_function, p.di_address, p.read_count, unit=self._cfg.unit, device_id=self._cfg.id
        )
        return bits[: p.di_count]

    async def read_analog(self) -> list[int]:
        """Read the raw value (0..65535) of every analog input.

        Sends the profile's ``ai_function`` (FC04 or FC03) for ``ai_count`` registers
        from ``ai_address``.

        Returns:
            ``profile.ai_count`` integers, index = channel.

        Raises:
            ValueError: the module has no analog inputs.
            DeviceUnavailable, DeviceProtocolError: as :meth:`read_inputs`.
        """
        p = self._profile
        if p.ai_count == 0:
            raise ValueError(f"{self._cfg.id}: {p.model} has no analog inputs")
        return await self.line.read_registers(
            p.ai_function, p.ai_address, p.ai_count, unit=self._cfg.unit, device_id=self._cfg.id
        )

    async def write_output(self, channel: int, on: bool) -> None:
        """Switch one digital output (relay, siren coil).

        FC05 at ``do_address + channel``; for a ``word`` profile (ADAM-6051) bit
        ``channel`` of the holding register ``do_word_address`` (FC03 then FC06).

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
        unit, device_id = self._cfg.unit, self._cfg.id
        if p.do_function == "word":
            await self.line.write_register_bit(
                p.do_word_address, channel, on, unit=unit, device_id=device_id
            )
        else:
            await self.line.write_coil(p.do_address + channel, on, unit=unit, device_id=device_id)
