"""Evidence pictures, the OpenCV part: decode, grab a frame, scale, stamp, encode.

Every function here blocks, and this module is the only one that imports
OpenCV and numpy (about 31 MiB mapped). Only the picture process imports it
(:mod:`drivers.onvif_camera.picture_worker`): never the gateway's process, whose
alarm path a crash or a hang in OpenCV's native code must not touch
(:mod:`drivers.onvif_camera.picture_process` says why).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.errors import DeviceProtocolError, DeviceUnavailable

Image = NDArray[Any]


class EncodeOptions(Protocol):
    """What :func:`reencode` reads of a camera's ``snapshot`` table
    (:class:`gateway.config.camera.SnapshotConfig`)."""

    @property
    def max_width_px(self) -> int: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def jpeg_quality(self) -> int: ...


def decode_jpeg(data: bytes, device_id: str) -> Image:
    """Decode a picture (JPEG or anything OpenCV reads) to a BGR image.

    Raises:
        DeviceProtocolError: the bytes are not a picture, or none came (``raw``
            holds the first 200).
    """
    image = None
    if data:  # OpenCV raises on an empty buffer (an HTTP 200 with no body)
        with contextlib.suppress(cv2.error):
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DeviceProtocolError(
            "snapshot is not a picture" if data else "snapshot is empty",
            device_id=device_id,
            raw=data[:200].decode(errors="replace"),
        )
    return image


def grab_frame(uri: str, timeout_s: float, device_id: str) -> Image:
    """Read one frame from a stream URI with OpenCV (blocking; run it in a thread).

    Raises:
        DeviceUnavailable: the stream did not open or gave no frame within ``timeout_s``.
    """
    ms = int(timeout_s * 1000)
    capture = cv2.VideoCapture(
        uri,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
    )
    try:
        if not capture.isOpened():
            raise DeviceUnavailable("stream did not open", device_id=device_id)
        ok, frame = capture.read()
        if not ok or frame is None:
            raise DeviceUnavailable("stream gave no frame", device_id=device_id)
        return np.asarray(frame, dtype=np.uint8)
    finally:
        capture.release()


def reencode(image: Image, stamp: str, options: EncodeOptions) -> tuple[bytes, int, int]:
    """Scale, stamp and encode ``image``; returns ``(jpeg, width, height)``.

    Raises:
        DeviceProtocolError: it cannot be made to fit ``options.max_bytes``.
    """
    height, width = image.shape[:2]
    if width > options.max_width_px:
        scale = options.max_width_px / width
        image = cv2.resize(image, (options.max_width_px, max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
    while True:
        stamped = _stamp(image, stamp)
        for quality in range(options.jpeg_quality, 39, -10):
            ok, encoded = cv2.imencode(".jpg", stamped, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= options.max_bytes:
                return bytes(encoded.tobytes()), stamped.shape[1], stamped.shape[0]
        if image.shape[1] < 160:
            raise DeviceProtocolError("picture does not fit max_bytes", device_id="snapshot")
        image = cv2.resize(image, (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4),
                           interpolation=cv2.INTER_AREA)  # fmt: skip


def _stamp(image: Image, text: str) -> Image:
    out = image.copy()
    height, width = out.shape[:2]
    scale = max(0.4, width / 1600)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, height - th - base - 8), (min(width, tw + 12), height), (0, 0, 0), -1)
    cv2.putText(out, text, (6, height - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)  # fmt: skip
    return out
