"""Frames out of what the network delivers: ``<LF> … <CR>``, several in one read
(an Ajax hub sends three frames in one TCP packet), one split over several reads.

Bytes outside a frame (line noise, another protocol's heartbeat) come out as
:class:`Junk`, to be logged once and counted; they never stall the frames after them.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.dc09.frame import MAX_FRAME

LF = 0x0A
CR = 0x0D
_BLANK = b"\x00 \t\n"


@dataclass(frozen=True, slots=True)
class Junk:
    """Bytes that are not inside a frame (or a frame too long to take)."""

    data: bytes


class StreamFramer:
    """Cuts a TCP byte stream into frames. ``framer.feed(data)`` returns what is complete.

    A frame starts after the last ``<LF>`` before its ``<CR>``; a frame sent without
    its ``<LF>`` is still cut at the ``<CR>`` (the CRC decides whether it is one).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes | Junk]:
        """Append ``data``; every frame (without ``<LF>``/``<CR>``) or junk now complete."""
        self._buffer += data
        out: list[bytes | Junk] = []
        while True:
            end = self._buffer.find(CR)
            if end < 0:
                break
            piece = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            out.extend(_cut(piece))
        if len(self._buffer) > self._max + 1:
            start = self._buffer.rfind(LF)
            keep = (
                self._buffer[start:]
                if start >= 0 and len(self._buffer) - start <= self._max
                else b""
            )
            dropped = bytes(self._buffer[: len(self._buffer) - len(keep)])
            self._buffer = bytearray(keep)
            out.append(Junk(dropped[:200]))
        return out

    @property
    def pending(self) -> int:
        """Bytes held waiting for a ``<CR>``."""
        return len(self._buffer)


def split_datagram(data: bytes) -> list[bytes | Junk]:
    """The frames of one UDP datagram; a last frame without its ``<CR>`` still counts."""
    framer = StreamFramer()
    out = framer.feed(data)
    rest = data[len(data) - framer.pending :] if framer.pending else b""
    if rest.strip(_BLANK):
        out.extend(_cut(rest))
    return out


def _cut(piece: bytes) -> list[bytes | Junk]:
    start = piece.rfind(LF)
    head, frame = (piece[:start], piece[start + 1 :]) if start >= 0 else (b"", piece)
    out: list[bytes | Junk] = []
    if head.strip(_BLANK):
        out.append(Junk(head))
    frame = frame.lstrip(_BLANK)
    if frame:
        out.append(frame if len(frame) <= MAX_FRAME else Junk(frame[:200]))
    return out
