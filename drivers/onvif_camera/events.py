"""The PullPoint lifecycle of one camera: connect, subscribe, pull, renew, recover.

:class:`CameraDriver` runs for the life of the daemon (``await driver.run()``,
cancel to stop) and hands :class:`~gateway.events.observation.CameraSignal` and
:class:`~gateway.events.observation.DeviceHealth` to its sink. It knows nothing of
zones, events or MQTT.

Lifecycle (ONVIF Core §9.1 and the captures in ``realdata/onvif/pullpoint_sessions``):

* **Connect** a fresh :class:`~drivers.onvif_camera.device.OnvifDevice` (clock
  offset, services, media URIs; nothing is cached from a previous connection, so
  a camera that rebooted or moved its endpoints is found again).
* **A camera is what it can do** (:mod:`drivers.onvif_camera.capabilities`): its
  capabilities go to the sink when first found and whenever they change
  (:class:`~gateway.events.observation.CameraCapabilities`). A camera without an
  events service, or whose events service refuses PullPoint subscriptions
  (``ter:ActionNotSupported``), is ``online`` all the same and gives pictures; it
  is asked GetSystemDateAndTime every ``pull_timeout_s`` instead of pulled, and
  that failing is what makes it ``offline``.
* **Subscribe** with CreatePullPointSubscription for ``subscription_s`` seconds;
  the camera then sends one ``Initialized`` message per property (state, not alarm).
* **Pull** in a loop (long-poll ``pull_timeout_s``); every message is normalized
  (:func:`~drivers.onvif_camera.topics.normalize`) and handed on with the
  gateway's receive time.
* **Renew** at 80 % of the granted time (TerminationTime - CurrentTime, camera
  clock). A Renew that fails transiently (timeout, HTTP 5xx, garbage) is tried
  again a second later (sooner when the subscription would end first), up to
  ``renew_retries`` more times; a Renew answered
  with a SOAP Fault, or still failing, ends the subscription: a new one is made.
* A **SOAP Fault** on PullMessages (subscription unknown or expired) likewise
  makes a new subscription on the same connection.
* Anything else (connection refused or reset, timeout, HTML instead of SOAP)
  drops the connection; it is rebuilt from scratch after a backoff with jitter
  (0.5 s doubling up to ``backoff_cap_s``). After ``offline_after`` consecutive
  failed attempts the camera is ``offline`` (one :class:`DeviceHealth`); the
  next subscription that works makes it ``online`` again.
* We never Unsubscribe to pause; only a clean stop unsubscribes.

Bad input never stops the loop (STYLE.md rule 9): a message without a topic or
without a readable state is counted in :attr:`CameraDriver.protocol_errors` and
logged once per kind with its raw XML; a topic no table knows is forwarded as a
generic camera event, counted in :attr:`unknown_messages` and logged once per topic.
The clock skew is measured on every connection and reported as a
``camera.status`` signal (``detector="clock"``) when it first appears or moves by
more than a second.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.onvif_camera.capabilities import Capabilities
from drivers.onvif_camera.device import MediaUris, OnvifDevice, SoapLimiter, Subscription
from drivers.onvif_camera.notifications import Notification
from drivers.onvif_camera.topics import normalize
from gateway.config.camera import CameraConfig
from gateway.errors import DeviceAuthError, DeviceError, DeviceFault, DeviceProtocolError
from gateway.events.observation import (
    CameraCapabilities,
    CameraObservation,
    CameraSignal,
    DeviceHealth,
    HealthState,
    utcnow,
)

CameraSink = Callable[[CameraObservation], Awaitable[None]]

_RENEW_AT = 0.8
_RENEW_RETRY_S = 1.0
_BACKOFF_START_S = 0.5


class CameraDriver:
    """Reads one camera's events for the life of the daemon (see the module docstring).

    Args:
        cfg: the camera's configuration (the password is read from its file on
            every connection, so a fixed file needs no restart).
        sink: where signals and health transitions go (awaited, in order).
        logger: a structlog logger; ``device_id`` is bound to it.

    Attributes:
        health: ``starting``, ``online`` or ``offline``.
        media: the media profile and URIs of the last connection that gave them,
            or None; kept while reconnecting (the snapshot URI and the stream do
            not need the SOAP session).
        media_known: set once ``media`` is (a picture asked for before that waits on it).
        capabilities: what the camera could do at the last connection, or None.
        clock_skew_s: camera clock minus gateway clock at the last connection.
        last_seen: gateway UTC time the camera last answered (a subscription or a pull).
        connects, subscriptions, renewals, renew_failures, resubscribes,
        pulls, probes, failures, protocol_errors, unknown_messages, errors: counters.
    """

    def __init__(
        self, cfg: CameraConfig, sink: CameraSink, *, logger: FilteringBoundLogger | None = None
    ) -> None:
        self.cfg = cfg
        self._sink = sink
        self._log: FilteringBoundLogger = (logger or structlog.get_logger(__name__)).bind(
            device_id=cfg.id
        )
        self._limiter = SoapLimiter(cfg.soap_min_interval_ms / 1000)
        self._rng = random.Random()
        self.health: HealthState = "starting"
        self.media: MediaUris | None = None
        self.media_known = asyncio.Event()
        self.capabilities: Capabilities | None = None
        self.clock_skew_s: float | None = None
        self.last_seen: datetime | None = None
        self._reported_skew: float | None = None
        self._consecutive = 0
        self._logged: set[str] = set()
        self.connects = self.subscriptions = self.renewals = self.renew_failures = 0
        self.resubscribes = self.pulls = self.failures = self.protocol_errors = 0
        self.unknown_messages = self.errors = self.probes = 0

    @property
    def soap_requests(self) -> int:
        """SOAP requests sent so far (through the rate limiter)."""
        return self._limiter.requests

    async def run(self) -> None:
        """Connect, subscribe and pull until cancelled; recover from everything else."""
        while True:
            try:
                password = self.cfg.password()
                async with OnvifDevice(self.cfg, password, limiter=self._limiter) as device:
                    self.connects += 1
                    if device.media is not None:
                        self.media = device.media
                        self.media_known.set()
                    await self._skew(device.clock_skew_s)
                    await self._serve(device)
            except asyncio.CancelledError:
                raise
            except (DeviceError, OSError) as exc:
                await self._failed(exc)
            except Exception as exc:
                self.errors += 1
                self._log.exception("onvif.driver_error", errors=self.errors)
                await self._failed(exc)
            await asyncio.sleep(self._backoff())

    # -- one connection ---------------------------------------------------------------------

    async def _serve(self, device: OnvifDevice) -> None:
        """Events if the camera has them, else watch it: it is ``online`` either way."""
        capabilities = device.capabilities
        subscription: Subscription | None = None
        if capabilities.events:
            try:
                subscription = await device.subscribe(self.cfg.subscription_s)
            except DeviceFault as exc:
                if not refuses_subscriptions(exc):
                    raise
                self._once("no-events", "onvif.subscription_not_supported", error=str(exc))
                capabilities = capabilities.without_events()
        await self._found(capabilities)
        if subscription is None:
            await self._watch(device)
        else:
            await self._subscribed(device, subscription)

    async def _watch(self, device: OnvifDevice) -> None:
        """A camera without events: ``online``, and asked the time every
        ``pull_timeout_s`` to notice when it goes away."""
        await self._transition("online", "")
        self._consecutive = 0
        while True:
            await asyncio.sleep(self.cfg.pull_timeout_s)
            await device.probe()
            self.probes += 1

    async def _subscribed(self, device: OnvifDevice, subscription: Subscription) -> None:
        while True:
            self.subscriptions += 1
            self.last_seen = utcnow()
            await self._transition("online", "")
            self._consecutive = 0
            try:
                await self._pull_until_fault(device, subscription)
            except DeviceFault as exc:
                self.resubscribes += 1
                self._log.warning("onvif.resubscribe", reason=str(exc), raw=exc.raw[:500])
            subscription = await device.subscribe(self.cfg.subscription_s)

    async def _pull_until_fault(self, device: OnvifDevice, subscription: Subscription) -> None:
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + _RENEW_AT * subscription.granted_s
        expires_at = loop.time() + subscription.granted_s
        attempts = 0
        while True:
            if loop.time() >= renew_at:
                try:
                    granted = await device.renew(self.cfg.subscription_s)
                except (DeviceFault, DeviceAuthError):
                    raise  # a Fault: resubscribe; refused: rebuild (and tell a technician)
                except DeviceError as exc:
                    attempts += 1
                    self.renew_failures += 1
                    self._log.warning("onvif.renew_failed", attempt=attempts, error=str(exc))
                    if attempts > self.cfg.renew_retries or loop.time() >= expires_at:
                        raise DeviceFault(
                            f"Renew failed {attempts} times: {exc}", device_id=self.cfg.id
                        ) from exc
                    left = max(0.0, expires_at - loop.time())
                    renew_at = loop.time() + min(
                        _RENEW_RETRY_S, left / (self.cfg.renew_retries + 1)
                    )
                else:
                    attempts = 0
                    self.renewals += 1
                    renew_at = loop.time() + _RENEW_AT * granted
                    expires_at = loop.time() + granted
            wait = min(self.cfg.pull_timeout_s, max(0.1, renew_at - loop.time()))
            document = await device.pull(wait, self.cfg.message_limit)
            self.pulls += 1
            received = self.last_seen = utcnow()
            for message in document.notifications:
                await self._deliver(message, received)

    async def _deliver(self, message: Notification, received: datetime) -> None:
        try:
            meaning = await normalize(message, device_id=self.cfg.id)
        except DeviceProtocolError as exc:
            self.protocol_errors += 1
            self._once(f"bad:{exc}", "onvif.bad_message", error=str(exc), raw=exc.raw)
            return
        if not meaning.known:
            self.unknown_messages += 1
            self._once(f"topic:{message.topic}", "onvif.unknown_topic", topic=message.topic,
                       raw=message.raw)  # fmt: skip
        await self._sink(
            CameraSignal(
                device_id=self.cfg.id,
                kind=meaning.kind,
                source=meaning.source,
                detector=meaning.detector,
                state=meaning.state,
                initial=meaning.initial,
                topic=message.topic,
                devicetime=message.utc_time,
                fields=message.source + message.key + message.data,
                received_at=received,
            )
        )

    # -- capabilities, health, skew, backoff ------------------------------------------------

    async def _found(self, capabilities: Capabilities) -> None:
        """Hand on what the camera can do, when it is new or changed."""
        if capabilities == self.capabilities:
            return
        self.capabilities = capabilities
        present, missing = capabilities.present, capabilities.missing
        self._log.info("onvif.capabilities", present=present, missing=missing)
        await self._sink(CameraCapabilities(self.cfg.id, present, missing))

    async def _skew(self, skew: float | None) -> None:
        self.clock_skew_s = skew
        if skew is None:
            return
        if self._reported_skew is not None and abs(skew - self._reported_skew) <= 1.0:
            return
        self._reported_skew = skew
        self._log.info("onvif.clock_skew", clock_skew_s=round(skew, 1))
        await self._sink(
            CameraSignal(
                device_id=self.cfg.id,
                kind="camera.status",
                source="clock",
                detector="clock",
                state="instant",
                initial=False,
                topic="",
                fields=(("clock_skew_s", f"{skew:.1f}"),),
            )
        )

    async def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._consecutive += 1
        if isinstance(exc, DeviceAuthError):
            self._once("auth", "onvif.auth_refused", error=str(exc))
        if self.health != "offline" and self._consecutive >= self.cfg.offline_after:
            await self._transition("offline", str(exc))
        else:
            self._log.info("onvif.attempt_failed", error=str(exc), failures=self._consecutive)

    async def _transition(self, state: HealthState, reason: str) -> None:
        if state == self.health:
            return
        previous, self.health = self.health, state
        await self._sink(
            DeviceHealth(
                device_id=self.cfg.id,
                state=state,
                previous=previous,
                reason=reason,
                failures=self._consecutive,
            )
        )
        log = self._log.warning if state == "offline" else self._log.info
        log("onvif.health", state=state, previous=previous, reason=reason)

    def _backoff(self) -> float:
        if self._consecutive == 0:
            return 0.0
        base = min(self.cfg.backoff_cap_s, _BACKOFF_START_S * 2 ** min(self._consecutive - 1, 16))
        return self._rng.uniform(base / 2, base)

    def _once(self, key: str, event: str, **fields: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self._log.warning(event, **fields)


def refuses_subscriptions(exc: DeviceFault) -> bool:
    """A SOAP Fault saying the camera does not do PullPoint subscriptions at all
    (``ter:ActionNotSupported``, ONVIF Core §5.11.2.5), not that one failed."""
    text = " ".join((*exc.subcodes, exc.reason, str(exc))).lower()
    return "actionnotsupported" in text or "not supported" in text
