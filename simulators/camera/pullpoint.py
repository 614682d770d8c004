"""The simulated camera's event source: properties, PullPoint subscriptions, triggers, replay.

Every trigger is an ONVIF *property* (ONVIF Core §9.2): a new subscription first
gets one ``Initialized`` message per property, then ``Changed`` messages. A line
crossing is a pulse (``tns1:RuleEngine/LineDetector/Crossed`` with an
``ObjectId``), not a property. Times are the camera's own clock, which may lie.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lxml import etree

from drivers.onvif_camera.notifications import local
from simulators.camera.soap import notification_xml, xml_time

Items = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Trigger:
    """What ``trigger(kind)`` sends: topic, Source and Data item names, state or pulse."""

    topic: str
    source_name: str
    data_name: str
    stateful: bool = True


TRIGGERS = {
    "motion": Trigger("tns1:RuleEngine/CellMotionDetector/Motion", "VideoSourceConfigurationToken",
                      "IsMotion"),
    "tamper": Trigger("tns1:RuleEngine/TamperDetector/Tamper", "VideoSourceConfigurationToken",
                      "IsTamper"),
    "field": Trigger("tns1:RuleEngine/FieldDetector/ObjectsInside",
                     "VideoSourceConfigurationToken", "IsInside"),
    "input": Trigger("tns1:Device/Trigger/DigitalInput", "InputToken", "LogicalState"),
    "line": Trigger("tns1:RuleEngine/LineDetector/Crossed", "VideoSourceConfigurationToken",
                    "ObjectId", stateful=False),
}  # fmt: skip


@dataclass(slots=True)
class Subscription:
    """One PullPoint subscription: its queue and its termination time (camera clock)."""

    id: str
    expires: datetime
    queue: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, message: str) -> None:
        self.queue.append(message)
        self.wake.set()


class EventSource:
    """Properties and subscriptions of one simulated camera.

    Args:
        default_source: the Source token of triggers that name none.
    """

    def __init__(self, default_source: str = "VideoSourceConfig_1") -> None:
        self.default_source = default_source
        self.subscriptions: dict[str, Subscription] = {}
        self._properties: dict[tuple[str, str], tuple[Trigger, bool]] = {}
        self._object_id = 0

    def subscribe(self, now: datetime, until: datetime) -> Subscription:
        """A new subscription, primed with one ``Initialized`` message per property."""
        sub = Subscription(secrets.token_hex(6), until)
        for (_, source), (trigger, active) in sorted(self._properties.items()):
            sub.put(self._message(trigger, source, active, "Initialized", now))
        self.subscriptions[sub.id] = sub
        return sub

    def live(self, sub_id: str, now: datetime) -> Subscription | None:
        """The subscription, or None when unknown or past its termination time."""
        sub = self.subscriptions.get(sub_id)
        if sub is not None and sub.expires < now:
            del self.subscriptions[sub_id]
            return None
        return sub

    def trigger(self, kind: str, active: bool, now: datetime, source: str | None = None) -> None:
        """Raise (``active``) or end a condition, or send a pulse, to every subscription.

        Raises:
            KeyError: an unknown kind (see :data:`TRIGGERS`).
        """
        trigger = TRIGGERS[kind]
        token = source or self.default_source
        if trigger.stateful:
            self._properties[(trigger.topic, token)] = (trigger, active)
        self.publish(self._message(trigger, token, active, "Changed", now))

    def publish(self, message: str) -> None:
        """Queue one ``wsnt:NotificationMessage`` (XML text) on every subscription."""
        for sub in self.subscriptions.values():
            sub.put(message)

    def reset(self) -> None:
        """Forget subscriptions and properties (a reboot)."""
        self.subscriptions.clear()
        self._properties.clear()

    async def pull(self, sub: Subscription, timeout_s: float, limit: int) -> list[str]:
        """Up to ``limit`` messages, waiting up to ``timeout_s`` for the first one."""
        if not sub.queue:
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), timeout_s)
            except TimeoutError:
                return []
        return [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]

    def _message(
        self, trigger: Trigger, source: str, active: bool, operation: str, now: datetime
    ) -> str:
        items: Items = ((trigger.source_name, source),)
        if trigger.source_name == "VideoSourceConfigurationToken":
            name = trigger.topic.rsplit("/", 2)[-2]
            items += (("VideoAnalyticsConfigurationToken", "Analytics_1"), ("Rule", f"My{name}"))
        if trigger.stateful:
            data = ((trigger.data_name, "true" if active else "false"),)
        else:
            self._object_id += 1
            data = ((trigger.data_name, str(self._object_id)),)
        return notification_xml(trigger.topic, operation, xml_time(now), items, data)


def load_capture(path: Path) -> list[str]:
    """The notification messages of a real capture, as XML ready to be replayed.

    XML captures (PullMessages, Notify, the Axis metadata stream, fragments) give
    their ``wsnt:NotificationMessage`` elements exactly as recorded, namespace
    declarations included; Home Assistant's zeep dicts (``.json``) are rebuilt as
    XML with the same topic, operation, time and items. Captures that are not ONVIF
    notifications (ISAPI, faults, HTML) give none.
    """
    raw = path.read_bytes()
    if path.suffix == ".json":
        message = json.loads(raw)
        body = message["Message"]["_value_1"]

        def items(part: str) -> Items:
            group = body.get(part) or {}
            return tuple((i["Name"], i["Value"]) for i in group.get("SimpleItem") or [])

        return [
            notification_xml(
                message["Topic"]["_value_1"],
                body.get("PropertyOperation", "Changed"),
                str(body.get("UtcTime", "")),
                items("Source"),
                items("Data"),
            )
        ]
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(raw, parser)
    if root is None:
        return []
    return [
        etree.tostring(el, encoding="unicode")
        for el in root.iter()
        if local(el.tag) == "NotificationMessage"
    ]
