"""Alarm linkage: a zone alarm asks its linked cameras for evidence pictures (``[[linkage]]``).

:meth:`Linkage.wrap` wraps the store of the zone engine's events: an ``alarm.*``
event with state ``active`` is stored together with one evidence request per
camera linked to its zone (the event's ``subject``), in one outbox transaction
(``keep``, :mod:`gateway.camera.memory`); once it is stored the requests are
queued on the :class:`~gateway.camera.evidence.EvidenceCollector`. The alarm is
never held up by the pictures, and a power cut right after it loses none of
them: the requests are served after the restart.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.camera.evidence import Pictures
from gateway.config.camera import LinkageConfig
from gateway.events.model import Event
from gateway.runtime.state import StateWrite, StoreWith


class Linkage:
    """Zone → cameras.

    Args:
        links: the ``[[linkage]]`` entries (checked by the config).
        pictures: plans and queues evidence requests (the collector).
    """

    def __init__(self, links: Sequence[LinkageConfig], pictures: Pictures) -> None:
        self._cameras = {link.zone: link.cameras for link in links}
        self._pictures = pictures

    def cameras_for(self, zone_id: str) -> tuple[str, ...]:
        """The cameras linked to ``zone_id`` (none when it has no linkage)."""
        return self._cameras.get(zone_id, ())

    def wrap(self, store: StoreWith) -> StoreWith:
        """``store`` that also keeps each new zone alarm's requests of its linked cameras."""

        async def linked(
            event: Event,
            *,
            keep: Sequence[StateWrite] = (),
            blob: tuple[str, bytes] | None = None,
        ) -> Event:
            requests = []
            if event.type.startswith("alarm.") and event.state == "active":
                requests = [self._pictures.plan(c, event) for c in self.cameras_for(event.subject)]
            stored = await store(event, keep=[*keep, *(r.kept() for r in requests)], blob=blob)
            for request in requests:
                self._pictures.submit(request)
            return stored

        return linked
