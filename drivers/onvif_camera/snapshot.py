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
* **OpenCV off the loop, and only once needed.** Decoding, grabbing and
  re-encoding run in a worker thread (a 1080p JPEG's decode is milliseconds the
  alarm path would otherwise wait), in :mod:`drivers.onvif_camera.imaging`,
  which that thread imports at the first picture: OpenCV and numpy (about
  31 MiB) are not in a gateway whose cameras have not been asked for one, and
  their import (about 0.3 s) costs the event loop 10-15 ms at most, also on a
  cold page cache (:func:`_read_through`; issue 14). An OpenCV that cannot be
  loaded raises :class:`~gateway.errors.LibraryUnavailable`.

Errors (when no fallback is left): :class:`~gateway.errors.DeviceUnavailable`
(refused, timeout, 5xx, no frame, no media URIs known yet),
:class:`~gateway.errors.DeviceAuthError` (401/403),
:class:`~gateway.errors.DeviceProtocolError` (not a picture, no URI at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from drivers.onvif_camera.device import MediaUris
from gateway.config.camera import CameraConfig, SnapshotConfig
from gateway.errors import (
    DeviceAuthError,
    DeviceError,
    DeviceProtocolError,
    DeviceUnavailable,
    LibraryUnavailable,
)
from gateway.events.observation import Evidence, utcnow

if TYPE_CHECKING:
    from drivers.onvif_camera.imaging import Image


MAX_PICTURE_BYTES = 32 << 20  # a 4K JPEG is a few MiB; more is a stream, not a picture
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
                data = await self._fetch(media.snapshot)
                image = await asyncio.to_thread(_decode, data, self.cfg.id)
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
            image = await asyncio.to_thread(_grab, uri, options.timeout_s, self.cfg.id)
            method = "stream"
        taken = utcnow()
        jpeg, width, height = await asyncio.to_thread(
            _reencode, image, stamp_text(self.cfg, taken), options
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


def stamp_text(cfg: CameraConfig, when: datetime) -> str:
    """``<id> <ASCII part of the name> <UTC time>Z`` for the picture's stamp."""
    name = "".join(c for c in cfg.name if c.isascii()).strip()
    parts = [cfg.id, name, when.strftime("%Y-%m-%d %H:%M:%SZ")]
    return " ".join(p for p in parts if p)


# OpenCV in a worker thread: imported there at the first picture (drivers.onvif_camera.imaging).


def _decode(data: bytes, device_id: str) -> Image:
    with _opencv():
        from drivers.onvif_camera import imaging
    return imaging.decode_jpeg(data, device_id)


def _grab(uri: str, timeout_s: float, device_id: str) -> Image:
    with _opencv():
        from drivers.onvif_camera import imaging
    return imaging.grab_frame(uri, timeout_s, device_id)


def _reencode(image: Image, stamp: str, options: SnapshotConfig) -> tuple[bytes, int, int]:
    with _opencv():
        from drivers.onvif_camera import imaging
    return imaging.reencode(image, stamp, options)


@contextlib.contextmanager
def _opencv() -> Iterator[None]:
    """Around the import of :mod:`drivers.onvif_camera.imaging` in a worker thread.

    The first time, the compiled files of OpenCV and numpy are read through first
    (:func:`_read_through`). A missing or broken OpenCV raises
    :class:`~gateway.errors.LibraryUnavailable`, which the evidence collector
    reports on the picture's ``camera.snapshot`` (``not_taken``, ``error``) like
    any failed picture, rather than an ``ImportError`` that ended its task and lost
    the requests in hand (a review); ``campus-gateway check-config`` warns at
    commissioning when OpenCV is not installed.

    Raises:
        LibraryUnavailable: OpenCV or numpy cannot be imported.
    """
    try:
        if _IMAGING not in sys.modules:
            _read_opencv_through()
        yield
    except Exception as exc:  # only the import runs inside: any error is a broken install
        raise LibraryUnavailable(
            f"OpenCV cannot be loaded for pictures: {type(exc).__name__}: {exc}"
        ) from exc


@functools.cache  # once: a broken OpenCV is not read again at every try
def _read_opencv_through() -> None:
    _read_through({"cv2": "opencv", "numpy": "numpy"})


def _read_through(packages: Mapping[str, str]) -> None:
    """Read the compiled files of each package (and of its wheel's ``<dist>.libs``
    folder, by the dist name's start: ``{"cv2": "opencv"}``, which also
    matches ``opencv_contrib_python``) into the page
    cache, so that importing them does not fault them in from disk.

    CPython holds the GIL while ``dlopen`` maps an extension, so the page faults
    of a cold 66 MB ``cv2.abi3.so`` stopped the event loop 60-73 ms at the first
    picture after a boot (a review, with the page cache dropped); reading them
    first, which releases the GIL, leaves about 10 ms (174 MiB read in 110-150 ms
    on the development box). Unreadable files are skipped: the import then says.
    """
    for name, dist in packages.items():
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        package = Path(next(iter(spec.submodule_search_locations)))
        files = [*package.rglob("*.so"), *package.rglob("*.so.*")]
        for libs in package.parent.glob("*.libs"):
            if libs.name.lower().startswith(dist):
                files += [f for f in libs.iterdir() if f.is_file()]
        for path in files:
            with contextlib.suppress(OSError):
                info = path.stat()  # regular files only: never /dev/zero or a FIFO
                if not stat.S_ISREG(info.st_mode) or info.st_size > _READ_FILE_CAP:
                    continue
                with path.open("rb") as fh:
                    while fh.read(1 << 20):
                        pass


_IMAGING = "drivers.onvif_camera.imaging"
_READ_FILE_CAP = 512 << 20  # bytes: no compiled file of theirs is near it
