"""One ONVIF camera over SOAP: the only file that imports ``onvif`` (onvif-zeep-async) and zeep.

Every library outcome is translated here (STYLE.md rule 3):

==========================================================  ===========================
outcome                                                     raised here
==========================================================  ===========================
connection refused/reset, timeout, HTTP 5xx without a body  DeviceUnavailable
SOAP Fault ``NotAuthorized``, HTTP 401/403, ONVIFAuthError  DeviceAuthError
any other SOAP Fault                                        DeviceFault
HTML instead of SOAP, XML nothing can read                  DeviceProtocolError
==========================================================  ===========================

What we take from onvif-zeep-async 4.3.0: WS-UsernameToken digests whose
``Created`` is corrected by the camera's clock offset (``adjust_time=True``:
GetSystemDateAndTime without auth first), service discovery (GetServices,
falling back to GetCapabilities), the media and subscription-manager calls.
What we do not: its ``PullPointManager`` (the lifecycle is ours,
:mod:`drivers.onvif_camera.events`), and zeep's parsing of PullMessages: one
unreadable ``UtcTime`` (``"..."``, ``00:61:16``) would lose the whole batch, so the
request is built and sent by zeep (``binding._create``, ``transport.post_xml`` —
private API of zeep 4.3.3, pinned) and the answer is read by
:func:`~drivers.onvif_camera.notifications.decode_document`. The same happens
for a GetServices answer that zeep refuses (undeclared prefix, Reolink capture
``reolink_bullet_01``).

Every SOAP request goes through one :class:`SoapLimiter` per camera: one request
at a time, at least ``soap_min_interval_ms`` apart (Dahua capture ``_01``: weak
firmware answers bursts with ``ter:BlockedThreadUpperLimit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera, ONVIFService
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError

from drivers.onvif_camera.capabilities import MEDIA_NS, Capabilities
from drivers.onvif_camera.notifications import CameraDocument, decode_document
from gateway.config.camera import CameraConfig
from gateway.errors import (
    DeviceAuthError,
    DeviceError,
    DeviceFault,
    DeviceProtocolError,
    DeviceUnavailable,
)

_PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
_UNSUBSCRIBE_TIMEOUT_S = 2.0
_T = TypeVar("_T")


class SoapLimiter:
    """One SOAP request at a time to a camera, at least ``min_interval_s`` apart."""

    def __init__(self, min_interval_s: float) -> None:
        self._min = min_interval_s
        self._lock = asyncio.Lock()
        self._next = 0.0
        self.requests = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.requests += 1
            try:
                yield
            finally:
                self._next = time.monotonic() + self._min


@dataclass(frozen=True, slots=True)
class MediaUris:
    """The media profile in use and its URIs (None when the camera has none)."""

    profile: str
    snapshot: str | None
    stream: str | None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A PullPoint subscription.

    Attributes:
        address: the subscription manager's URL, as the camera gave it.
        granted_s: seconds until it ends: TerminationTime - CurrentTime by the
            camera's clock, capped at what was asked (some cameras grant a year).
    """

    address: str
    granted_s: float


