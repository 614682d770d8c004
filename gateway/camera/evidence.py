"""Evidence pictures: take them when asked, store them durably, say so in an event.

:class:`EvidenceCollector` gets requests (:class:`EvidenceRequest`: "camera X, for
alarm E" or "camera X, for the center's ``snapshot`` command") from camera
alarms (:mod:`gateway.camera.rules`), zone alarms through linkage
(:mod:`gateway.camera.linkage`) and the ``snapshot`` command
(:mod:`gateway.camera.commands`). Every request has the id its ``camera.snapshot``
event will have from the start (``snapshot_id``), so the center can be told
where the picture will come before it is taken.

A request is durable before anyone relies on it: :meth:`EvidenceCollector.plan`
makes it, the caller stores it with its alarm in one outbox transaction
(``keep=[request.kept()]``, :mod:`gateway.camera.memory`) and only then queues it
(:meth:`EvidenceCollector.submit`); a command's request is kept on its own
(:meth:`EvidenceCollector.request_now`) before the command is answered. For each
request it takes a picture (up to ``attempts`` times, a second apart), then
stores, in one transaction, the JPEG bytes as a non-event message on
``snapshots/<snapshot id>`` (priority of ``camera.snapshot``, 3: never shed, sent
after the alarms and before the event that names it), the ``camera.snapshot``
event (id ``snapshot_id``) and the end of the request. Its ``data`` has ``sha256``
(hex of the exact bytes sent), ``bytes``, ``width``/``height`` (pixels),
``method`` (``snapshot_uri`` or ``stream``; with ``snapshot_error`` when the
stream stood in for a failing snapshot URI), ``topic`` (``snapshots/<snapshot
id>``), ``requested_at`` (the alarm's time, or the command's), and what it
documents: ``for_event``/``for_type`` and that alarm's ``incident``, or
``command`` (the command's correlation id) and ``operator``.

Both go through the outbox, so a picture taken while the uplink is down is
delivered when it is back, like the alarm. A camera that gives no picture still
gets a ``camera.snapshot`` event, with ``error`` instead of ``sha256``. No
request is refused: they wait in arrival order, ``parallel`` pictures at a time.

**After a restart** (:meth:`EvidenceCollector.resume`), every request still kept
is served again: if it is at most ``snapshot.late_within_s`` old (default 300 s)
the picture is taken now and its event says ``late = true`` (``requested_at``
stays the alarm's time); otherwise it is not taken and its event says
``late = true``, ``not_taken = true`` and why (``error``), so the center knows
the alarm has no picture rather than waiting for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import structlog

from gateway.camera.memory import EvidenceRequest
from gateway.config.camera import CameraConfig
from gateway.errors import GatewayError
from gateway.events.model import Event, EventFactory, rfc3339
from gateway.events.observation import Evidence, utcnow
from gateway.runtime.state import StateWrite, StoreWith

log = structlog.get_logger(__name__)

__all__ = ["EvidenceCollector", "EvidenceRequest", "Keep", "Pictures", "Taker", "request_data"]

Keep = Callable[[Sequence[StateWrite]], Awaitable[None]]
"""``await outbox.keep(writes)``: kept state committed without an event."""

Taker = Callable[[], Awaitable[Evidence]]

_Job = tuple[EvidenceRequest, str | None]
"""A request and, when it is not to be taken, why."""


class Pictures(Protocol):
    """What the camera rules and linkage need of the collector (two steps, so that
    the request is kept with its alarm in between)."""

    def plan(self, camera_id: str, alarm: Event) -> EvidenceRequest:
        """A request for ``alarm`` (raises ``KeyError`` for an unknown camera)."""
        ...

    def submit(self, request: EvidenceRequest) -> EvidenceRequest:
        """Queue a request already kept with its alarm."""
        ...


class EvidenceCollector:
    """Takes and stores evidence pictures; ``await collector.run()`` (cancel to stop).

    Args:
        cameras: camera configs by id (names, snapshot options).
        takers: per camera id, a callable that takes one picture or raises a
            :class:`~gateway.errors.GatewayError`.
        factory: makes ``camera.snapshot`` events.
        store: stores an event with kept state and a blob in one transaction (the
            outbox's ``append``).
        keep: commits kept state alone (the outbox's ``keep``).
        parallel: pictures taken at once (different cameras work in parallel).

    Attributes:
        stored: pictures stored; failed: requests that got no picture (not taken
            included); late: requests served after a restart.
    """

    def __init__(
        self,
        cameras: Mapping[str, CameraConfig],
        takers: Mapping[str, Taker],
        factory: EventFactory,
        store: StoreWith,
        keep: Keep,
        *,
        parallel: int = 4,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._cameras = cameras
        self._takers = takers
        self._factory = factory
        self._store = store
        self._keep = keep
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._parallel = asyncio.Semaphore(parallel)
        self._retry_delay = retry_delay_s
        self.stored = self.failed = self.late = 0

    def plan(self, camera_id: str, alarm: Event) -> EvidenceRequest:
        """A request for a picture from ``camera_id`` documenting ``alarm`` (not yet
        stored or queued: keep it with the alarm, then :meth:`submit` it).

        Raises:
            KeyError: no camera with that id.
        """
        if camera_id not in self._takers:
            raise KeyError(camera_id)
        return EvidenceRequest.for_alarm(camera_id, alarm)

    def submit(self, request: EvidenceRequest) -> EvidenceRequest:
        """Queue ``request``, already kept in the outbox; returns it.

        Raises:
            KeyError: no camera with its id.
        """
        if request.camera not in self._takers:
            raise KeyError(request.camera)
        self._queue.put_nowait((request, None))
        return request

    async def request_now(self, request: EvidenceRequest) -> EvidenceRequest:
        """Keep ``request`` in the outbox (on disk when this returns), then queue it.

        Raises:
            KeyError: no camera with its id.
            OutboxError: the outbox is closed.
        """
        if request.camera not in self._takers:
            raise KeyError(request.camera)
        await self._keep([request.kept()])
        return self.submit(request)

    def resume(self, pending: Iterable[EvidenceRequest], now: datetime) -> int:
        """Queue the requests a restart found kept, oldest first; returns how many.

        A request at most its camera's ``snapshot.late_within_s`` old at ``now`` is
        taken, marked late; an older one, or one for a camera no longer configured,
        is reported as not taken, with the reason.
        """
        count = 0
        for request in sorted(pending, key=lambda r: (r.requested_at, r.snapshot_id)):
            request = replace(request, late=True)
            camera = self._cameras.get(request.camera)
            age = (now - request.requested_at).total_seconds()
            reason: str | None = None
            if camera is None or request.camera not in self._takers:
                reason = f"camera {request.camera} is no longer configured"
            elif age > camera.snapshot.late_within_s:
                reason = (
                    f"requested {age:.0f} s before the gateway could take it, after a"
                    f" restart (snapshot.late_within_s = {camera.snapshot.late_within_s:g})"
                )
            self._queue.put_nowait((request, reason))
            log.warning("evidence.resumed", camera=request.camera, id=request.snapshot_id,
                        age_s=round(age, 3), not_taken=reason)  # fmt: skip
            count += 1
        return count

    @property
    def waiting(self) -> int:
        """Requests not yet started."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Serve requests until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                request, not_taken = await self._queue.get()
                await self._parallel.acquire()
                tg.create_task(self._one(request, not_taken), name=f"evidence[{request.camera}]")

    async def _one(self, request: EvidenceRequest, not_taken: str | None) -> None:
        try:
            if not_taken is None:
                await self._collect(request)
            else:
                await self._not_taken(request, not_taken)
        except GatewayError as exc:  # the outbox refused: nothing more we can do here
            log.error("evidence.store_failed", camera=request.camera, error=str(exc))
        finally:
            self._parallel.release()

    async def _not_taken(self, request: EvidenceRequest, reason: str) -> None:
        camera = self._cameras.get(request.camera)
        data = request_data(camera, request)
        data.update(error=reason, not_taken=True)
        self.failed += 1
        self.late += 1
        await self._store(self._event(request, data, utcnow()), keep=[request.done()])
        log.warning("evidence.not_taken", camera=request.camera, id=request.snapshot_id,
                    for_event=request.for_event, reason=reason)  # fmt: skip

    async def _collect(self, request: EvidenceRequest) -> None:
        camera_id = request.camera
        camera = self._cameras[camera_id]
        data = request_data(camera, request)
        evidence: Evidence | None = None
        for attempt in range(camera.snapshot.attempts):
            try:
                evidence = await self._takers[camera_id]()
                break
            except Exception as exc:  # a picture never ends the collector
                # Expected failures are GatewayErrors; anything else (a URI httpx
                # refuses, a broken OpenCV, a library's bug) is logged with its
                # traceback and still reported on the picture's event, rather than
                # ending the task group with the other cameras' requests in hand
                # (a review lost 4 of 4 so).
                data["error"] = str(exc) if isinstance(exc, GatewayError) else repr(exc)
                log.warning("evidence.attempt_failed", camera=camera_id, attempt=attempt + 1,
                            error=data["error"],
                            exc_info=not isinstance(exc, GatewayError))  # fmt: skip
                if attempt + 1 < camera.snapshot.attempts:
                    await asyncio.sleep(self._retry_delay)
        blob: tuple[str, bytes] | None = None
        if evidence is not None:
            data.pop("error", None)
            data.update(sha256=evidence.sha256, bytes=len(evidence.jpeg), width=evidence.width,
                        height=evidence.height, method=evidence.method,
                        topic=request.topic)  # fmt: skip
            if evidence.snapshot_error is not None:
                data["snapshot_error"] = evidence.snapshot_error
            blob = (request.topic, evidence.jpeg)
            self.stored += 1
        else:
            self.failed += 1
        self.late += request.late
        event = self._event(request, data, evidence.taken_at if evidence else utcnow())
        await self._store(event, keep=[request.done()], blob=blob)
        log.info("evidence.done", camera=camera_id, id=event.id, for_event=request.for_event,
                 command=request.command, sha256=data.get("sha256"), late=request.late,
                 error=data.get("error"))  # fmt: skip

    def _event(self, request: EvidenceRequest, data: dict[str, Any], at: datetime) -> Event:
        return self._factory.make(
            "camera.snapshot",
            device=request.camera,
            subject=request.camera,
            state="instant",
            data=data,
            received_at=at,
            incident=request.incident,
            event_id=request.snapshot_id,
        )


def request_data(camera: CameraConfig | None, request: EvidenceRequest) -> dict[str, Any]:
    """The ``data`` every ``camera.snapshot`` of ``request`` carries (``camera`` None:
    no longer configured)."""
    data: dict[str, Any] = {
        "name": camera.name if camera else request.camera,
        "location": camera.location if camera else "",
        "camera": request.camera,
        "requested_at": rfc3339(request.requested_at),
    }
    if request.late:
        data["late"] = True
    if request.command is not None:
        data.update(command=request.command, operator=request.operator)
    else:
        data.update(for_event=request.for_event, for_type=request.for_type)
    return data
