"""The camera stage of the daemon: drivers, their rules, evidence pictures and linkage.

One supervised task per camera (``driver[onvif_camera:<id>]``) and one for the
evidence collector, started in the daemon's task group after the Modbus pollers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.onvif_camera.device import MediaUris
from drivers.onvif_camera.events import CameraDriver
from drivers.onvif_camera.snapshot import SnapshotTaker
from gateway.camera_rules import CameraRules, Emit
from gateway.config import GatewayConfig
from gateway.evidence import BlobSink, EvidenceCollector
from gateway.linkage import Linkage
from gateway.schema import Event, EventFactory
from gateway.supervisor import Supervisor


class CameraStage:
    """Everything camera-related of one gateway.

    Args:
        cfg: the gateway config (``cameras``, ``linkage``).
        factory: makes events.
        emit: stores an event (the outbox's ``append``).
        blob: stores picture bytes (the outbox's ``append_blob``).

    Attributes:
        drivers: by camera id; rules, evidence, linkage: the stages.
    """

    def __init__(
        self, cfg: GatewayConfig, factory: EventFactory, emit: Emit, blob: BlobSink
    ) -> None:
        self.rules = CameraRules(cfg.cameras, factory, emit, on_alarm=self._request)
        self.drivers = {c.id: CameraDriver(c, self.rules.observe) for c in cfg.cameras}
        takers = {c.id: SnapshotTaker(c, self._media_of(c.id)) for c in cfg.cameras}
        self.evidence = EvidenceCollector(
            {c.id: c for c in cfg.cameras}, takers, factory, emit, blob
        )
        self.linkage = Linkage(cfg.linkage, self._request)

    def start(self, tg: asyncio.TaskGroup, supervisor: Supervisor) -> None:
        """Create the evidence task and one task per camera in ``tg``."""
        if not self.drivers:
            return
        tg.create_task(supervisor.run_forever("evidence", self.evidence.run), name="evidence")
        for camera_id, driver in self.drivers.items():
            name = f"driver[onvif_camera:{camera_id}]"
            tg.create_task(supervisor.run_forever(name, driver.run), name=name)

    def _media_of(self, camera_id: str) -> Callable[[], MediaUris | None]:
        driver = self.drivers[camera_id]
        return lambda: driver.media

    def _request(self, camera_id: str, trigger: Event) -> None:
        self.evidence.request(camera_id, trigger)
