"""The camera stage of the daemon: drivers, their rules, evidence pictures and linkage.

A :class:`~gateway.runtime.stage.Stage`: one supervised task per camera
(``driver[onvif_camera:<id>]``) and one for the evidence collector, started in
the daemon's task group after the Modbus pollers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.events import CameraDriver
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.camera.evidence import BlobSink, EvidenceCollector, EvidenceRequest
from gateway.camera.linkage import Linkage
from gateway.camera.rules import CameraRules, StatePublisher
from gateway.config.root import GatewayConfig
from gateway.events.model import Emit, Event, EventFactory
from gateway.events.observation import HealthState
from gateway.runtime.stage import StageTask, device_task


class CameraStage:
    """Everything camera-related of one gateway.

    Args:
        cfg: the gateway config (``cameras``, ``linkage``).
        factory: makes events.
        emit: stores an event (the outbox's ``append``).
        blob: stores picture bytes (the outbox's ``append_blob``).
        publish_state: publishes a camera's retained state (health, capabilities).
        armed: tells whether an area is armed (cameras bound to an area follow it).

    Attributes:
        drivers: by camera id; rules, evidence, linkage: the stages.
    """

    family = "onvif_camera"

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: Emit,
        blob: BlobSink,
        *,
        publish_state: StatePublisher | None = None,
        armed: Callable[[str], bool] | None = None,
    ) -> None:
        self.rules = CameraRules(
            cfg.cameras,
            factory,
            emit,
            on_alarm=self._request,
            publish_state=publish_state,
            armed=armed,
        )
        self.drivers = {c.id: CameraDriver(c, self.rules.observe) for c in cfg.cameras}
        takers = {c.id: SnapshotTaker(c, self._media_of(c.id)) for c in cfg.cameras}
        self.evidence = EvidenceCollector(
            {c.id: c for c in cfg.cameras}, takers, factory, emit, blob
        )
        self.linkage = Linkage(cfg.linkage, self._request)

    def tasks(self) -> Sequence[StageTask]:
        """The evidence collector and one task per camera (none without cameras)."""
        if not self.drivers:
            return []
        return [
            StageTask("evidence", self.evidence.run),
            *(device_task(self.family, cid, d.run) for cid, d in self.drivers.items()),
        ]

    def health(self) -> Mapping[str, HealthState]:
        """Camera id → its driver's health."""
        return {camera_id: d.health for camera_id, d in self.drivers.items()}

    def last_seen(self) -> Mapping[str, datetime | None]:
        """Camera id → when it last answered."""
        return {camera_id: d.last_seen for camera_id, d in self.drivers.items()}

    def _media_of(self, camera_id: str) -> Callable[[], MediaUris | None]:
        driver = self.drivers[camera_id]
        return lambda: driver.media

    async def request(self, request: EvidenceRequest) -> None:
        """Queue a picture request (the ``snapshot`` command's)."""
        self.evidence.submit(request)

    def _request(self, camera_id: str, trigger: Event) -> None:
        self.evidence.request(camera_id, trigger)
