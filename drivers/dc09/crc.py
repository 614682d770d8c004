"""The DC-09 CRC: CRC-16/ARC (poly 0x8005 reflected, init 0, no final XOR).

Source: ANSI/SIA DC-09-2013 §5.5.1.2; ``realdata/dc09/dc09_crc_framing_encryption_notes.md``
checked it over every captured frame (check value CRC("123456789") = 0xBB3D). It is
neither CRC-16/MODBUS nor CRC-CCITT, which third-party simulators get wrong.
"""

from __future__ import annotations

import anycrc

_ARC = anycrc.Model("CRC16-ARC")


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC of ``data`` (0..0xFFFF)."""
    value: int = _ARC.calc(data)
    return value
