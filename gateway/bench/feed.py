"""What the bench page remembers by itself: recent events, pictures, the center's last ack.

Everything the gateway stores goes through the daemon's ``emit``; the daemon
hands each event to :meth:`EventFeed.add` as it is made (before its commit, so
the page shows an alarm at once even while the disk is slow), each stored
picture to :meth:`EventFeed.add_blob`, and each ack from the center to
:meth:`EventFeed.note_ack`. Memory is bounded: ``size`` events, the last picture
per camera, and pictures not yet announced by a ``camera.snapshot`` event (at
most :data:`_UNCLAIMED`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.events.model import Event
from gateway.events.observation import utcnow

_UNCLAIMED = 16


@dataclass(frozen=True, slots=True)
class Picture:
    """The last evidence picture of one camera.

    Attributes:
        jpeg: the bytes as stored and sent to the center.
        event_id: its ``camera.snapshot`` event.
        taken_at: when it was taken (UTC).
        for_type: the type of the alarm it documents.
    """

    jpeg: bytes
    event_id: str
    taken_at: datetime
    for_type: str


class EventFeed:
    """Recent events (newest first), pictures and the last center ack.

    Args:
        size: how many events to keep.

    Attributes:
        last_ack: when the center last acknowledged something (UTC), or None.
        acked: event ids acknowledged so far (count).
    """

    def __init__(self, size: int = 200) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self.pictures: dict[str, Picture] = {}
        self.last_ack: datetime | None = None
        self.acked = 0

    def add(self, event: Event) -> None:
        """An event was made (heartbeats never come here: they are not stored)."""
        self._events.appendleft(event)
        topic = event.data.get("topic")
        camera = event.data.get("camera")
        if event.type == "camera.snapshot" and isinstance(topic, str) and isinstance(camera, str):
            jpeg = self._blobs.pop(topic, None)
            if jpeg is not None:
                self.pictures[camera] = Picture(
                    jpeg, event.id, event.time, str(event.data.get("for_type", ""))
                )

    def add_blob(self, topic: str, payload: bytes) -> None:
        """A picture was stored on ``topic`` (``snapshots/<event id>``); its event follows."""
        self._blobs[topic] = payload
        while len(self._blobs) > _UNCLAIMED:
            self._blobs.popitem(last=False)

    def note_ack(self, ids: list[str]) -> None:
        """The center acknowledged ``ids``."""
        self.last_ack = utcnow()
        self.acked += len(ids)

    def events(self, limit: int) -> list[Event]:
        """The ``limit`` most recent events, newest first."""
        return list(self._events)[:limit]

    @staticmethod
    def describe(event: Event) -> dict[str, Any]:
        """A short line about ``event`` for the page (names as the site wrote them)."""
        data = event.data
        name = next(
            (str(data[k]) for k in ("name", "camera", "checkpoint", "command") if data.get(k)),
            event.subject,
        )
        detail = next(
            (
                f"{k}={data[k]}"
                for k in ("condition", "reason", "by", "guard", "operator", "status")
                if data.get(k) not in (None, "", [])
            ),
            "",
        )
        return {
            "id": event.id,
            "type": event.type,
            "priority": event.priority,
            "subject": event.subject,
            "state": event.state,
            "name": name,
            "detail": detail,
            "test": bool(data.get("test")),
        }
