"""The center's camera commands (checked first by :mod:`gateway.commands.processor`).

=========  ==============  ======================================================
command    params          data of an ``ok`` result
=========  ==============  ======================================================
snapshot   ``camera``      ``camera``, ``event_id`` (the id the ``camera.snapshot``
                           event will have), ``topic`` (``snapshots/<event_id>``,
                           where the JPEG bytes go)
=========  ==============  ======================================================

A ``snapshot`` answers at once, with the id of the picture it promises; the
picture is taken next, like an alarm's evidence
(:mod:`gateway.camera.evidence`), and its ``camera.snapshot`` event carries
``command`` (the correlation id) and ``operator``. A camera that cannot give
pictures (no snapshot URI, no stream) or that the gateway does not know is
refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.camera.evidence import EvidenceRequest
from gateway.commands.processor import Command, Handler
from gateway.errors import CommandRefused
from gateway.events.observation import utcnow

if TYPE_CHECKING:
    from gateway.camera.stage import CameraStage


def camera_handlers(stage: CameraStage) -> dict[str, Handler]:
    """The handler of every camera command, bound to ``stage``."""

    async def snapshot(command: Command) -> dict[str, Any]:
        camera_id = command.params.get("camera")
        if not isinstance(camera_id, str) or not camera_id:
            raise CommandRefused("params.camera must be a non-empty string", reason="invalid")
        driver = stage.drivers.get(camera_id)
        if driver is None:
            raise CommandRefused(f"no camera {camera_id!r}", command="snapshot", reason="invalid")
        found = driver.capabilities
        if found is not None and not found.pictures:
            raise CommandRefused(
                f"camera {camera_id} gives no pictures (no snapshot URI, no stream)",
                command="snapshot",
            )
        request = EvidenceRequest.for_command(
            camera_id, command.correlation_id, command.operator, utcnow()
        )
        await stage.request(request)
        return {"camera": camera_id, "event_id": request.snapshot_id, "topic": request.topic}

    return {"snapshot": snapshot}
