"""The picture process: ``python -m drivers.onvif_camera.picture_worker [idle_exit_s]``.

Decodes a fetched picture or grabs a frame of a stream, then scales, stamps and
re-encodes it (:mod:`drivers.onvif_camera.imaging`, OpenCV and FFmpeg), for one
camera of the gateway (:class:`drivers.onvif_camera.picture_process.PictureProcess`
starts it and says why it runs apart). It answers one request at a time, framed
as :mod:`drivers.onvif_camera.picture_wire` says, and ends by itself after
``idle_exit_s`` seconds without one, or when its stdin closes (the gateway
stopped or died).

Requests: ``{"op": "decode", "device_id", "stamp", "options"}`` with the fetched
bytes as body, or ``{"op": "grab", "device_id", "stamp", "options", "uri",
"timeout_s"}``. ``stamp`` is the stamp's text before the time the picture is
taken, ``options`` the camera's ``snapshot`` table. Answers: ``{"ok": true,
"width", "height", "taken"}`` (RFC 3339) with the JPEG as body, or ``{"ok":
false, "kind": "protocol" | "unavailable" | "library", "message", "raw"}``.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from types import ModuleType
from typing import Any

from drivers.onvif_camera import picture_wire
from gateway.config.camera import SnapshotConfig
from gateway.errors import DeviceError, DeviceProtocolError, DeviceUnavailable
from gateway.events.observation import utcnow

IDLE_EXIT_S = 60.0


def main() -> int:
    """Serve requests until stdin closes or none comes for ``argv[1]`` seconds."""
    idle_s = float(sys.argv[1]) if len(sys.argv) > 1 else IDLE_EXIT_S
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


def _load() -> tuple[ModuleType | None, str]:
    try:
        from drivers.onvif_camera import imaging
    except Exception as exc:  # only the import runs here: any error is a broken install
        return None, f"OpenCV cannot be loaded for pictures: {type(exc).__name__}: {exc}"
    return imaging, ""


def _make(imaging: Any, request: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
    device_id = str(request["device_id"])
    try:
        options = SnapshotConfig.model_validate(request["options"])
        if request["op"] == "grab":
            image = imaging.grab_frame(str(request["uri"]), float(request["timeout_s"]), device_id)
        else:
            image = imaging.decode_jpeg(body, device_id)
        taken = utcnow()
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
