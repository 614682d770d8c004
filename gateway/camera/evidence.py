"""Evidence pictures: take them when asked, store them durably, say so in an event.

:class:`EvidenceCollector` gets requests ("camera X, for event E") from camera
alarms (:mod:`gateway.camera.rules`) and zone alarms through linkage
(:mod:`gateway.camera.linkage`). For each it takes a picture (up to ``attempts`` times,
a second apart), then, in this order:

1. appends the JPEG bytes to the outbox as a non-event message on
   ``snapshots/<event id>`` (priority of ``camera.snapshot``, 3: never shed,
   sent after the alarms, and before the event that names it);
2. appends a ``camera.snapshot`` event whose ``data`` has ``sha256`` (hex of the
   exact bytes sent), ``bytes``, ``width``/``height`` (pixels), ``method``
   (``snapshot_uri`` or ``stream``; with ``snapshot_error`` when the stream stood
   in for a failing snapshot URI), ``topic`` (``snapshots/<event id>``),
   ``for_event``/``for_type`` (the alarm it documents) and that alarm's ``incident``.

Both go through the outbox, so a picture taken while the uplink is down is
delivered when it is back, like the alarm. A camera that gives no picture still
gets a ``camera.snapshot`` event, with ``error`` instead of ``sha256``.
Requests beyond ``queue_size`` waiting are refused with a log line and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from gateway.config.camera import CameraConfig
from gateway.errors import GatewayError
from gateway.events.model import Emit, Event, EventFactory
from gateway.events.observation import Evidence

log = structlog.get_logger(__name__)

BlobSink = Callable[[str, bytes, int], Awaitable[int]]
"""``await outbox.append_blob(topic_suffix, payload, priority) -> seq``."""


Taker = Callable[[], Awaitable[Evidence]]


class EvidenceCollector:
    """Takes and stores evidence pictures; ``await collector.run()`` (cancel to stop).

    Args:
        cameras: camera configs by id (names, snapshot options).
        takers: per camera id, a callable that takes one picture or raises a
            :class:`~gateway.errors.GatewayError`.
        factory: makes ``camera.snapshot`` events.
        emit: stores an event (the outbox's ``append``).
        blob: stores the bytes (the outbox's ``append_blob``).
        queue_size: requests that may wait.
        parallel: pictures taken at once (different cameras work in parallel).

    Attributes:
        stored: pictures stored; failed: requests that got no picture;
        refused: requests refused because the queue was full.
    """

    def __init__(
        self,
        cameras: Mapping[str, CameraConfig],
        takers: Mapping[str, Taker],
        factory: EventFactory,
        emit: Emit,
        blob: BlobSink,
        *,
        queue_size: int = 64,
        parallel: int = 4,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._cameras = cameras
        self._takers = takers
        self._factory = factory
        self._emit = emit
        self._blob = blob
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(queue_size)
        self._parallel = asyncio.Semaphore(parallel)
        self._retry_delay = retry_delay_s
        self.stored = self.failed = self.refused = 0

    def request(self, camera_id: str, trigger: Event) -> bool:
        """Ask for a picture from ``camera_id`` for ``trigger``; False when refused.

        Raises:
            KeyError: no camera with that id.
        """
        if camera_id not in self._takers:
            raise KeyError(camera_id)
        try:
            self._queue.put_nowait((camera_id, trigger))
        except asyncio.QueueFull:
            self.refused += 1
            log.error("evidence.refused", camera=camera_id, for_event=trigger.id)
            return False
        return True

    async def run(self) -> None:
        """Serve requests until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                camera_id, trigger = await self._queue.get()
                await self._parallel.acquire()
                tg.create_task(self._one(camera_id, trigger), name=f"evidence[{camera_id}]")

    async def _one(self, camera_id: str, trigger: Event) -> None:
        try:
            await self._collect(camera_id, trigger)
        except GatewayError as exc:  # the outbox refused: nothing more we can do here
            log.error("evidence.store_failed", camera=camera_id, error=str(exc))
        finally:
            self._parallel.release()

    async def _collect(self, camera_id: str, trigger: Event) -> None:
        camera = self._cameras[camera_id]
        data: dict[str, Any] = {
            "name": camera.name,
            "location": camera.location,
            "camera": camera_id,
            "for_event": trigger.id,
            "for_type": trigger.type,
        }
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
        incident = trigger.data.get("incident")
        if evidence is not None:
            data.pop("error", None)
            data.update(sha256=evidence.sha256, bytes=len(evidence.jpeg), width=evidence.width,
                        height=evidence.height, method=evidence.method)  # fmt: skip
            if evidence.snapshot_error is not None:
                data["snapshot_error"] = evidence.snapshot_error
        event = self._factory.make(
            "camera.snapshot",
            device=camera_id,
            subject=camera_id,
            state="instant",
            data=data,
            received_at=evidence.taken_at if evidence else None,
            incident=incident if isinstance(incident, str) else None,
        )
        if evidence is not None:
            topic = f"snapshots/{event.id}"
            event = _with_topic(event, topic)
            await self._blob(topic, evidence.jpeg, event.priority)
            self.stored += 1
        else:
            self.failed += 1
        await self._emit(event)
        log.info("evidence.done", camera=camera_id, id=event.id, for_event=trigger.id,
                 sha256=data.get("sha256"), error=data.get("error"))  # fmt: skip


def _with_topic(event: Event, topic: str) -> Event:
    return replace(event, data={**event.data, "topic": topic})
