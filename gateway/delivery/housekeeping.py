"""Keeping the outbox healthy and saying so: retention, shed reports, storage faults, heartbeat.

* Retention: delivered rows older than ``retention_days`` are purged (hourly and
  at start); they are the campus's alarm record until then (GB/T 29315, >= 30 days).
* ``gateway.buffer_shed``: rows shed for capacity are reported as one event per
  second at most, with counts per priority and the ``seq`` numbers lost.
* ``fault.storage``: a corrupt outbox or state file quarantined at start, a state file that
  could not be read at start (``StateStore.unread``), a file that does not commit
  in the durable journal mode (checked every second, the switch tried again every
  ``DURABLE_RETRY_S``), or the disk filling
  (the ballast given up), raise ``active``; ``cleared`` once the ballast is back.
  A write that has waited ``STALL_FAULT_S`` while commits fail (a lock held by
  another process, I/O errors, a read-only or immutable file, also from the
  start), or ``SLOW_FAULT_S`` for a commit that neither fails nor ends (a disk
  that hangs; a loaded box can take a few seconds without being faulty), raises
  ``active`` with the reason (issue 11), ``cleared`` once every held row is
  stored (a full disk is reported by its own fault above, not twice). These
  events are held and sent like any other: they never wait on the disk they
  report.
* ``gateway.heartbeat``: made on demand for the uplink (never stored) with the
  outbox depth (held rows included), ``uncommitted`` (rows held in memory, not
  yet on disk), the age of the oldest pending row, the gateway's version, and the
  outbox ``stream`` with its ``last_seq`` and ``acked_up_to`` (every event that
  needs the center's ack, priority 1-3, is acked up to that seq): a center compares
  them with what it holds and sees a gap at the tail of a stream. While the file
  cannot be read a figure is the last one read (``null`` when there is none), and
  ``storage_error`` says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.config.root import OutboxConfig
from gateway.delivery.outbox import Outbox
from gateway.errors import OutboxError
from gateway.events.model import Emit, Event, EventFactory
from gateway.runtime.durable import not_durable_files
from gateway.runtime.state_store import StateStore
from gateway.runtime.version import gateway_version

log = structlog.get_logger(__name__)

_SHED_REPORT_S = 1.0
_BALLAST_CHECK_S = 60.0
_PURGE_S = 3600.0
STALL_FAULT_S = 2.0
"""Seconds a write waits while commits fail before ``fault.storage``."""
SLOW_FAULT_S = 10.0
"""Seconds a write waits on a commit that has not failed before ``fault.storage``."""
_STALL_CHECK_S = 0.25
DURABLE_RETRY_S = 60.0
"""Seconds between attempts to switch a file that is not durable (a WAL file another
process kept open) to the durable journal mode, on fresh connections."""

# What a start without the state file's values means, in the faults that say so.
_STARTS_AFRESH = (
    "arming starts from the configuration (scheduled areas from their timetable), "
    "bypasses and patrol progress from nothing"
)


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
        state: the state store, whose storage faults are reported with the outbox's.
    """

    outbox: Outbox
    factory: EventFactory
    cfg: OutboxConfig
    subject: str
    emit: Emit | None = field(default=None)
    figures: list[Callable[[], Mapping[str, Any]]] = field(default_factory=list)
    state: StateStore | None = None
    _storage_incident: str | None = None
    _not_durable: tuple[str, str] | None = None  # (what was reported, its incident)
    _durable_tried: float = 0.0
    _stall_incident: str | None = None
    _started: float = 0.0

    async def report_start(self) -> None:
        """Raise ``fault.storage`` when the outbox or the state file had to be
        quarantined at start, and when the state store could not read its file (it
        then runs from memory and saves nothing until a restart reads the file,
        ``StateStore.unread``)."""
        self._started = time.monotonic()
        if self.state is not None and self.state.unread is not None:
            await self._storage_fault(
                f"{self.state.unread}; {_STARTS_AFRESH}; changes are kept in memory only "
                "and nothing is saved to the file in this run: mend the disk, or move a "
                "file that cannot be read aside, and restart",
                {"path": str(self.state.path)},
                clear_later=False,
            )
        if self.state is not None and self.state.quarantined is not None:
            await self._storage_fault(
                f"corrupt state file {self.state.path} quarantined; a new one is kept from "
                f"now on: {_STARTS_AFRESH}, open alarms from the outbox",
                {"path": str(self.state.path), "moved_to": str(self.state.quarantined)},
                clear_later=False,
            )
        if self.state is not None and self.state.left_out:
            names = ", ".join(f"{kind}/{key}" for kind, key in sorted(self.state.left_out))
            await self._storage_fault(
                f"{len(self.state.left_out)} values of the state file could not be read and "
                f"were left out ({names[:300]}); an area among them starts from its "
                "timetable or configuration",
                {"path": str(self.state.path)},
                clear_later=False,
            )
        if self.outbox.quarantined is not None:
            await self._storage_fault(
                "corrupt outbox quarantined; a new stream began",
                {"moved_to": str(self.outbox.quarantined), "stream": self.outbox.stream},
                clear_later=False,
            )

    async def run(self) -> None:
        """Forever: commit stalls watched every 0.25 s, shed reports every second, disk
        checks every minute, purge hourly."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_commits(), name="outbox-stall-watch")
            tg.create_task(self._care(), name="outbox-care")
            # Apart: a purge waits for its commit, which waits as long as commits fail,
            # and the care loop's reports and checks must not wait with it.
            tg.create_task(self._purge_hourly(), name="outbox-purge")

    async def _watch_commits(self) -> None:
        """``fault.storage`` while commits stall (see module docstring)."""
        while True:
            stalled = self.outbox.stalled_for()
            limit = SLOW_FAULT_S if self.outbox.last_error is None else STALL_FAULT_S
            # A full disk has its own fault (``_check_disk``): one fault per cause.
            if self._stall_incident is None and stalled >= limit and not self.outbox.disk_pressure:
                reason = self.outbox.last_error or "commit in progress (slow disk)"
                event = await self._emit(
                    self._fault("active", f"outbox commit not done for {stalled:.1f} s: {reason}",
                                uncommitted=len(self.outbox.held), opens=True)
                )  # fmt: skip
                log.error("gateway.storage_fault", reason=reason, stalled_s=round(stalled, 1))
                self._stall_incident = event.id
            elif self._stall_incident is not None and stalled == 0 and not self.outbox.held:
                await self._emit(
                    self._fault("cleared", "outbox commits succeed again; every held event is "
                                "stored", incident=self._stall_incident)
                )  # fmt: skip
                log.warning("gateway.storage_recovered")
                self._stall_incident = None
            await asyncio.sleep(_STALL_CHECK_S)

    def _fault(
        self,
        state: Literal["active", "cleared"],
        reason: str,
        *,
        uncommitted: int | None = None,
        opens: bool = False,
        incident: str | None = None,
        path: Path | None = None,
    ) -> Event:
        data: dict[str, Any] = {"reason": reason, "path": str(path or self.outbox.path)}
        if uncommitted is not None:
            data["uncommitted"] = uncommitted
        return self.factory.make(
            "fault.storage",
            device="gateway",
            subject=self.subject,
            state=state,
            data=data,
            opens_incident=opens,
            incident=incident,
        )

    async def _purge_hourly(self) -> None:
        while True:
            purged = await self.outbox.purge(self.cfg.retention_days * 86400)
            if purged:
                log.info("outbox.purged", rows=purged, retention_days=self.cfg.retention_days)
            await asyncio.sleep(_PURGE_S)

    async def _care(self) -> None:
        last_ballast = -float("inf")
        while True:
            await self._report_shed()
            await self._check_durable()
            now = time.monotonic()
            if now - last_ballast >= _BALLAST_CHECK_S or (
                self.outbox.disk_pressure and self._storage_incident is None
            ):
                last_ballast = now
                await self._check_disk()
            await asyncio.sleep(_SHED_REPORT_S)

    async def heartbeat(self) -> Event:
        """The heartbeat event for the uplink (not stored); it never fails on the disk."""
        stats = self.outbox.stats
        errors: list[str] = []

        async def read(figure: Any) -> Any:
            try:
                return await figure
            except OutboxError as exc:
                errors.append(str(exc))
                return None

        oldest = await read(self.outbox.oldest_pending_age())
        held_age = self.outbox.held.oldest_age()
        if held_age is not None:
            oldest = held_age if oldest is None else max(oldest, held_age)
        last_seq = self.outbox.last_seq
        acked_up_to = await read(self.outbox.acked_up_to())
        extra: dict[str, Any] = {}
        problem = errors[0] if errors else self.outbox.metrics.last_error or self.outbox.last_error
        if problem:
            extra["storage_error"] = problem
        for source in self.figures:
            extra.update(source())
        return self.factory.make(
            "gateway.heartbeat",
            device="gateway",
            subject=self.subject,
            state="instant",
            data={
                "outbox_depth": await read(self.outbox.pending_count()),
                "uncommitted": len(self.outbox.held),
                "oldest_pending_s": None if oldest is None else round(oldest, 3),
                "unacked_alarms": await read(self.outbox.unacked_count()),
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

    async def _check_durable(self) -> None:
        """``fault.storage`` while a file does not commit in the durable journal mode
        (``gateway.runtime.durable``: a WAL file another process keeps open), cleared
        once a new connection has switched it."""
        files = [(self.outbox.path, self.outbox.not_durable)]
        if self.state is not None:
            files.append((self.state.path, self.state.not_durable))
        bad = [(path, reason) for path, reason in files if reason is not None]
        why = not_durable_files(bad)
        if bad and time.monotonic() - self._durable_tried >= DURABLE_RETRY_S:
            # The other process may be gone: try the switch again on fresh connections.
            self._durable_tried = time.monotonic()
            if self.outbox.not_durable is not None:  # only the file that needs it
                await self.outbox.retry_durable()
            if self.state is not None and self.state.not_durable is not None:
                self.state.retry_durable()
        if why and (self._not_durable is None or self._not_durable[0] != why):
            if self._not_durable is not None:
                await self._emit(
                    self._fault(
                        "cleared", "superseded by the next report", incident=self._not_durable[1]
                    )
                )
            event = await self._emit(
                self._fault(
                    "active",
                    f"not committed durably ({why}); a disk turning unwritable can kill "
                    "the daemon (SIGBUS on a WAL's -shm): close whatever else has the file "
                    "open and restart the gateway",
                    opens=True,
                    path=bad[0][0],
                )
            )
            log.error("gateway.storage_fault", reason=why)
            self._not_durable = (why, event.id)
        elif not why and self._not_durable is not None:
            await self._emit(
                self._fault("cleared", "every file commits durably again",
                            incident=self._not_durable[1])
            )  # fmt: skip
            self._not_durable = None

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
