"""What the bench page shows, as one JSON document built from the running gateway.

Built only from memory and the local outbox, never from the broker, so the page
works the same with the uplink down. Sections:

* ``action``: what needs a person now, most urgent first, staying until it is
  over — zone alarms (a latched one until its ``reset``), tamper, line faults,
  devices offline, sirens and strobes sounding;
* ``areas`` and ``zones`` (grouped by area, 24 h zones without an area last):
  one state word per zone (:mod:`gateway.alarm.status`), name, type, since;
* ``devices``: modules, cameras, patrol readers and alarm panels with health and
  last seen (where the stage knows it);
* ``uplink``: connected, backlog, unacked alarms, the center's last ack;
* ``patrol``: the current round of each route, checkpoints done, due, missed;
* ``events``: the most recent, newest first, in the site's time with its offset;
* ``cameras``: the last evidence picture of each;
* ``walk_test``: the running test (untripped zones) and the last report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.alarm.system import AlarmSystem
from gateway.bench.feed import EventFeed
from gateway.bench.timefmt import SiteTime
from gateway.config.root import GatewayConfig
from gateway.delivery.outbox import Outbox
from gateway.delivery.uplink import Uplink
from gateway.events.observation import utcnow
from gateway.patrol.engine import TourEngine
from gateway.runtime.stage import Sighted, Stage

SHOWN_EVENTS = 100

_ACTION_RANK = {"alarm": 0, "tamper": 1, "line_fault": 2}
_ZONE_PRIORITY = {"panic": 1, "intrusion": 2, "perimeter": 2, "tamper": 2, "technical": 3}


@dataclass(slots=True)
class BenchSources:
    """The parts of a running gateway the page reads (the daemon fills it in).

    Attributes:
        cfg: the gateway config.
        alarm: zones, areas, outputs, walk test.
        stages: every device stage (health, last seen).
        uplink: the MQTT link (None until it exists).
        outbox: the local store (backlog, unacked alarms).
        patrol: the tour engine, or None.
        feed: recent events, pictures, the center's last ack.
    """

    cfg: GatewayConfig
    alarm: AlarmSystem
    stages: Sequence[Stage]
    uplink: Uplink | None
    outbox: Outbox
    patrol: TourEngine | None
    feed: EventFeed


class BenchModel:
    """Builds the page's document. ``await model.snapshot()``."""

    def __init__(self, sources: BenchSources) -> None:
        self.src = sources
        self.time = SiteTime(sources.cfg.site.timezone)
        cfg = sources.cfg
        self._device_names: dict[str, tuple[str, str]] = {
            **{m.id: (m.name or m.id, "module") for m in cfg.modules},
            **{c.id: (c.name or c.id, "camera") for c in cfg.cameras},
            **{r.id: (r.name or r.id, "reader") for r in cfg.patrol.readers},
            **{p.id: (p.name or p.id, "panel") for p in cfg.panels},
        }

    async def snapshot(self) -> dict[str, Any]:
        """The whole page as JSON-ready data."""
        cfg, now = self.src.cfg, utcnow()
        zones, devices = self._zones(), self._devices()
        return {
            "site": {
                "id": cfg.site.id,
                "gateway": cfg.site.gateway,
                "name": cfg.site.name,
                "timezone": self.time.name,
                "utc_offset": self.time.utc_offset(now),
            },
            "action": self._action(zones, devices),
            "areas": self._areas(),
            "zone_groups": self._groups(zones),
            "devices": devices,
            "uplink": await self._uplink(),
            "patrol": self._patrol(now),
            "events": self._events(),
            "cameras": self._cameras(),
            "walk_test": self._walk_test(),
        }

    # -- alarm system --------------------------------------------------------------------

    def _zones(self) -> dict[str, dict[str, Any]]:
        book, out = self.src.alarm.status, {}
        for zone in self.src.cfg.zones:
            status = book.zone(zone.id)
            out[zone.id] = {
                "id": zone.id,
                "name": zone.name,
                "type": zone.type,
                "area": zone.area,
                "location": zone.location,
                "state": status.state,
                "latched": status.latched,
                "bypassed": status.bypassed,
                "acknowledged": status.acknowledged,
                "violated": status.violated,
                "since": self.time.local(status.since),
            }
        return out

    def _action(
        self, zones: Mapping[str, dict[str, Any]], devices: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        items = [
            {
                **z,
                "kind": "zone",
                "priority": _ZONE_PRIORITY[z["type"]] if z["state"] == "alarm" else 3,
            }
            for z in zones.values()
            if z["state"] in _ACTION_RANK
        ]
        items.sort(key=lambda z: (z["priority"], _ACTION_RANK[z["state"]], z["since"]))
        for device in devices:
            if device["health"] == "offline":
                items.append({**device, "kind": "device", "state": "offline", "priority": 3})
        outputs = self.src.alarm.outputs
        for output_id, state in outputs.snapshot().items():
            if state["on"]:
                cfg = outputs.config[output_id]
                items.append(
                    {
                        "kind": "output",
                        "id": output_id,
                        "name": cfg.name,
                        "type": cfg.kind,
                        "state": "on",
                        "reason": state["reason"],
                        "until": self.time.local_text(state["until"]),
                        "priority": 4,
                    }
                )
        return items

    def _areas(self) -> list[dict[str, Any]]:
        out = []
        for area in self.src.cfg.areas:
            state = self.src.alarm.status.area(area.id)
            out.append({**state, "since": self.time.local_text(state["since"])})
        return out

    def _groups(self, zones: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = [
            {
                "area": a.id,
                "name": a.name,
                "zones": [z for z in zones.values() if z["area"] == a.id],
            }
            for a in self.src.cfg.areas
        ]
        loose = [z for z in zones.values() if z["area"] is None]
        if loose:
            groups.append({"area": None, "name": "24 h", "zones": loose})
        return groups

    def _walk_test(self) -> dict[str, Any]:
        snap = self.src.alarm.walk.snapshot()
        active = snap["active"]
        if active is not None:
            active = {**active, **self._local(active, "started", "until", "panic_until")}
        report = snap["last_report"]
        if report is not None:
            report = {**report, **self._local(report, "started", "until", "ended")}
        return {"active": active, "last_report": report}

    def _local(self, record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
        return {f"{k}_local": self.time.local_text(record.get(k)) for k in keys}

    # -- devices and the uplink ------------------------------------------------------------

    def _devices(self) -> list[dict[str, Any]]:
        out = []
        for stage in self.src.stages:
            seen: Mapping[str, datetime | None] = (
                stage.last_seen() if isinstance(stage, Sighted) else {}
            )
            for device_id, health in stage.health().items():
                name, kind = self._device_names.get(device_id, (device_id, stage.family))
                out.append(
                    {
                        "id": device_id,
                        "name": name,
                        "type": kind,
                        "health": health,
                        "last_seen": self.time.local(seen.get(device_id)),
                    }
                )
        return out

    async def _uplink(self) -> dict[str, Any]:
        uplink, outbox, feed = self.src.uplink, self.src.outbox, self.src.feed
        broker = self.src.cfg.broker
        return {
            "connected": uplink is not None and uplink.stats.connected.is_set(),
            "broker": f"{broker.host}:{broker.port}",
            "connects": uplink.stats.connects if uplink is not None else 0,
            "backlog": await outbox.pending_count(),
            "unacked_alarms": await outbox.unacked_count(),
            "last_center_ack": self.time.local(feed.last_ack),
        }

    # -- patrol, events, cameras -----------------------------------------------------------

    def _patrol(self, now: datetime) -> list[dict[str, Any]]:
        engine = self.src.patrol
        if engine is None:
            return []
        current: dict[str, dict[str, Any]] = {}
        for state in sorted(engine.rounds.values(), key=lambda r: r.when.start):
            if not state.when.start <= now <= state.last_deadline:
                continue
            stops = []
            for slot in state.slots:
                checkpoint = slot.stop.checkpoint
                status = (
                    "done"
                    if slot.hit_at is not None
                    else "missed"
                    if slot.missed_id is not None
                    else "due"
                )
                stops.append(
                    {
                        "checkpoint": checkpoint.id,
                        "name": checkpoint.name,
                        "status": status,
                        "at": self.time.local(slot.hit_at),
                        "deadline": self.time.local(slot.deadline),
                    }
                )
            route = state.when.route.cfg
            current[route.id] = {
                "round": state.id,
                "route": route.id,
                "route_name": route.name,
                "scheduled": self.time.local(state.when.start),
                "stops": stops,
            }
        return list(current.values())

    def _events(self) -> list[dict[str, Any]]:
        feed = self.src.feed
        return [
            {**feed.describe(e), "time": self.time.local(e.time)} for e in feed.events(SHOWN_EVENTS)
        ]

    def _cameras(self) -> list[dict[str, Any]]:
        out = []
        for camera in self.src.cfg.cameras:
            picture = self.src.feed.pictures.get(camera.id)
            out.append(
                {
                    "id": camera.id,
                    "name": camera.name or camera.id,
                    "picture": f"camera/{camera.id}/latest.jpg?v={picture.event_id}"
                    if picture
                    else None,
                    "taken": self.time.local(picture.taken_at) if picture else None,
                    "for_type": picture.for_type if picture else None,
                }
            )
        return out
