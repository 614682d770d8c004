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
  have no CJK glyphs; the full name travels in the event — and the UTC time the
  picture was taken), JPEG quality lowered from ``jpeg_quality`` by 10 down to 40
  and then the picture shrunk by a quarter until it fits ``max_bytes``.
* **OpenCV in processes of their own.** Decoding, grabbing and re-encoding run
  in a picture process of the pool the cameras share
  (:mod:`drivers.onvif_camera.picture_process`, which says why): the gateway's
  process never loads OpenCV or FFmpeg, a crash or a hang in them costs one
  picture and never the alarm path, and a process ends after a minute without
  pictures. A picture must be made within ``2 × timeout_s + 5`` seconds (a grab
  may wait ``timeout_s`` to open the stream and as long for a frame; the rest is
  the process's start and OpenCV's import). An OpenCV that cannot be loaded
  raises :class:`~gateway.errors.LibraryUnavailable`.

Errors (when no fallback is left): :class:`~gateway.errors.DeviceUnavailable`
(refused, timeout, 5xx, no frame, no media URIs known yet),
:class:`~gateway.errors.DeviceAuthError` (401/403),
:class:`~gateway.errors.DeviceProtocolError` (not a picture, no URI at all).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.picture_process import Made, PicturePool
from gateway.config.camera import CameraConfig
from gateway.errors import DeviceAuthError, DeviceError, DeviceProtocolError, DeviceUnavailable
from gateway.events.observation import Evidence

MAX_PICTURE_BYTES = 32 << 20  # a 4K JPEG is a few MiB; more is a stream, not a picture
AuthMode = Literal["digest", "basic", "none"]
_AUTO_ORDER: tuple[AuthMode, ...] = ("digest", "basic")


class SnapshotTaker:
    """Takes evidence pictures from one camera: ``evidence = await taker()``.

    Args:
        cfg: the camera's configuration (credentials, ``snapshot`` options).
        media: returns the camera's media URIs (None before any connection gave them).
        pictures: the picture processes it shares with the gateway's other cameras
            (a pool of its own, of one, when not given).

    Attributes:
        auth_works: the snapshot auth that worked last (``auto`` tries it first).
        fallbacks: pictures taken from the stream because the snapshot URI failed.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        media: Callable[[], MediaUris | None],
        pictures: PicturePool | None = None,
    ) -> None:
        self.cfg = cfg
        self._media = media
        self.auth_works: AuthMode | None = None
        self.fallbacks = 0
        self.pictures = pictures if pictures is not None else PicturePool(1)

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
        made: Made | None = None
        method = "snapshot_uri"
        if media.snapshot:
            try:
                data = await self._fetch(media.snapshot)
                made = await self.pictures.make(self._request("decode"), data, self._within)
            except DeviceError as exc:
                if stream is None:
                    raise
                snapshot_error = str(exc)
                self.fallbacks += 1
        if made is None:
            if stream is None:
                raise DeviceProtocolError(
                    "no snapshot URI and no stream URI", device_id=self.cfg.id
                )
            uri = with_credentials(stream, self.cfg.username, self.cfg.password())
            grab = self._request("grab", uri=uri, timeout_s=options.timeout_s)
            made = await self.pictures.make(grab, b"", self._within)
            method = "stream"
        digest = hashlib.sha256(made.jpeg).hexdigest()
        return Evidence(
            made.jpeg, digest, made.width, made.height, method, made.taken, snapshot_error
        )

    @property
    def _within(self) -> float:
        """Seconds a picture may take in the picture process (see the module)."""
        return 2 * self.cfg.snapshot.timeout_s + _START_S

    def _request(self, op: Literal["decode", "grab"], **more: object) -> dict[str, object]:
        return {
            "op": op,
            "device_id": self.cfg.id,
            "stamp": stamp_prefix(self.cfg),
            "options": self.cfg.snapshot.model_dump(mode="json"),
            **more,
        }

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
        # The whole answer within timeout_s, at most MAX_PICTURE_BYTES: httpx's
        # timeout is per read, and a snapshot URI that streams (MJPEG) ran for good,
        # growing by megabytes a second (a review).
        try:
            async with (
                asyncio.timeout(options.timeout_s),
                httpx.AsyncClient(auth=auth, timeout=options.timeout_s, verify=False) as c,
                c.stream("GET", uri) as response,
            ):
                if response.status_code in (401, 403):
                    raise DeviceAuthError(
                        f"snapshot: HTTP {response.status_code} ({mode} auth)",
                        device_id=self.cfg.id,
                    )
                if response.status_code >= 300:
                    raise DeviceUnavailable(
                        f"snapshot: HTTP {response.status_code}", device_id=self.cfg.id
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PICTURE_BYTES:
                        raise DeviceProtocolError(
                            f"snapshot: over {MAX_PICTURE_BYTES >> 20} MiB, not one picture",
                            device_id=self.cfg.id,
                        )
                return bytes(body)
        except TimeoutError as exc:
            raise DeviceUnavailable(
                f"snapshot: Timeout, no whole answer within {options.timeout_s:g} s",
                device_id=self.cfg.id,
            ) from exc
        except httpx.InvalidURL as exc:  # what GetSnapshotUri gave is not a URL
            raise DeviceProtocolError(f"snapshot URI: {exc}", device_id=self.cfg.id) from exc
        except httpx.HTTPError as exc:
            raise DeviceUnavailable(
                f"snapshot: {type(exc).__name__}: {exc}", device_id=self.cfg.id
            ) from exc


def with_credentials(uri: str, username: str, password: str) -> str:
    """``uri`` with ``user:password@`` in it, unless it has credentials or none are set."""
    parts = urlsplit(uri)
    if not username or "@" in parts.netloc:
        return uri
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def stamp_prefix(cfg: CameraConfig) -> str:
    """``<id> <ASCII part of the name>``: the picture's stamp before its UTC time."""
    name = "".join(c for c in cfg.name if c.isascii()).strip()
    return " ".join(p for p in (cfg.id, name) if p)


_START_S = 5.0
"""Seconds allowed beyond the grab's own timeouts: the process's start, OpenCV's import."""
