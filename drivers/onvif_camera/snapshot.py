"""Evidence pictures from one camera: fetch (httpx) or grab (OpenCV), then re-encode and stamp.

* **Fetch** the media service's snapshot URI over httpx. ``snapshot.auth =
  "auto"`` (the default) tries HTTP Digest first (what ONVIF cameras use; a
  camera that needs no auth answers the first, unauthenticated request), then
  Basic (old firmware, IPyCam), and remembers what worked for the next picture;
  ``digest``, ``basic`` or ``none`` pins one. TLS certificates are not verified:
  cameras ship self-signed ones (as onvif-zeep-async does).
* **Grab** one frame from the stream URI (RTSP, or MJPEG over HTTP) with OpenCV
  (FFmpeg backend) when the camera has no snapshot URI, and also when its
  snapshot URI fails (401/403 with every auth tried, 5xx, a timeout, not a
  picture): with ``rtsp_fallback`` the stream is the fallback, and the
  picture's ``snapshot_error`` says why it was needed. The user and password
  are put in the URI as RTSP cameras expect.
* **Re-encode** with OpenCV: at most ``max_width_px`` wide (aspect kept), a
  stamp at the bottom (camera id, the name's ASCII part — OpenCV's Hershey fonts
  have no CJK glyphs; the full name travels in the event — and the gateway's UTC
  time), JPEG quality lowered from ``jpeg_quality`` by 10 down to 40 and then the
  picture shrunk by a quarter until it fits ``max_bytes``.

Errors (when no fallback is left): :class:`~gateway.errors.DeviceUnavailable`
(refused, timeout, 5xx, no frame, no media URIs known yet),
:class:`~gateway.errors.DeviceAuthError` (401/403),
:class:`~gateway.errors.DeviceProtocolError` (not a picture, no URI at all).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import httpx
import numpy as np
from numpy.typing import NDArray

from drivers.onvif_camera.device import MediaUris
from gateway.config.camera import CameraConfig, SnapshotConfig
from gateway.errors import DeviceAuthError, DeviceError, DeviceProtocolError, DeviceUnavailable
from gateway.events.observation import Evidence, utcnow

Image = NDArray[Any]


AuthMode = Literal["digest", "basic", "none"]
_AUTO_ORDER: tuple[AuthMode, ...] = ("digest", "basic")


class SnapshotTaker:
    """Takes evidence pictures from one camera: ``evidence = await taker()``.

    Args:
        cfg: the camera's configuration (credentials, ``snapshot`` options).
        media: returns the camera's media URIs (None before any connection gave them).

    Attributes:
        auth_works: the snapshot auth that worked last (``auto`` tries it first).
        fallbacks: pictures taken from the stream because the snapshot URI failed.
    """

    def __init__(self, cfg: CameraConfig, media: Callable[[], MediaUris | None]) -> None:
        self.cfg = cfg
        self._media = media
        self.auth_works: AuthMode | None = None
        self.fallbacks = 0

    async def __call__(self) -> Evidence:
        """One picture, re-encoded and stamped.

        Raises:
            DeviceUnavailable, DeviceAuthError, DeviceProtocolError: see the module.
        """
        media = self._media()
        if media is None:
            raise DeviceUnavailable("no media URIs known yet", device_id=self.cfg.id)
        options = self.cfg.snapshot
        stream = media.stream if options.rtsp_fallback else None
        snapshot_error: str | None = None
        image: Image | None = None
        method = "snapshot_uri"
        if media.snapshot:
            try:
                image = decode_jpeg(await self._fetch(media.snapshot), self.cfg.id)
            except DeviceError as exc:
                if stream is None:
                    raise
                snapshot_error = str(exc)
                self.fallbacks += 1
        if image is None:
            if stream is None:
                raise DeviceProtocolError(
                    "no snapshot URI and no stream URI", device_id=self.cfg.id
                )
            uri = with_credentials(stream, self.cfg.username, self.cfg.password())
            image = await asyncio.to_thread(grab_frame, uri, options.timeout_s, self.cfg.id)
            method = "stream"
        taken = utcnow()
        jpeg, width, height = await asyncio.to_thread(
            reencode, image, stamp_text(self.cfg, taken), options
        )
        digest = hashlib.sha256(jpeg).hexdigest()
        return Evidence(jpeg, digest, width, height, method, taken, snapshot_error)

    async def _fetch(self, uri: str) -> bytes:
        """The snapshot URI's bytes, with the pinned auth or each of ``auto``'s in turn.

        Raises:
            DeviceAuthError: 401/403 with every auth tried.
            DeviceUnavailable: refused, timeout, 5xx.
        """
        pinned = self.cfg.snapshot.auth
        if pinned != "auto":
            return await self._get(uri, pinned)
        order = [m for m in (self.auth_works, *_AUTO_ORDER) if m is not None]
        modes = list(dict.fromkeys(order))
        for mode in modes:
            try:
                content = await self._get(uri, mode)
            except DeviceAuthError:
                if mode == modes[-1]:
                    raise
                continue
            self.auth_works = mode
            return content
        raise AssertionError("unreachable: the last mode raises")

    async def _get(self, uri: str, mode: AuthMode) -> bytes:
        options = self.cfg.snapshot
        auth: httpx.Auth | None = None
        if mode == "digest":
            auth = httpx.DigestAuth(self.cfg.username, self.cfg.password())
        elif mode == "basic":
            auth = httpx.BasicAuth(self.cfg.username, self.cfg.password())
        try:
            async with httpx.AsyncClient(auth=auth, timeout=options.timeout_s, verify=False) as c:
                response = await c.get(uri)
        except httpx.HTTPError as exc:
            raise DeviceUnavailable(
                f"snapshot: {type(exc).__name__}: {exc}", device_id=self.cfg.id
            ) from exc
        if response.status_code in (401, 403):
            raise DeviceAuthError(
                f"snapshot: HTTP {response.status_code} ({mode} auth)", device_id=self.cfg.id
            )
        if response.status_code >= 300:
            raise DeviceUnavailable(f"snapshot: HTTP {response.status_code}", device_id=self.cfg.id)
        return response.content


def decode_jpeg(data: bytes, device_id: str) -> Image:
    """Decode a picture (JPEG or anything OpenCV reads) to a BGR image.

    Raises:
        DeviceProtocolError: the bytes are not a picture (``raw`` holds the first 200).
    """
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DeviceProtocolError(
            "snapshot is not a picture",
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


def with_credentials(uri: str, username: str, password: str) -> str:
    """``uri`` with ``user:password@`` in it, unless it has credentials or none are set."""
    parts = urlsplit(uri)
    if not username or "@" in parts.netloc:
        return uri
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def stamp_text(cfg: CameraConfig, when: datetime) -> str:
    """``<id> <ASCII part of the name> <UTC time>Z`` for the picture's stamp."""
    name = "".join(c for c in cfg.name if c.isascii()).strip()
    parts = [cfg.id, name, when.strftime("%Y-%m-%d %H:%M:%SZ")]
    return " ".join(p for p in parts if p)


def reencode(image: Image, stamp: str, options: SnapshotConfig) -> tuple[bytes, int, int]:
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
