"""How long the uplink waits before its next connect attempt.

Two regimes (issue 11: a broker that flapped 2 s up, 2 s down saw the back-off
grow toward 30 s and miss its short up-windows):

* **The broker was up a moment ago** (a connection ended less than
  ``reconnect_max`` seconds ago): retry every ``reconnect_min`` seconds, with
  jitter in ``[reconnect_min / 2, reconnect_min]`` so a fleet of gateways does not
  reconnect in lock step. A flapping broker's up-window of ``reconnect_min``
  seconds or more is used, and a broker restart costs at most ``reconnect_min``.
* **Otherwise** (never connected since start, or down for longer than
  ``reconnect_max``): capped exponential back-off with full jitter, ``uniform(0,
  min(reconnect_max, reconnect_min * 2**attempt))`` (tenacity's
  ``wait_random_exponential``), so a long outage costs one attempt per
  ``reconnect_max`` at most.

Durations are on the monotonic clock: a step of the wall clock changes no wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tenacity import RetryCallState, wait_random_exponential


class ReconnectWait:
    """A tenacity ``wait=`` callable; :meth:`connection_lost` starts the short regime.

    Args:
        reconnect_min: seconds, the shortest wait (``[broker] reconnect_min``).
        reconnect_max: seconds, the longest wait and the length of the short regime
            (``[broker] reconnect_max``).
        monotonic: the clock (seconds); :func:`time.monotonic` unless a test gives one.
    """

    def __init__(
        self,
        reconnect_min: float,
        reconnect_max: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min = reconnect_min
        self._max = reconnect_max
        self._monotonic = monotonic
        self._lost_at: float | None = None
        self._exponential = wait_random_exponential(multiplier=reconnect_min, max=reconnect_max)

    def connection_lost(self) -> None:
        """A connection that had been up ended now."""
        self._lost_at = self._monotonic()

    def recently_up(self) -> bool:
        """True while the last connection ended less than ``reconnect_max`` seconds ago."""
        return self._lost_at is not None and self._monotonic() - self._lost_at < self._max

    def __call__(self, retry_state: RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        if self.recently_up():
            return random.uniform(self._min / 2, self._min)
        return float(self._exponential(retry_state))
