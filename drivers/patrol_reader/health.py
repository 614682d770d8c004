"""Health of one patrol reader as a state machine: one observation per transition.

``starting`` → ``online`` on the first success; ``offline`` after ``offline_after``
consecutive failures; ``online`` again on the next success (STYLE.md rule 6).
While offline, retries back off exponentially with jitter up to a cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger

from gateway.events.observation import DeviceHealth, HealthState, utcnow
from gateway.events.patrol_observation import PatrolSink

_MAX_DOUBLINGS = 30


class ReaderHealth:
    """Tracks successes and failures of one reader and reports transitions to ``sink``.

    Args:
        device_id: the reader id.
        sink: where :class:`DeviceHealth` transitions go.
        offline_after: consecutive failures before ``offline``.
        period_s: the normal retry period (seconds); the first backoff step.
        backoff_cap_s: longest wait between retries while offline (seconds).
        logger: bound with ``device_id``.
        now: the gateway's clock, for the transitions' time.

    Attributes:
        state: current health state.
        failures: failures since construction.
        consecutive: failures since the last success.
        last_seen: gateway UTC time of the last success, or None.
    """

    def __init__(
        self,
        device_id: str,
        sink: PatrolSink,
        *,
        offline_after: int,
        period_s: float,
        backoff_cap_s: float = 30.0,
        logger: FilteringBoundLogger | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._now = now
        self.device_id = device_id
        self._sink = sink
        self._offline_after = offline_after
        self._period = period_s
        self._cap = max(backoff_cap_s, period_s)
        self._log = (logger or structlog.get_logger(__name__)).bind(device_id=device_id)
        self._rng = random.Random()
        self._doublings = 0
        self.state: HealthState = "starting"
        self.failures = 0
        self.consecutive = 0
        self.last_seen: datetime | None = None

    async def succeeded(self) -> bool:
        """Record a success. Returns True when it ended an outage (offline → online)."""
        recovered = self.state == "offline"
        self.last_seen = self._now()
        self.consecutive = 0
        self._doublings = 0
        if self.state != "online":
            await self._transition("online", "")
        return recovered

    async def failed(self, reason: str) -> None:
        """Record a failure (``reason``: the error, for the event and the log)."""
        self.failures += 1
        self.consecutive += 1
        if self.state != "offline" and self.consecutive >= self._offline_after:
            await self._transition("offline", reason)

    def next_delay(self) -> float:
        """Seconds until the next attempt: the period, or a jittered backoff while offline."""
        if self.state != "offline":
            return self._period
        base = min(self._cap, self._period * 2 ** min(self._doublings, _MAX_DOUBLINGS))
        self._doublings += 1
        return self._rng.uniform(base / 2, base)

    async def _transition(self, state: HealthState, reason: str) -> None:
        previous = self.state
        await self._sink(
            DeviceHealth(
                device_id=self.device_id,
                state=state,
                previous=previous,
                reason=reason,
                failures=self.consecutive,
                received_at=self._now(),
            )
        )
        self.state = state
        log = self._log.warning if state == "offline" else self._log.info
        log("patrol.reader_health", state=state, previous=previous, reason=reason)
