"""The camera stage of the daemon: drivers, their rules, evidence pictures and linkage.

A :class:`~gateway.runtime.stage.Stage`: one supervised task per camera
(``driver[onvif_camera:<id>]``) and one for the evidence collector, started in
the daemon's task group after the Modbus pollers. It starts from what the
outbox kept across a restart (:mod:`gateway.camera.memory`): the incidents that
were open, and the evidence requests whose pictures were not stored yet
(served again first, late or reported as not taken). A picture asked for
before its camera first connected (at start, just after a restart) waits for the
camera's media URIs, at most ``snapshot.timeout_s``, before it is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.events import CameraDriver
from drivers.onvif_camera.picture_process import PicturePool
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.camera.evidence import EvidenceCollector, EvidenceRequest, Keep, Taker
from gateway.camera.linkage import Linkage
from gateway.camera.memory import EVIDENCE, INCIDENT, open_incidents
from gateway.camera.rules import CameraRules, StatePublisher
from gateway.config.root import GatewayConfig
from gateway.events.model import Event, EventFactory
from gateway.events.observation import Evidence, HealthState, utcnow
from gateway.runtime.device_health import kept_outages
from gateway.runtime.stage import StageTask, device_task
from gateway.runtime.state import Recall, StoreWith, read_kept


class CameraStage:
    """Everything camera-related of one gateway.

    Args:
        cfg: the gateway config (``cameras``, ``linkage``).
        factory: makes events.
        store: stores an event with kept state and picture bytes in one
            transaction (the outbox's ``append``).
        keep: commits kept state alone (the outbox's ``keep``).
        recall: reads kept state (the outbox's ``kept``).
        publish_state: publishes a camera's retained state (health, capabilities).
        armed: tells whether an area is armed (cameras bound to an area follow it).

    Attributes:
        drivers: by camera id; rules, evidence, linkage: the stages.
        resumed: evidence requests found pending at start.

    Raises:
        OutboxError: evidence requests the outbox cannot read.
    """

    family = "onvif_camera"

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        store: StoreWith,
        keep: Keep,
        recall: Recall,
        *,
        publish_state: StatePublisher | None = None,
        armed: Callable[[str], bool] | None = None,
    ) -> None:
        self.rules = CameraRules(
            cfg.cameras,
            factory,
            store,
            pictures=self,
            publish_state=publish_state,
            armed=armed,
            keep=keep,
            incidents=read_kept(recall, INCIDENT, open_incidents),
            outages=kept_outages(recall, (c.id for c in cfg.cameras)),
        )
        self._recall = recall
        self._camera_ids = [c.id for c in cfg.cameras]
        self.drivers = {c.id: CameraDriver(c, self.rules.observe) for c in cfg.cameras}
        self.pictures = PicturePool()  # shared: a site with many cameras, two processes
        takers = {c.id: self._taker(c.id, SnapshotTaker(c, self._media_of(c.id), self.pictures))
                  for c in cfg.cameras}  # fmt: skip
        self.evidence = EvidenceCollector(
            {c.id: c for c in cfg.cameras}, takers, factory, store, keep
        )
        self.linkage = Linkage(cfg.linkage, self)
        self.resumed = self.evidence.resume(recall(EVIDENCE).values(), utcnow())

    def kept_loaded(self) -> None:
        """The outbox read its kept state late (unreadable at start): learn the
        cameras' outages (the outbox's ``on_kept_loaded``)."""
        self.rules.learn_outages(kept_outages(self._recall, self._camera_ids))

    def tasks(self) -> Sequence[StageTask]:
        """The evidence collector and one task per camera (none without cameras)."""
        if not self.drivers:
            return []
        return [
            StageTask("evidence", self._evidence),
            StageTask("camera-incidents", self.rules.run),
            *(device_task(self.family, cid, d.run) for cid, d in self.drivers.items()),
        ]

    async def _evidence(self) -> None:
        """The evidence collector; its picture processes end with it (at a stop)."""
        try:
            await self.evidence.run()
        finally:
            self.pictures.close()

    def health(self) -> Mapping[str, HealthState]:
        """Camera id → its driver's health."""
        return {camera_id: d.health for camera_id, d in self.drivers.items()}

    def protocol_errors(self) -> Mapping[str, int]:
        """Camera id → notifications it sent that could not be read, since start."""
        return {camera_id: d.protocol_errors for camera_id, d in self.drivers.items()}

    def last_seen(self) -> Mapping[str, datetime | None]:
        """Camera id → when it last answered."""
        return {camera_id: d.last_seen for camera_id, d in self.drivers.items()}

    def _media_of(self, camera_id: str) -> Callable[[], MediaUris | None]:
        driver = self.drivers[camera_id]
        return lambda: driver.media

    def _taker(self, camera_id: str, take: SnapshotTaker) -> Taker:
        """``take`` once the camera's media URIs are known (waiting at most
        ``snapshot.timeout_s``; then ``take`` says they are not)."""
        known = self.drivers[camera_id].media_known

        async def when_known() -> Evidence:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(known.wait(), take.cfg.snapshot.timeout_s)
            return await take()

        return when_known

    async def request(self, request: EvidenceRequest) -> None:
        """Keep a picture request (the ``snapshot`` command's), then queue it.

        Raises:
            OutboxError: the outbox is closed.
        """
        await self.evidence.request_now(request)

    def plan(self, camera_id: str, alarm: Event) -> EvidenceRequest:
        """An evidence request for ``alarm`` (see :class:`~gateway.camera.evidence.Pictures`)."""
        return self.evidence.plan(camera_id, alarm)

    def submit(self, request: EvidenceRequest) -> EvidenceRequest:
        """Queue a request kept with its alarm."""
        return self.evidence.submit(request)
