"""Alarm linkage: a zone alarm asks its linked cameras for evidence pictures (``[[linkage]]``).

:meth:`Linkage.wrap` wraps the zone engine's ``emit``: after an ``alarm.*``
event with state ``active`` is stored, every camera linked to its zone (the
event's ``subject``) gets a request on the :class:`~gateway.camera.evidence.EvidenceCollector`.
The alarm is stored first, whatever happens to the pictures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from gateway.config.camera import LinkageConfig
from gateway.events.model import Event

Emit = Callable[[Event], Awaitable[Event]]
Request = Callable[[str, Event], object]


class Linkage:
    """Zone → cameras.

    Args:
        links: the ``[[linkage]]`` entries (checked by the config).
        request: ``request(camera_id, alarm_event)`` asks for one picture.
    """

    def __init__(self, links: Sequence[LinkageConfig], request: Request) -> None:
        self._cameras = {link.zone: link.cameras for link in links}
        self._request = request

    def cameras_for(self, zone_id: str) -> tuple[str, ...]:
        """The cameras linked to ``zone_id`` (none when it has no linkage)."""
        return self._cameras.get(zone_id, ())

    def wrap(self, emit: Emit) -> Emit:
        """``emit`` that also asks the linked cameras for evidence of new zone alarms."""

        async def linked(event: Event) -> Event:
            stored = await emit(event)
            if stored.type.startswith("alarm.") and stored.state == "active":
                for camera_id in self.cameras_for(stored.subject):
                    self._request(camera_id, stored)
            return stored

        return linked
