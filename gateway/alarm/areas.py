"""Areas (partitions): the arming state of groups of zones, persisted across restarts.

GB 50394 (commentary): after power returns the previous arming state is restored.
Every change is written to the :class:`~gateway.runtime.state_store.StateStore` first and
reported second, as ``area.armed`` / ``area.disarmed`` (``instant``, SIA CL / OP)
with who did it (an operator, ``schedule``). On the very first start an area takes
its configured ``initial`` state, which is persisted at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from gateway.config.alarm import AreaConfig
from gateway.config.root import GatewayConfig
from gateway.events.model import Emit, EventFactory, rfc3339
from gateway.runtime.state import AREA
from gateway.runtime.state_store import AreaRecord, StateStore
from gateway.runtime.timebase import Clock

log = structlog.get_logger(__name__)


class AreaBook:
    """The areas of one gateway and their arming state.

    Args:
        cfg: the gateway config (areas, zones).
        store: where arming states are persisted and restored from.
        factory, emit: make and store the ``area.*`` events.
        clock: the rules' time.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        store: StateStore,
        factory: EventFactory,
        emit: Emit,
        clock: Clock,
    ) -> None:
        self.config: dict[str, AreaConfig] = {a.id: a for a in cfg.areas}
        self.members: dict[str, list[str]] = {a.id: [] for a in cfg.areas}
        for zone in cfg.zones:
            if zone.area is not None:
                self.members[zone.area].append(zone.id)
        self._store = store
        self._factory = factory
        self._emit = emit
        self._clock = clock

    async def start(self) -> None:
        """Persist the ``initial`` state of every area that has none yet.

        Raises:
            StateError: the state cannot be written.
        """
        for area in self.config.values():
            if area.id not in self._store.areas:
                record = AreaRecord(area.initial == "armed", self._clock.now(), "initial")
                await self._store.put_area(area.id, record)
            log.info("area.restored", area=area.id, armed=self._store.areas[area.id].armed)

    def armed(self, area_id: str | None) -> bool:
        """Is ``area_id`` armed now? A zone without an area (None) counts as armed."""
        if area_id is None:
            return True
        record = self._store.areas.get(area_id)
        if record is None:
            return self.config[area_id].initial == "armed"
        return record.armed

    async def set(
        self,
        area_id: str,
        armed: bool,
        *,
        by: str,
        at: datetime | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """Arm or disarm ``area_id``: persist with its report in one state-store
        transaction, then store the report in the outbox (a cut between them: it is
        appended at the next start). Returns False when it already was in that
        state (nothing is written or reported).

        Raises:
            KeyError: unknown area.
            StateError: the state cannot be written (nothing is reported).
        """
        area = self.config[area_id]
        if self.armed(area_id) == armed:
            return False
        when = at or self._clock.now()
        event = self._factory.make(
            "area.armed" if armed else "area.disarmed",
            device="gateway",
            subject=area_id,
            state="instant",
            data={"name": area.name, "location": area.location, "by": by, **(data or {})},
            received_at=when,
        )
        await self._store.report([AREA.write(area_id, AreaRecord(armed, when, by))], [event],
                                 self._emit)  # fmt: skip
        log.info("area.changed", area=area_id, armed=armed, by=by)
        return True

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every area's state for ``get_state`` (JSON-ready)."""
        out: dict[str, dict[str, Any]] = {}
        for area_id, area in self.config.items():
            record = self._store.areas.get(area_id)
            out[area_id] = {
                "name": area.name,
                "armed": self.armed(area_id),
                "since": rfc3339(record.since) if record else None,
                "by": record.by if record else "initial",
                "schedule": area.schedule,
                "zones": self.members[area_id],
            }
        return out
