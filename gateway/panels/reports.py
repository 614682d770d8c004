"""A panel's message → events on the site's map (the mapping of ``[[panels]]``).

For each report of a message, in the order sent:

* the meaning of its code (:mod:`gateway.panels.codes`): our event type and state;
  a link test makes no event; a code no table knows makes ``alarm.panel_unknown``;
* ``subject``: the configured zone id for a zone number (``<panel>.z<nnn>`` for a
  zone nobody named; zone 0 means "no zone" unless configured), the mapped area
  for a user's or an area's report (opening, closing), else the panel id;
* ``data``: ``name``/``location`` of that zone, area or panel; ``panel``,
  ``account``, ``protocol``, ``code`` as received (and ``qualifier`` for Contact
  ID), ``zone``/``user``/``partition``/``number``, ``area`` with its ``area_name``
  (the zone's area, else the partition's, else the panel's), ``text``, ``xdata``,
  ``devicetime`` (the panel's claim), ``seq``, ``encrypted``;
* ``siacode``/``cidcode``: the code received and the table's pair of it (the
  event type's own code when the table pairs it with none);
* an ``active`` condition opens an incident that its ``cleared`` restore closes;
  the open ones are kept with their events (:mod:`gateway.panels.memory`), so a
  restore after a restart still closes its incident.

Every event is committed (``emit``) before :meth:`PanelReports.message` returns:
the receiver acknowledges the panel only then. A message's events are accepted
together and their commits awaited together, so while the disk stalls each of them
is sent from memory at once (a fresh review of 2026-12-05: a frame's second event, a
panic, waited for the first one's commit through a 6 s lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from gateway.config.alarm import AreaConfig
from gateway.config.panels import PanelConfig, PanelZoneConfig
from gateway.events.codes import kind_of
from gateway.events.model import Event, EventFactory, rfc3339
from gateway.events.panel_observation import PanelMessage, PanelReport
from gateway.panels.codes import LINK_TEST, UNKNOWN, Meaning, cid_meaning, sia_meaning
from gateway.panels.memory import IncidentKey, incident_write
from gateway.runtime.state import StateWrite, StoreWith

log = structlog.get_logger(__name__)


class PanelReports:
    """Makes and stores the events of every configured panel's messages.

    Args:
        panels: the ``[[panels]]``.
        areas: the site's ``[[areas]]`` by id (names for events).
        factory: makes events.
        emit: stores an event with kept state (the outbox's ``append``).
        opened: the incidents kept open at the last stop (:mod:`gateway.panels.memory`).

    Attributes:
        unknown_codes: (panel id, code) of every unknown code seen.
        open: the event that opened each incident not restored yet, by (panel id,
            type, subject): what the panels report active now, kept across restarts.
    """

    def __init__(
        self,
        panels: Sequence[PanelConfig],
        areas: Mapping[str, AreaConfig],
        factory: EventFactory,
        emit: StoreWith,
        opened: Mapping[IncidentKey, Event] | None = None,
    ) -> None:
        self._panels = {p.id: p for p in panels}
        self._areas = areas
        self._factory = factory
        self._emit = emit
        self.open: dict[IncidentKey, Event] = {}
        self.unknown_codes: set[tuple[str, str]] = set()
        self._changed: set[IncidentKey] = set()  # incidents opened or closed here
        self._kept_as: dict[IncidentKey, IncidentKey] = {}  # key now -> key in the file
        self.learn(opened or {})

    def learn(self, opened: Mapping[IncidentKey, Event]) -> None:
        """Take incidents kept open at the last stop (at start, or learnt late when the
        outbox could not be read then), where nothing was opened or closed since.

        One of a panel no longer configured is left out (logged); one of a zone whose
        id changed in the config is taken under the new id, so its restore still
        closes it (and forgets it under the key it was kept by).
        """
        for key, event in opened.items():
            panel = self._panels.get(key[0])
            if panel is None:
                log.warning("dc09.incident_of_unknown_panel", panel=key[0], incident=event.id)
                continue
            zone = event.data.get("zone")
            now = (key[0], key[1], panel.zone_id(zone)) if isinstance(zone, int) else key
            if now not in self._changed and now not in self.open:
                self.open[now] = event
                if now != key:
                    self._kept_as[now] = key

    async def message(self, msg: PanelMessage) -> list[Event]:
        """Store the events of ``msg``, in order; returns them as stored.

        Raises:
            OutboxError: the outbox is closed (nothing acknowledged then).
        """
        panel = self._panels[msg.panel_id]
        made = [self._unparsed(panel, msg)] if msg.unparsed is not None else []
        for report in msg.reports:
            event = self._event(panel, msg, report)
            if event is not None:
                made.append(event)
        # Each emit numbers its event when its task first runs: in this order.
        return list(await asyncio.gather(*(self._emit(e, keep=keep) for e, keep in made)))

    def _event(
        self, panel: PanelConfig, msg: PanelMessage, report: PanelReport
    ) -> tuple[Event, list[StateWrite]] | None:
        if report.protocol == "ADM-CID":
            meaning = cid_meaning(report.code, report.qualifier)
        else:
            meaning = sia_meaning(report.code)
        if meaning.type == LINK_TEST:
            return None
        if meaning.type == UNKNOWN and (panel.id, report.code) not in self.unknown_codes:
            self.unknown_codes.add((panel.id, report.code))
            log.warning("dc09.unknown_code", panel=panel.id, code=report.code, data=msg.data)
        data = self._common(panel, msg)
        data["code"] = report.code
        if report.qualifier is not None:
            data["qualifier"] = report.qualifier
        subject, where = self._place(panel, meaning, report, data)
        data["name"], data["location"] = where
        for key, value in (("text", report.text), ("user", report.user)):
            if value is not None:
                data[key] = value
        if report.modifiers:
            data["modifiers"] = dict(report.modifiers)
        return self._make(panel, meaning, subject, data, msg)

    def _place(
        self, panel: PanelConfig, meaning: Meaning, report: PanelReport, data: dict[str, Any]
    ) -> tuple[str, tuple[str, str]]:
        """The subject and its (name, location); fills zone/partition/area fields."""
        number, partition = report.number, report.partition
        zone: PanelZoneConfig | None = None
        subject = panel.id
        where = (panel.name or panel.id, panel.location)
        if meaning.number == "area" and number is not None:
            partition = number
        if partition is not None:
            data["partition"] = partition
        if meaning.number == "zone" and number is not None:
            zone = next((z for z in panel.zones if z.number == number), None)
            if zone is not None or number != 0:
                data["zone"] = number
                subject = panel.zone_id(number)
                if zone is not None:
                    where = (zone.name, zone.location or panel.location)
        elif meaning.number == "user" and number is not None:
            data["user"] = number
        elif meaning.number == "other" and number is not None:
            data["number"] = number
        area_id = (zone.area if zone is not None else None) or self._partition_area(
            panel, partition
        )
        area_id = area_id or panel.area
        if area_id is not None:
            data["area"] = area_id
            area = self._areas.get(area_id)
            if area is not None:
                data["area_name"] = area.name
            if subject == panel.id and meaning.number in ("user", "area"):
                subject = area_id
                if area is not None:
                    where = (area.name, area.location or panel.location)
        return subject, where

    @staticmethod
    def _partition_area(panel: PanelConfig, partition: int | None) -> str | None:
        if partition is None:
            return None
        return next((p.area for p in panel.partitions if p.number == partition), None)

    def _make(
        self,
        panel: PanelConfig,
        meaning: Meaning,
        subject: str,
        data: dict[str, Any],
        msg: PanelMessage,
    ) -> tuple[Event, list[StateWrite]]:
        """The event, and the kept write of the incident it opens or closes."""
        kind = kind_of(meaning.type)
        own_sia = kind.sia_restore if meaning.state == "cleared" else kind.sia
        key = (panel.id, meaning.type, subject)
        opened = self.open.get(key)
        incident = opened.id if opened is not None and meaning.state != "instant" else None
        opens = meaning.state == "active" and opened is None
        event = self._factory.make(
            meaning.type,
            device=panel.id,
            subject=subject,
            state=meaning.state,
            data=data,
            received_at=msg.received_at,
            incident=incident,
            opens_incident=opens,
            siacode=meaning.sia or own_sia,
            cidcode=meaning.cid if meaning.cid and meaning.cid.isdigit() else None,
        )
        if meaning.state != "instant":
            self._changed.add(key)
        if opens:
            self.open[key] = event
            return event, [incident_write(key, event)]
        if meaning.state == "cleared":
            # Forgotten whether or not this process knew it: a restore that came
            # before the kept state could be read (the outbox locked at start) must not
            # leave the entry to turn the next alarm into an update (a review of
            # 2026-12-06).
            known = self.open.pop(key, None) is not None
            return event, [incident_write(self._kept_as.pop(key, key) if known else key, None)]
        return event, []

    def _unparsed(self, panel: PanelConfig, msg: PanelMessage) -> tuple[Event, list[StateWrite]]:
        """Data no table reads: reported whole as ``alarm.panel_unknown``."""
        log.warning("dc09.unparsed", panel=panel.id, data=msg.data)
        data = self._common(panel, msg)
        data.update(name=panel.name or panel.id, location=panel.location, unparsed=msg.unparsed)
        meaning = Meaning(UNKNOWN, "instant", "other", None, None)
        return self._make(panel, meaning, panel.id, data, msg)

    @staticmethod
    def _common(panel: PanelConfig, msg: PanelMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "panel": panel.id,
            "account": msg.account,
            "protocol": msg.protocol,
            "seq": msg.seq,
            "encrypted": msg.encrypted,
            "devicetime": rfc3339(msg.devicetime) if msg.devicetime is not None else None,
            "raw": msg.data,
        }
        if msg.xdata:
            data["xdata"] = {k: v for k, v in msg.xdata}
        return data
