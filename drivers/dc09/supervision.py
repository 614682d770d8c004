"""Link supervision of each panel (DC-09 §5.5.2): silence beyond its interval is a fault.

Every accepted message restarts a panel's timer (a NULL link test, an automatic
test report, any event). A panel silent for longer than its ``supervision_s`` —
also one never heard since the gateway started — goes ``offline``; its next
accepted message brings it ``online`` again. Transitions, not messages, are handed
on (STYLE.md rule 6), as :class:`~gateway.events.observation.DeviceHealth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger

from gateway.events.observation import DeviceHealth, HealthState, utcnow
from gateway.events.panel_observation import PanelSink


class Supervision:
    """Health of every configured panel.

    Args:
        intervals: panel id → longest silence allowed, in seconds.
        sink: where transitions go (awaited).
        now: the gateway's clock, for the transitions' time.
        clock: monotonic seconds.

    Attributes:
        state: panel id → its health.
        last_heard: panel id → the gateway's UTC time of its last accepted message
            (None: not since start).
    """

    def __init__(
        self,
        intervals: Mapping[str, float],
        sink: PanelSink,
        *,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._intervals = dict(intervals)
        self._sink = sink
        self._now = now
        self._clock = clock
        self._log = logger or structlog.get_logger(__name__)
        start = clock()
        self._last = dict.fromkeys(intervals, start)
        self.state: dict[str, HealthState] = dict.fromkeys(intervals, "starting")
        self.last_heard: dict[str, datetime | None] = dict.fromkeys(intervals)
        self._wake = asyncio.Event()

    async def heard(self, panel_id: str) -> None:
        """An accepted message of ``panel_id``: restart its timer; ``online`` if it was not."""
        self._last[panel_id] = self._clock()
        self.last_heard[panel_id] = self._now()
        self._wake.set()
        if self.state[panel_id] != "online":
            await self._transition(panel_id, "online", "")

    async def run(self) -> None:
        """Watch for silence until cancelled."""
        while True:
            now = self._clock()
            wait = 60.0
            for panel_id, interval in self._intervals.items():
                silent = now - self._last[panel_id]
                if silent > interval:
                    if self.state[panel_id] != "offline":
                        reason = f"silent for {silent:.0f} s (supervision {interval:g} s)"
                        await self._transition(panel_id, "offline", reason)
                else:
                    wait = min(wait, interval - silent + 0.01)
            self._wake.clear()  # a panel heard again is watched again at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, wait))

    async def _transition(self, panel_id: str, state: HealthState, reason: str) -> None:
        previous = self.state[panel_id]
        self.state[panel_id] = state  # before awaiting: one transition, not two
        log = self._log.warning if state == "offline" else self._log.info
        log("dc09.panel_health", panel=panel_id, state=state, previous=previous, reason=reason)
        await self._sink(
            DeviceHealth(
                device_id=panel_id,
                state=state,
                previous=previous,
                reason=reason,
                received_at=self._now(),
            )
        )
