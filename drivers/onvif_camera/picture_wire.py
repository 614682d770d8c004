"""The picture process's frames, both ways over its stdin and stdout.

A frame is two big-endian unsigned 32-bit lengths, then that many bytes of a JSON
object (the header) and of a body (a JPEG, or nothing). The lengths are bounded,
so a frame that is not one (a library writing to the pipe, a torn write) is an
error, not an allocation of gigabytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

PREFIX = struct.Struct(">II")
"""The header's and the body's length."""

HEADER_MAX = 1 << 20
BODY_MAX = 64 << 20  # the largest picture fetched is 32 MiB (snapshot.MAX_PICTURE_BYTES)


class FrameError(ValueError):
    """Bytes that are not a frame of this protocol."""


def encode(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """One frame: ``header`` as JSON, then ``body``."""
    head = json.dumps(header, ensure_ascii=False).encode()
    return PREFIX.pack(len(head), len(body)) + head + body


def lengths(prefix: bytes) -> tuple[int, int]:
    """The header's and the body's length from a frame's first :data:`PREFIX` bytes.

    Raises:
        FrameError: a length over its bound.
    """
    head, body = PREFIX.unpack(prefix)
    if head > HEADER_MAX or body > BODY_MAX:
        raise FrameError(f"frame of {head} + {body} bytes: not a picture frame")
    return head, body


def header(data: bytes) -> dict[str, Any]:
    """A frame's header.

    Raises:
        FrameError: not a JSON object.
    """
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise FrameError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FrameError("frame header is not a JSON object")
    return value
