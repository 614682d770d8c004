"""What a camera can do: events, snapshot, stream, PTZ — any mix of them.

A camera is judged by the services it lists (GetServices, or GetCapabilities on
older firmware; ONVIF Core §8.1.2) and by what its media service gives:

==========  ================================================================
capability  when
==========  ================================================================
events      the events service (``http://www.onvif.org/ver10/events/wsdl``)
            is listed and takes a PullPoint subscription
snapshot    the media service gives a snapshot URI for the profile in use
stream      the media service gives an RTSP stream URI for it
ptz         the PTZ service (``http://www.onvif.org/ver20/ptz/wsdl``) is listed
==========  ================================================================

A camera without events (IPyCam lists only its device and media services:
``olkham/IPyCam`` ``static/soap/get_services.xml``) is a working camera that
gives pictures: the driver keeps it ``online`` and says once what it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"

NAMES = ("events", "snapshot", "stream", "ptz")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Which of :data:`NAMES` a camera has."""

    events: bool
    snapshot: bool
    stream: bool
    ptz: bool

    @classmethod
    def of(
        cls, namespaces: Iterable[str], snapshot_uri: str | None, stream_uri: str | None
    ) -> Capabilities:
        """From the listed service namespaces and the media URIs found."""
        listed = set(namespaces)
        return cls(EVENTS_NS in listed, bool(snapshot_uri), bool(stream_uri), PTZ_NS in listed)

    def without_events(self) -> Capabilities:
        """The same camera, found to refuse PullPoint subscriptions."""
        return replace(self, events=False)

    @property
    def present(self) -> tuple[str, ...]:
        """Names it has, in :data:`NAMES` order."""
        return tuple(n for n in NAMES if getattr(self, n))

    @property
    def missing(self) -> tuple[str, ...]:
        """Names it lacks, in :data:`NAMES` order."""
        return tuple(n for n in NAMES if not getattr(self, n))

    @property
    def pictures(self) -> bool:
        """It can give an evidence picture (a snapshot URI or a stream)."""
        return self.snapshot or self.stream
