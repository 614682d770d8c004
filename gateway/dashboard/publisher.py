"""Retained zone and area states on every change: what a dashboard reads without custom code.

``<prefix>/zone/<id>/state`` holds ``{state, latched, bypassed, area_armed, since,
…}`` (:class:`gateway.alarm.status.ZoneStatus`) and ``<prefix>/area/<id>/state``
``{state: armed|disarmed, …}``, both retained, so a new subscriber — a Node-RED
flow, Home Assistant, a second console — reads the current state at once, and
reads it again right after a gateway restart (the state is rebuilt from the
persisted alarm state before anything is published). The uplink publishes them
again after every reconnect.

The publisher wakes on every poke of the daemon's notifier (a stored event, an
applied reading, a handled command), works out every state and hands the uplink
those that differ from what it handed last. A zone not read yet since start is
left alone: its last retained state stands until the first reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from gateway.alarm.status import StatusBook
from gateway.config.root import GatewayConfig
from gateway.dashboard.discovery import discovery_messages
from gateway.runtime.notifier import Listener

log = structlog.get_logger(__name__)

Retain = Callable[[str, Mapping[str, Any]], None]
"""``retain(full topic, body)``: the uplink's retained-message table (:meth:`Uplink.retain`)."""


class DashboardPublisher:
    """Keeps the retained dashboard topics current. ``await publisher.run()`` as a task.

    Args:
        cfg: the gateway config (prefix, zones, areas, ``[dashboard]``).
        status: the zone and area states.
        retain: records a retained message for the uplink.
        listener: woken when something may have changed.

    Attributes:
        published: retained messages handed to the uplink so far.
    """

    def __init__(
        self, cfg: GatewayConfig, status: StatusBook, retain: Retain, listener: Listener
    ) -> None:
        self._cfg = cfg
        self._status = status
        self._retain = retain
        self._listener = listener
        self._last: dict[str, dict[str, Any]] = {}
        self.published = 0

    async def run(self) -> None:
        """Announce discovery configs (when enabled), then publish changes until cancelled."""
        if self._cfg.dashboard.ha_discovery:
            for topic, payload in discovery_messages(self._cfg):
                self._retain(topic, payload)
            log.info("dashboard.discovery_announced", prefix=self._cfg.dashboard.discovery_prefix)
        while True:
            await self._listener.wait()
            self.publish_changes()

    def publish_changes(self) -> int:
        """Hand the uplink every zone and area state that changed; returns how many."""
        prefix = self._cfg.topic_prefix
        changed = 0
        for zone in self._cfg.zones:
            status = self._status.zone(zone.id)
            if status.state == "unknown":
                continue
            changed += self._put(
                f"{prefix}/zone/{zone.id}/state", status.public(zone.id, self._status)
            )
        for area in self._cfg.areas:
            changed += self._put(f"{prefix}/area/{area.id}/state", self._status.area(area.id))
        return changed

    def _put(self, topic: str, body: dict[str, Any]) -> int:
        if self._last.get(topic) == body:
            return 0
        self._last[topic] = body
        self._retain(topic, body)
        self.published += 1
        return 1
