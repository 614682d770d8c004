"""A frame sent again is acknowledged again, never stored twice.

A panel that misses our ACK sends the message again, with the same sequence number
(Ajax Hub 2 sent seq 0373 three times, each with a new random pad:
``realdata/dc09/ajax_and_other_panels.txt`` lines 2-4). A copy is known by the
account (in any case), the sequence number and the decrypted data, the timestamp left out (a
panel may stamp a resend anew). The sequence number alone is not enough: after a
restart a panel counts from 0001 again.

A copy that arrives while the first is still being committed waits for that
commit and is then acknowledged with it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

Key = tuple[str, str, str, str]
"""(account in upper case, message type, sequence number, payload: the data after its
account, so a resend whose random pad split differently is still the same message)."""


class Retransmissions:
    """What was taken in the last ``window`` seconds (at most ``limit`` messages).

    Args:
        window: seconds a message is remembered after it was first seen.
        limit: most messages remembered; the oldest are forgotten first.
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(
        self,
        window: float,
        *,
        limit: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._limit = limit
        self._clock = clock
        self._seen: OrderedDict[Key, tuple[float, asyncio.Future[None]]] = OrderedDict()

    def claim(self, key: Key) -> asyncio.Future[None] | None:
        """None when ``key`` is new: the caller stores it, then calls :meth:`stored`
        or :meth:`failed`. Else the first copy's outcome, to await (it raises when
        that copy could not be stored)."""
        now = self._clock()
        while self._seen:
            oldest, (seen_at, future) = next(iter(self._seen.items()))
            expired = now - seen_at > self.window and future.done()
            if not expired and len(self._seen) <= self._limit:
                break
            del self._seen[oldest]
        found = self._seen.get(key)
        if found is not None:
            return found[1]
        self._seen[key] = (now, asyncio.get_running_loop().create_future())
        return None

    def stored(self, key: Key) -> None:
        """The message of ``key`` is committed: copies are acknowledged."""
        found = self._seen.get(key)
        if found is not None and not found[1].done():
            found[1].set_result(None)

    def failed(self, key: Key, exc: BaseException) -> None:
        """The message of ``key`` could not be stored: copies waiting get ``exc``,
        and the next copy is taken as new."""
        found = self._seen.pop(key, None)
        if found is not None and not found[1].done():
            found[1].set_exception(exc)
            found[1].exception()  # retrieved: a copy need not be waiting

    def __len__(self) -> int:
        return len(self._seen)
