"""The picture process: ``python -P -m drivers.onvif_camera.picture_worker idle_exit_s parent_pid``.

Decodes a fetched picture or grabs a frame of a stream, then scales, stamps and
re-encodes it (:mod:`drivers.onvif_camera.imaging`, OpenCV and FFmpeg), for the
gateway's cameras (:class:`drivers.onvif_camera.picture_process.PictureProcess`
starts it and says why it runs apart). It answers one request at a time, framed
as :mod:`drivers.onvif_camera.picture_wire` says, and ends by itself after
``idle_exit_s`` seconds without one, when its stdin closes (the gateway
stopped), or at once when the gateway's process dies, even mid-picture
(``PR_SET_PDEATHSIG``). It ignores SIGINT: Ctrl-C in a terminal is the
gateway's to handle.

A picture of more than :data:`MAX_PIXELS` pixels is refused by OpenCV as not a
picture (``OPENCV_IO_MAX_IMAGE_PIXELS``): a JPEG of 1.3 KB whose header claims
30000 × 30000 took 5.3 GB to decode (a review).

Requests: ``{"op": "decode", "device_id", "stamp", "options"}`` with the fetched
bytes as body, or ``{"op": "grab", "device_id", "stamp", "options", "uri",
"timeout_s"}``. ``stamp`` is the stamp's text before the time the picture is
taken, ``options`` the camera's ``snapshot`` table. Answers: ``{"ok": true,
"width", "height", "taken"}`` (RFC 3339) with the JPEG as body, or ``{"ok":
false, "kind": "protocol" | "unavailable" | "library", "message", "raw"}``.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from drivers.onvif_camera import picture_wire
from gateway.errors import DeviceError, DeviceProtocolError, DeviceUnavailable

MAX_PIXELS = 64 << 20  # 8K is 33 Mpx: a 64 Mpx picture takes 192 MiB decoded
_PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass(frozen=True)
class _Options:
    """The ``snapshot`` options :func:`imaging.reencode` reads, checked by the
    gateway's configuration already (no pydantic here: about 10 MiB less)."""

    max_width_px: int
    max_bytes: int
    jpeg_quality: int


def main() -> int:
    """Serve requests until stdin closes or none comes for ``argv[1]`` seconds;
    ``argv[2]`` is the gateway's pid (both given by ``PictureProcess``, its only
    starter)."""
    idle_s, gateway = float(sys.argv[1]), int(sys.argv[2])
    _die_with(gateway)
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)  # read at OpenCV's import
    # Ctrl-C in the gateway's terminal reaches this process too: the gateway's stop
    # closes our stdin, which ends us, with no traceback of our own in its log.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.dup(1)
    os.dup2(2, 1)  # what a library prints goes to the log, never into a frame
    imaging, broken = _load()
    while True:
        ready, _, _ = select.select([0], [], [], idle_s)
        if not ready:
            return 0  # idle: the gateway starts another at the next picture
        prefix = _read(0, picture_wire.PREFIX.size)
        if prefix is None:
            return 0  # the gateway closed its end
        head_len, body_len = picture_wire.lengths(prefix)
        head, body = _read(0, head_len), _read(0, body_len)
        if head is None or body is None:
            return 0
        request = picture_wire.header(head)
        if imaging is None:
            reply, jpeg = {"ok": False, "kind": "library", "message": broken}, b""
        else:
            reply, jpeg = _make(imaging, request, body)
        try:
            _write(answers, picture_wire.encode(reply, jpeg))
        except BrokenPipeError:
            return 0  # the gateway went while we worked


def _die_with(parent: int) -> None:
    """Be killed when the thread that started us ends (the gateway's loop thread),
    and end now if the gateway is gone already."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = os.strerror(ctypes.get_errno())
        print(f"picture process: PR_SET_PDEATHSIG refused ({error})", file=sys.stderr)
    if os.getppid() != parent:
        sys.exit(0)


def _load() -> tuple[ModuleType | None, str]:
    try:
        from drivers.onvif_camera import imaging
    except Exception as exc:  # only the import runs here: any error is a broken install
        return None, f"OpenCV cannot be loaded for pictures: {type(exc).__name__}: {exc}"
    return imaging, ""


def _make(imaging: Any, request: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
    device_id = str(request["device_id"])
    try:
        given = request["options"]
        options = _Options(
            int(given["max_width_px"]), int(given["max_bytes"]), int(given["jpeg_quality"])
        )
        if request["op"] == "grab":
            image = imaging.grab_frame(str(request["uri"]), float(request["timeout_s"]), device_id)
        else:
            image = imaging.decode_jpeg(body, device_id)
        taken = datetime.now(UTC)
        stamp = f"{request['stamp']} {taken.strftime('%Y-%m-%d %H:%M:%SZ')}".strip()
        jpeg, width, height = imaging.reencode(image, stamp, options)
    except DeviceError as exc:
        kind = "unavailable" if isinstance(exc, DeviceUnavailable) else "protocol"
        raw = exc.raw if isinstance(exc, DeviceProtocolError) else ""
        message = str(exc).removeprefix(f"{exc.device_id}: ")
        return {"ok": False, "kind": kind, "message": message, "raw": raw}, b""
    except Exception as exc:  # OpenCV refused this picture in a way of its own
        return {"ok": False, "kind": "protocol", "message": f"{type(exc).__name__}: {exc}"}, b""
    reply = {"ok": True, "width": width, "height": height, "taken": taken.isoformat()}
    return reply, jpeg


def _read(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``fd``; None at its end."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    sys.exit(main())
