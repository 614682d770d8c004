"""Escalate, never drop: an alarm the center has not acked in time is made loud locally.

Issue 10 item 7. An alarm (priority 1-2) the center has not acked within
``escalate_after_s`` (``[outbox]``, 60 s by default) of being accepted by the outbox
(numbered: stored, or held in memory while the disk refuses it, so a failing disk
never silences the escalation):

* is still re-sent as before, with the same id (the outbox does that; nothing here
  ever expires or drops it);
* raises ``alarm.unacknowledged`` ``active`` once (CID 354 "Failure to communicate
  event", SIA YC), naming the alarm; ``cleared`` when the center acks it at last;
* switches the configured local output on (``escalate_output``, e.g. a buzzer in
  the guard house) while any escalated alarm is still unacked, off once none is.

Deadlines run on the monotonic clock: a wall-clock step (NTP, a technician) never
escalates early nor late. At start the alarms a previous process left unacked
are loaded with the time they have left, from their stored wall time once,
clamped to ``[0, escalate_after_s]``.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import structlog

from gateway.delivery.outbox import Outbox
from gateway.events.model import Emit, Event, EventFactory

log = structlog.get_logger(__name__)

Switch = Callable[[bool, str], Awaitable[None]]
"""(on, reason) -> the escalation output is switched (or its switching is being retried)."""


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """An alarm waiting for the center's ack.

    Attributes:
        id, type, subject, seq: the alarm event's.
        due: monotonic time it escalates.
    """

    id: str
    type: str
    subject: str
    seq: int | None
    due: float


@dataclass(slots=True)
class Escalation:
    """Watches alarms for the center's ack. ``await escalation.run()`` as a task.

    Args:
        outbox: the open outbox (its unacked alarms are loaded at :meth:`load`).
        factory, emit: make and store ``alarm.unacknowledged``.
        subject: the gateway id.
        after_s: seconds an alarm may wait for the center's ack.
        switch: switches the local escalation output; None when none is configured.
        clock: the monotonic clock (seconds).

    Attributes:
        escalated: alarm id -> id of its ``alarm.unacknowledged`` ``active`` event.
        escalations: alarms escalated since start (a counter; the heartbeat shows it).
    """

    outbox: Outbox
    factory: EventFactory
    emit: Emit
    subject: str
    after_s: float
    switch: Switch | None = None
    clock: Callable[[], float] = time.monotonic
    escalated: dict[str, str] = field(default_factory=dict)
    escalations: int = 0
    _open: dict[str, OpenAlarm] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _acked: list[str] = field(default_factory=list)

    async def load(self) -> None:
        """Take in the alarms the outbox holds unacked (at start, before :meth:`run`)."""
        wall_now = time.time()
        for row in await self.outbox.open_alarms():
            left = min(max(row.stored_at + self.after_s - wall_now, 0.0), self.after_s)
            self._watch(OpenAlarm(row.id, row.type, row.subject, row.seq, self.clock() + left))

    def accepted(self, event: Event) -> None:
        """An event was numbered, held for its commit (an ``outbox.on_held`` listener):
        watch it if an alarm."""
        if event.priority <= 2 and event.seq is not None:
            due = self.clock() + self.after_s
            self._watch(OpenAlarm(event.id, event.type, event.subject, event.seq, due))

    def acked(self, ids: Iterable[str]) -> None:
        """The center acked these event ids (an ``outbox.on_acked`` listener: a signed
        ack, heard before its mark commits, which may keep failing; an acked alarm must
        neither escalate nor keep the output on meanwhile)."""
        for event_id in ids:
            if self._open.pop(event_id, None) is not None or event_id in self.escalated:
                self._acked.append(event_id)
        if self._acked:
            self._changed.set()

    async def run(self) -> None:
        """Forever: escalate what is due, clear what the center acked."""
        while True:
            await self._clear_acked()
            await self._escalate_due()
            self._changed.clear()
            wait = self._next_in()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _watch(self, alarm: OpenAlarm) -> None:
        if alarm.id in self._open or alarm.id in self.escalated:
            return
        self._open[alarm.id] = alarm
        heapq.heappush(self._heap, (alarm.due, alarm.id))
        self._changed.set()

    def figures(self) -> dict[str, int]:
        """The heartbeat's part: alarms escalated now, and since start."""
        return {"escalated_alarms": len(self.escalated), "escalations": self.escalations}

    def _next_in(self) -> float | None:
        while self._heap and self._heap[0][1] not in self._open:
            heapq.heappop(self._heap)
        return None if not self._heap else max(0.0, self._heap[0][0] - self.clock())

    async def _escalate_due(self) -> None:
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            _, event_id = heapq.heappop(self._heap)
            alarm = self._open.pop(event_id, None)
            if alarm is not None:
                await self._escalate(alarm)

    async def _escalate(self, alarm: OpenAlarm) -> None:
        log.error(
            "alarm.unacknowledged", id=alarm.id, type=alarm.type, subject=alarm.subject,
            after_s=self.after_s,
        )  # fmt: skip
        event = await self.emit(
            self.factory.make(
                "alarm.unacknowledged",
                device="gateway",
                subject=self.subject,
                state="active",
                data=self._data(alarm),
                opens_incident=True,
            )
        )
        first = not self.escalated
        self.escalated[alarm.id] = event.id
        self.escalations += 1
        if first and self.switch is not None:
            await self.switch(True, f"alarm {alarm.id} not acked by the center")

    async def _clear_acked(self) -> None:
        acked, self._acked = self._acked, []
        for event_id in acked:
            incident = self.escalated.pop(event_id, None)
            if incident is None:
                continue
            await self.emit(
                self.factory.make(
                    "alarm.unacknowledged",
                    device="gateway",
                    subject=self.subject,
                    state="cleared",
                    data={"for_event": event_id, "reason": "the center acked it"},
                    incident=incident,
                )
            )
            if not self.escalated and self.switch is not None:
                await self.switch(False, "the center acked every escalated alarm")

    def _data(self, alarm: OpenAlarm) -> dict[str, object]:
        return {
            "for_event": alarm.id,
            "for_type": alarm.type,
            "for_subject": alarm.subject,
            "for_seq": alarm.seq,
            "after_s": self.after_s,
            "reason": f"the center has not acked the alarm within {self.after_s:g} s",
        }
