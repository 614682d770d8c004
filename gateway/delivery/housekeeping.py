"""Keeping the outbox healthy and saying so: retention, shed reports, storage faults, heartbeat.

* Retention: delivered rows older than ``retention_days`` are purged (hourly and
  at start); they are the campus's alarm record until then (GB/T 29315, >= 30 days).
* ``gateway.buffer_shed``: rows shed for capacity are reported as one event per
  second at most, with counts per priority and the ``seq`` numbers lost.
* ``fault.storage``: a corrupt outbox quarantined at start, or the disk filling
  (the ballast given up), raise ``active``; ``cleared`` once the ballast is back.
* ``gateway.heartbeat``: made on demand for the uplink (never stored) with the
  outbox depth, the age of the oldest pending row, the gateway's version, and the
  outbox ``stream`` with its ``last_seq`` and ``acked_up_to`` (every event that
  needs the center's ack, priority 1-3, is acked up to that seq): a center compares
  them with what it holds and sees a gap at the tail of a stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.config.root import OutboxConfig
from gateway.delivery.outbox import Outbox
from gateway.events.model import Emit, Event, EventFactory
from gateway.runtime.version import gateway_version

log = structlog.get_logger(__name__)

_SHED_REPORT_S = 1.0
_BALLAST_CHECK_S = 60.0
_PURGE_S = 3600.0


@dataclass(slots=True)
class Housekeeping:
    """Periodic care of the outbox. ``await housekeeping.run()`` as a task.

    Args:
        outbox: the open outbox.
        factory: makes the events it reports.
        cfg: ``[outbox]`` settings.
        subject: the gateway id (subject of its own events).
        figures: more heartbeat fields, each source called at every heartbeat
            (the uplink's refusal counts …).
        emit: stores its events; the outbox's ``append`` when omitted (the daemon
            passes its own, which also shows them on the bench page).
    """

    outbox: Outbox
    factory: EventFactory
    cfg: OutboxConfig
    subject: str
    emit: Emit | None = field(default=None)
    figures: list[Callable[[], Mapping[str, Any]]] = field(default_factory=list)
    _storage_incident: str | None = None
    _started: float = 0.0

    async def report_start(self) -> None:
        """Raise ``fault.storage`` when the outbox had to be quarantined at start."""
        self._started = time.monotonic()
        if self.outbox.quarantined is not None:
            await self._storage_fault(
                "corrupt outbox quarantined; a new stream began",
                {"moved_to": str(self.outbox.quarantined), "stream": self.outbox.stream},
                clear_later=False,
            )

    async def run(self) -> None:
        """Forever: shed reports every second, disk checks every minute, purge hourly."""
        last_ballast = last_purge = -float("inf")
        while True:
            await self._report_shed()
            now = time.monotonic()
            if now - last_ballast >= _BALLAST_CHECK_S or (
                self.outbox.disk_pressure and self._storage_incident is None
            ):
                last_ballast = now
                await self._check_disk()
            if now - last_purge >= _PURGE_S:
                last_purge = now
                purged = await self.outbox.purge(self.cfg.retention_days * 86400)
                if purged:
                    log.info("outbox.purged", rows=purged, retention_days=self.cfg.retention_days)
            await asyncio.sleep(_SHED_REPORT_S)

    async def heartbeat(self) -> Event:
        """The heartbeat event for the uplink (not stored)."""
        stats = self.outbox.stats
        oldest = await self.outbox.oldest_pending_age()
        last_seq = self.outbox.last_seq
        acked_up_to = await self.outbox.acked_up_to()
        extra: dict[str, Any] = {}
        for source in self.figures:
            extra.update(source())
        return self.factory.make(
            "gateway.heartbeat",
            device="gateway",
            subject=self.subject,
            state="instant",
            data={
                "outbox_depth": await self.outbox.pending_count(),
                "oldest_pending_s": None if oldest is None else round(oldest, 3),
                "unacked_alarms": await self.outbox.unacked_count(),
                "stored_rows": stats.rows,
                "stored_bytes": stats.bytes,
                "shed_total": stats.shed_total,
                "uptime_s": round(time.monotonic() - self._started, 1),
                "stream": self.outbox.stream,
                "last_seq": last_seq,
                "acked_up_to": acked_up_to,
                "version": gateway_version(),
                **extra,
            },
        )

    async def _emit(self, event: Event) -> Event:
        return await (self.emit or self.outbox.append)(event)

    async def _report_shed(self) -> None:
        report = self.outbox.take_shed()
        if report is None:
            return
        log.warning("outbox.shed", by_priority=report.by_priority, undelivered=report.undelivered)
        await self._emit(
            self.factory.make(
                "gateway.buffer_shed",
                device="gateway",
                subject=self.subject,
                state="instant",
                data={
                    "shed": report.total,
                    "by_priority": {str(p): n for p, n in sorted(report.by_priority.items())},
                    "undelivered": report.undelivered,
                    "lost_seqs": _ranges(report.seqs),
                    "max_rows": self.cfg.max_rows,
                    "max_bytes": self.cfg.max_bytes,
                },
            )
        )

    async def _check_disk(self) -> None:
        if self.outbox.disk_pressure and self._storage_incident is None:
            await self._storage_fault(
                "outbox disk full: ballast given up, priority 4-5 messages shed",
                {"path": str(self.outbox.path)},
                clear_later=True,
            )
        elif self._storage_incident is not None and self.outbox.relieve_pressure():
            await self._emit(
                self.factory.make(
                    "fault.storage",
                    device="gateway",
                    subject=self.subject,
                    state="cleared",
                    data={"reason": "disk space recovered; ballast restored"},
                    incident=self._storage_incident,
                )
            )
            self._storage_incident = None

    async def _storage_fault(
        self, reason: str, extra: dict[str, str], *, clear_later: bool
    ) -> None:
        event = await self._emit(
            self.factory.make(
                "fault.storage",
                device="gateway",
                subject=self.subject,
                state="active",
                data={"reason": reason, **extra},
                opens_incident=True,
            )
        )
        log.error("gateway.storage_fault", reason=reason, **extra)
        if clear_later:
            self._storage_incident = event.id


def _ranges(seqs: list[int]) -> list[list[int]]:
    """``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]``."""
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out
