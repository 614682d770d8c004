"""How often a refusal is reported: once per key a period, with the count in between.

A thing the gateway refuses over and over (a forged ack, a panel's bad frames, a
reader that cannot authenticate) must reach the center at once, but a flood of
them must not flood the outbox. :class:`ReportThrottle` admits the first refusal
of a key, then at most one a period, and says how many were held back in between
(``refused_since``); with a ``cap`` it also admits at most that many reports a
period over all keys (``unreported``: held back by the cap since the last
report), for refusals whose keys an outsider chooses (a sender's address).

Used by ``fault.ack_refused`` (key: the reason), ``fault.panel_rejected`` (sender
and reason, capped) and ``fault.reader_rejected`` (reader and reason).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

MAX_KEYS = 10_000
"""Keys remembered; beyond it those whose period is over are forgotten."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A report may be made.

    Attributes:
        refused_since: refusals of this key held back since its last report.
        unreported: refusals of any key held back by the cap since the last report.
    """

    refused_since: int
    unreported: int


@dataclass(slots=True)
class _Seen:
    reported_at: float
    refused_since: int = 0


class ReportThrottle(Generic[K]):
    """Admits a report per key at most once every ``every_s`` seconds.

    Args:
        every_s: the shortest time between two reports of one key (seconds).
        cap: at most this many reports per ``every_s`` over all keys (None: no cap).
        clock: monotonic seconds.

    Attributes:
        capped: True from the first refusal the cap held back until the next report
            (a caller logs the start of it once).
    """

    def __init__(
        self,
        every_s: float,
        *,
        cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = every_s
        self._cap = cap
        self._clock = clock
        self._seen: dict[K, _Seen] = {}
        self._reports: collections.deque[float] = collections.deque()  # this period's
        self._unreported = 0

    @property
    def capped(self) -> bool:
        return self._unreported > 0

    def admit(self, key: K) -> Admitted | None:
        """One refusal of ``key``: an :class:`Admitted` when it may be reported now,
        None when it is only counted."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.reported_at < self._every:
            seen.refused_since += 1
            return None
        if self._cap is not None:
            while self._reports and now - self._reports[0] >= self._every:
                self._reports.popleft()
            if len(self._reports) >= self._cap:
                self._unreported += 1
                return None
            self._reports.append(now)
        if len(self._seen) >= MAX_KEYS:
            self._seen = {k: v for k, v in self._seen.items() if now - v.reported_at < self._every}
        self._seen[key] = _Seen(now)
        admitted = Admitted(seen.refused_since if seen is not None else 0, self._unreported)
        self._unreported = 0
        return admitted
