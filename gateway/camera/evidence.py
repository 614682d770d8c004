"""Evidence pictures: take them when asked, store them durably, say so in an event.

:class:`EvidenceCollector` gets requests (:class:`EvidenceRequest`: "camera X, for
alarm E" or "camera X, for the center's ``snapshot`` command") from camera
alarms (:mod:`gateway.camera.rules`), zone alarms through linkage
(:mod:`gateway.camera.linkage`) and the ``snapshot`` command
(:mod:`gateway.camera.commands`). Every request has the id its ``camera.snapshot``
event will have from the start (``snapshot_id``), so the center can be told
where the picture will come before it is taken. For each request it takes a
picture (up to ``attempts`` times, a second apart), then, in this order:

1. appends the JPEG bytes to the outbox as a non-event message on
   ``snapshots/<snapshot id>`` (priority of ``camera.snapshot``, 3: never shed,
   sent after the alarms, and before the event that names it);
2. appends the ``camera.snapshot`` event (id ``snapshot_id``) whose ``data`` has
   ``sha256`` (hex of the exact bytes sent), ``bytes``, ``width``/``height``
   (pixels), ``method`` (``snapshot_uri`` or ``stream``; with ``snapshot_error``
   when the stream stood in for a failing snapshot URI), ``topic``
   (``snapshots/<snapshot id>``), ``requested_at``, and what it documents:
   ``for_event``/``for_type`` and that alarm's ``incident``, or ``command`` (the
   command's correlation id) and ``operator``.

Both go through the outbox, so a picture taken while the uplink is down is
delivered when it is back, like the alarm. A camera that gives no picture still
gets a ``camera.snapshot`` event, with ``error`` instead of ``sha256``. No
request is refused: they wait in arrival order, ``parallel`` pictures at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from ulid import ULID

from gateway.config.camera import CameraConfig
from gateway.errors import GatewayError
from gateway.events.model import Emit, Event, EventFactory, rfc3339
from gateway.events.observation import Evidence, utcnow

log = structlog.get_logger(__name__)

BlobSink = Callable[[str, bytes, int], Awaitable[int]]
"""``await outbox.append_blob(topic_suffix, payload, priority) -> seq``."""


Taker = Callable[[], Awaitable[Evidence]]


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """A picture asked for.

    Attributes:
        camera: the camera id.
        snapshot_id: the id its ``camera.snapshot`` event will have.
        requested_at: gateway UTC time of the request.
        for_event, for_type, incident: the alarm it documents (None for a command).
        command, operator: the ``snapshot`` command's correlation id and operator
            (None for an alarm).
    """

    camera: str
    snapshot_id: str
    requested_at: datetime
    for_event: str | None = None
    for_type: str | None = None
    incident: str | None = None
    command: str | None = None
    operator: str | None = None

    @classmethod
    def for_alarm(cls, camera_id: str, alarm: Event) -> EvidenceRequest:
        """A picture from ``camera_id`` documenting ``alarm``."""
        incident = alarm.data.get("incident")
        return cls(
            camera_id,
            _new_id(alarm.time),
            alarm.time,
            for_event=alarm.id,
            for_type=alarm.type,
            incident=incident if isinstance(incident, str) else None,
        )

    @classmethod
    def for_command(
        cls, camera_id: str, correlation_id: str, operator: str, now: datetime
    ) -> EvidenceRequest:
        """A picture from ``camera_id`` the center asked for."""
        return cls(camera_id, _new_id(now), now, command=correlation_id, operator=operator)

    @property
    def topic(self) -> str:
        """``snapshots/<snapshot id>``: where its bytes go."""
        return f"snapshots/{self.snapshot_id}"


class EvidenceCollector:
    """Takes and stores evidence pictures; ``await collector.run()`` (cancel to stop).

    Args:
        cameras: camera configs by id (names, snapshot options).
        takers: per camera id, a callable that takes one picture or raises a
            :class:`~gateway.errors.GatewayError`.
        factory: makes ``camera.snapshot`` events.
        emit: stores an event (the outbox's ``append``).
        blob: stores the bytes (the outbox's ``append_blob``).
        parallel: pictures taken at once (different cameras work in parallel).

    Attributes:
        stored: pictures stored; failed: requests that got no picture.
    """

    def __init__(
        self,
        cameras: Mapping[str, CameraConfig],
        takers: Mapping[str, Taker],
        factory: EventFactory,
        emit: Emit,
        blob: BlobSink,
        *,
        parallel: int = 4,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._cameras = cameras
        self._takers = takers
        self._factory = factory
        self._emit = emit
        self._blob = blob
        self._queue: asyncio.Queue[EvidenceRequest] = asyncio.Queue()
        self._parallel = asyncio.Semaphore(parallel)
        self._retry_delay = retry_delay_s
        self.stored = self.failed = 0

    def request(self, camera_id: str, trigger: Event) -> EvidenceRequest:
        """Ask for a picture from ``camera_id`` documenting the alarm ``trigger``.

        Raises:
            KeyError: no camera with that id.
        """
        return self.submit(EvidenceRequest.for_alarm(camera_id, trigger))

    def submit(self, request: EvidenceRequest) -> EvidenceRequest:
        """Queue ``request``; returns it.

        Raises:
            KeyError: no camera with its id.
        """
        if request.camera not in self._takers:
            raise KeyError(request.camera)
        self._queue.put_nowait(request)
        return request

    @property
    def waiting(self) -> int:
        """Requests not yet started."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Serve requests until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                request = await self._queue.get()
                await self._parallel.acquire()
                tg.create_task(self._one(request), name=f"evidence[{request.camera}]")

    async def _one(self, request: EvidenceRequest) -> None:
        try:
            await self._collect(request)
        except GatewayError as exc:  # the outbox refused: nothing more we can do here
            log.error("evidence.store_failed", camera=request.camera, error=str(exc))
        finally:
            self._parallel.release()

    async def _collect(self, request: EvidenceRequest) -> None:
        camera_id = request.camera
        camera = self._cameras[camera_id]
        data = request_data(camera, request)
        evidence: Evidence | None = None
        for attempt in range(camera.snapshot.attempts):
            try:
                evidence = await self._takers[camera_id]()
                break
            except GatewayError as exc:
                data["error"] = str(exc)
                log.warning("evidence.attempt_failed", camera=camera_id, attempt=attempt + 1,
                            error=str(exc))  # fmt: skip
                if attempt + 1 < camera.snapshot.attempts:
                    await asyncio.sleep(self._retry_delay)
        if evidence is not None:
            data.pop("error", None)
            data.update(sha256=evidence.sha256, bytes=len(evidence.jpeg), width=evidence.width,
                        height=evidence.height, method=evidence.method,
                        topic=request.topic)  # fmt: skip
            if evidence.snapshot_error is not None:
                data["snapshot_error"] = evidence.snapshot_error
        event = self._factory.make(
            "camera.snapshot",
            device=camera_id,
            subject=camera_id,
            state="instant",
            data=data,
            received_at=evidence.taken_at if evidence else utcnow(),
            incident=request.incident,
            event_id=request.snapshot_id,
        )
        if evidence is not None:
            await self._blob(request.topic, evidence.jpeg, event.priority)
            self.stored += 1
        else:
            self.failed += 1
        await self._emit(event)
        log.info("evidence.done", camera=camera_id, id=event.id, for_event=request.for_event,
                 command=request.command, sha256=data.get("sha256"),
                 error=data.get("error"))  # fmt: skip


def request_data(camera: CameraConfig, request: EvidenceRequest) -> dict[str, Any]:
    """The ``data`` every ``camera.snapshot`` of ``request`` carries."""
    data: dict[str, Any] = {
        "name": camera.name,
        "location": camera.location,
        "camera": request.camera,
        "requested_at": rfc3339(request.requested_at),
    }
    if request.command is not None:
        data.update(command=request.command, operator=request.operator)
    else:
        data.update(for_event=request.for_event, for_type=request.for_type)
    return data


def _new_id(at: datetime) -> str:
    return str(ULID.from_timestamp(at.timestamp()))