class OnvifDevice:
    """A connected camera. ``async with OnvifDevice(cfg, password) as device:``.

    Entering discovers the services, the clock offset and the media URIs; a new
    instance starts from nothing (no cached endpoint survives a rebuild).

    Args:
        cfg: the camera's configuration.
        password: the ONVIF user's password.
        limiter: shared across rebuilds so the spacing of requests holds.

    Attributes:
        clock_skew_s: camera clock minus gateway clock, in seconds (1 s resolution).
        media: profile and URIs, once connected; None for a camera without a
            media service.
        capabilities: what the camera can do (:mod:`drivers.onvif_camera.capabilities`).

    Raises:
        DeviceUnavailable, DeviceAuthError, DeviceFault, DeviceProtocolError:
            from ``__aenter__`` and from every call, as the table above says.
    """

    def __init__(self, cfg: CameraConfig, password: str, *, limiter: SoapLimiter) -> None:
        self.cfg = cfg
        self._password = password
        self._limiter = limiter
        self._camera: ONVIFCamera | None = None
        self._manager: ONVIFService | None = None
        self._pullpoint: ONVIFService | None = None
        self.clock_skew_s: float | None = None
        self.media: MediaUris | None = None
        self.capabilities = Capabilities(False, False, False, False)
        self.subscription: Subscription | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._connect()
        except BaseException:
            await self.close(unsubscribe=False)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Unsubscribe only on a clean stop (it frees one of the camera's few slots);
        # after a failure the subscription is gone or the camera is unreachable.
        await self.close(unsubscribe=exc_type is asyncio.CancelledError or exc_type is None)

    async def subscribe(self, seconds: int) -> Subscription:
        """CreatePullPointSubscription for ``seconds`` (relative ``PT<n>S``)."""
        camera = self._require()
        events = await self._call(camera.create_events_service())
        result = await self._call(
            events.CreatePullPointSubscription({"InitialTerminationTime": f"PT{seconds}S"})
        )
        address = str(result.SubscriptionReference.Address._value_1)
        camera.xaddrs[_PULLPOINT_NS] = address
        self._manager = await self._call(
            camera.create_subscription_service("PullPointSubscription")
        )
        self._pullpoint = await self._call(camera.create_pullpoint_service())
        self.subscription = Subscription(
            address, _granted(result.CurrentTime, result.TerminationTime, seconds)
        )
        return self.subscription

    async def probe(self) -> None:
        """GetSystemDateAndTime: is the camera still there (for one without events,
        whose PullMessages would otherwise tell)."""
        camera = self._require()
        devicemgmt = await self._call(camera.create_devicemgmt_service())
        await self._call(devicemgmt.GetSystemDateAndTime())

    async def renew(self, seconds: int) -> float:
        """Renew the subscription for ``seconds``; returns the seconds granted."""
        if self._manager is None:
            raise DeviceFault("no subscription to renew", device_id=self.cfg.id)
        result = await self._call(self._manager.Renew({"TerminationTime": f"PT{seconds}S"}))
        return _granted(result.CurrentTime, result.TerminationTime, seconds)

    async def pull(self, timeout_s: float, limit: int) -> CameraDocument:
        """PullMessages, waiting up to ``timeout_s`` for messages; read tolerantly."""
        if self._pullpoint is None:
            raise DeviceFault("no subscription to pull from", device_id=self.cfg.id)
        kwargs = {"Timeout": timedelta(seconds=timeout_s), "MessageLimit": limit}
        return await self._raw(self._pullpoint, "PullMessages", kwargs, timeout_s)

    async def close(self, *, unsubscribe: bool = False) -> None:
        """Unsubscribe (best effort, short deadline) if asked, then close the connections."""
        camera, self._camera = self._camera, None
        if camera is None:
            return
        if unsubscribe and self._manager is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._manager.Unsubscribe(), _UNSUBSCRIBE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await camera.close()

    # -- connecting ---------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.cfg
        camera = ONVIFCamera(
            cfg.host, cfg.port, cfg.username, self._password, no_cache=True, adjust_time=True
        )
        self._camera = camera
        try:
            await self._call(camera.update_xaddrs())
        except DeviceProtocolError:
            # GetServices that zeep cannot parse (reolink_bullet_01: undeclared prefix).
            devicemgmt = await self._call(camera.create_devicemgmt_service())
            document = await self._raw(devicemgmt, "GetServices", {"IncludeCapability": False})
            camera.xaddrs.update({ns: url for ns, url in document.services if ns and url})
        diff = camera.dt_diff
        self.clock_skew_s = diff.total_seconds() if isinstance(diff, timedelta) else 0.0
        if MEDIA_NS in camera.xaddrs:
            self.media = await self._media(camera)
        media = self.media or MediaUris("", None, None)
        self.capabilities = Capabilities.of(camera.xaddrs, media.snapshot, media.stream)

    async def _media(self, camera: ONVIFCamera) -> MediaUris:
        """The profile in use and its snapshot and stream URIs (None: not given)."""
        cfg = self.cfg
        media = await self._call(camera.create_media_service())
        profiles = await self._call(media.GetProfiles())
        tokens = [str(p.token) for p in profiles or []]
        if not tokens or (cfg.profile is not None and cfg.profile not in tokens):
            raise DeviceProtocolError(
                f"media profile {cfg.profile or '(any)'} not among {tokens}", device_id=cfg.id
            )
        token = cfg.profile or tokens[0]
        snapshot = await self._call(camera.get_snapshot_uri(token))
        try:
            stream = await self._call(
                media.GetStreamUri(
                    {
                        "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                        "ProfileToken": token,
                    }
                )
            )
            stream_uri: str | None = str(stream.Uri)
        except DeviceFault:
            stream_uri = None
        return MediaUris(token, snapshot, stream_uri)

    # -- calls --------------------------------------------------------------------------

    def _require(self) -> ONVIFCamera:
        if self._camera is None:
            raise DeviceUnavailable("not connected", device_id=self.cfg.id)
        return self._camera

    async def _call(self, awaitable: Awaitable[_T], extra_s: float = 0.0) -> _T:
        """Await one library call under the limiter and the request deadline."""
        try:
            async with self._limiter.slot():
                return await asyncio.wait_for(awaitable, self.cfg.request_timeout_s + extra_s)
        except (DeviceError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise _translate(exc, self.cfg.id) from exc
        finally:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # cancelled while queued: never started, never awaited

    async def _raw(
        self, service: ONVIFService, operation: str, kwargs: dict[str, Any], extra_s: float = 0.0
    ) -> CameraDocument:
        """Send ``operation`` with zeep, read the answer with ``decode_document``."""
        proxy, client = service.ws_client, service.zeep_client
        options = proxy._binding_options
        envelope, headers = proxy._binding._create(
            operation, (), kwargs, client=client, options=options
        )
        response = await self._call(
            service.transport.post_xml(options["address"], envelope, headers), extra_s
        )
        status, body = int(response.status_code), bytes(response.content or b"")
        if status in (401, 403):
            raise DeviceAuthError(f"{operation}: HTTP {status}", device_id=self.cfg.id)
        if status >= 500 and not body:
            raise DeviceUnavailable(f"{operation}: HTTP {status}", device_id=self.cfg.id)
        document = decode_document(
            body, device_id=self.cfg.id, content_type=response.headers.get("Content-Type")
        )
        if status >= 300:
            raise DeviceProtocolError(
                f"{operation}: HTTP {status}",
                device_id=self.cfg.id,
                raw=body.decode(errors="replace"),
            )
        return document


def _granted(current: Any, termination: Any, asked: int) -> float:
    if isinstance(current, datetime) and isinstance(termination, datetime):
        with contextlib.suppress(TypeError):
            seconds = (termination - current).total_seconds()
            if seconds > 0:
                return min(seconds, float(asked))
    return float(asked)


def _translate(exc: BaseException, device_id: str) -> DeviceError:
    """A library exception as one of ours (the table in the module docstring)."""
    cause = exc
    while isinstance(cause, ONVIFError) and not isinstance(
        cause, ONVIFAuthError | ONVIFTimeoutError
    ):
        if cause.__cause__ is None:
            break
        cause = cause.__cause__
    text = str(cause) or type(cause).__name__
    if isinstance(cause, ONVIFAuthError):
        return DeviceAuthError(text, device_id=device_id)
    if isinstance(cause, TimeoutError | ONVIFTimeoutError | aiohttp.ClientError | OSError):
        return DeviceUnavailable(f"{type(cause).__name__}: {text}", device_id=device_id)
    if isinstance(cause, zeep.exceptions.Fault):
        subcodes = tuple(getattr(s, "text", str(s)) for s in cause.subcodes or [])
        if any("NotAuthorized" in s for s in subcodes) or "authoriz" in text.lower():
            return DeviceAuthError(f"SOAP Fault: {text}", device_id=device_id)
        return DeviceFault(
            f"SOAP Fault: {text}",
            device_id=device_id,
            code=str(cause.code or ""),
            subcodes=subcodes,
            reason=str(cause.message or ""),
        )
    if isinstance(cause, zeep.exceptions.TransportError):
        raw = bytes(cause.content or b"").decode(errors="replace")
        if cause.status_code in (401, 403):
            return DeviceAuthError(f"HTTP {cause.status_code}", device_id=device_id)
        if cause.status_code >= 500 and not raw:
            return DeviceUnavailable(f"HTTP {cause.status_code}", device_id=device_id)
        return DeviceProtocolError(text.splitlines()[0], device_id=device_id, raw=raw[:4000])
    return DeviceProtocolError(f"{type(cause).__name__}: {text}", device_id=device_id)
