"""The systemd watchdog: ``WATCHDOG=1`` only while the daemon really works.

systemd (``WatchdogSec=`` in the unit) passes ``WATCHDOG_USEC`` and restarts the
service when no ``WATCHDOG=1`` arrives within it (systemd.service(5),
sd_watchdog_enabled(3)). We ping at half that period, and only when

* the event loop turns: the ping comes from a task of the loop, so a loop blocked
  by a synchronous call sends nothing; a wake-up later than half the period is
  reported (``watchdog.loop_lag``) and not answered with a ping;
* no critical task is stalled (:class:`~gateway.runtime.progress.Progress`).

A stall is logged once when it begins (``watchdog.stalled``, error) and once when
it ends, and the reason goes to ``STATUS=`` so ``systemctl status`` shows it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import structlog

from gateway.runtime.progress import Progress
from gateway.runtime.systemd import notify

log = structlog.get_logger(__name__)


def watchdog_period(environ: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog period in seconds systemd asks of this process, or None.

    None when ``WATCHDOG_USEC`` is unset or not a positive integer, or when
    ``WATCHDOG_PID`` names another process (sd_watchdog_enabled(3)).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    if not usec.isdigit() or int(usec) <= 0:
        return None
    return int(usec) / 1_000_000


class Watchdog:
    """Pings systemd while the daemon makes progress. ``await watchdog.run()``.

    Args:
        progress: the registry of critical tasks.
        period: systemd's watchdog period (seconds); pings go out every half of it.
        send: sends one sd_notify message (tests pass their own).

    Attributes:
        pings: ``WATCHDOG=1`` sent.
        withheld: pings withheld because a task stalled or the loop lagged.
    """

    def __init__(
        self, progress: Progress, period: float, send: Callable[[str], bool] = notify
    ) -> None:
        self.progress = progress
        self.interval = period / 2
        self._send = send
        self.pings = 0
        self.withheld = 0
        self._stalled: list[str] = []

    async def run(self) -> None:
        """Forever: check, then ping or withhold, every half period."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - start - self.interval
            self.beat(lag)

    def beat(self, lag: float = 0.0) -> bool:
        """One check; True when ``WATCHDOG=1`` was sent."""
        stalled = self.progress.stalled()
        if stalled != self._stalled:
            if stalled:
                log.error("watchdog.stalled", tasks=stalled, limit_s=self.progress.limit)
                self._send(f"STATUS=stalled: {', '.join(stalled)}")
            else:
                log.warning("watchdog.recovered", tasks=self._stalled)
                self._send("STATUS=running")
            self._stalled = stalled
        if lag > self.interval:
            log.error("watchdog.loop_lag", lag_s=round(lag, 3), interval_s=self.interval)
        if stalled or lag > self.interval:
            self.withheld += 1
            return False
        self.pings += 1
        return self._send("WATCHDOG=1")
