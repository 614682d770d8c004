"""Modbus transports, shared by ``[[modules]]`` and patrol ``station`` readers.

``transport = {type = "tcp", host, port}`` (Modbus TCP, also a TCP-to-RTU
converter) or ``{type = "rtu", port, baudrate, parity, stopbits, bytesize}``
(Modbus RTU over an RS-485 adapter): a discriminated union on ``type``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.config.base import Strict


class TcpTransport(Strict):
    """Modbus TCP (also a TCP-to-RTU converter)."""

    type: Literal["tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)


class RtuTransport(Strict):
    """Modbus RTU over a serial line (RS-485 adapter)."""

    type: Literal["rtu"]
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


Transport = Annotated[TcpTransport | RtuTransport, Field(discriminator="type")]
