"""A set/clear flag whose waits cost no task: :class:`Flag` and :func:`first_of`.

``asyncio.Event`` is waited on one at a time; waiting for the first of several
(new rows in the outbox, a window slot given back, a failure, a timeout) takes a
task per event plus ``asyncio.wait``'s callbacks, and on an idle send loop that
was four wake-ups of the event loop per contact change (issue 14, counted by
instrumenting ``Handle._run``). :func:`first_of` waits on one future that every
flag it names resolves, so a wake is one callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


class Flag:
    """Like ``asyncio.Event``: :meth:`set` wakes every waiter, :meth:`clear` re-arms it.

    Waiters are futures; a flag belongs to the event loop that waits on it.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter (a no-op while it is set)."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Return once the flag is set (at once when it is)."""
        await first_of((self,))

    def _add(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.append(waiter)

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)


async def first_of(
    flags: Sequence[Flag],
    failure: asyncio.Future[Any] | None = None,
    within: float | None = None,
) -> None:
    """Return once any of ``flags`` is set, ``failure`` is done, or ``within`` seconds
    (None: no limit) have passed, whichever is first; at once when one already holds.

    The flags are left as they are (the caller clears what it consumes); ``failure``'s
    result is not raised here. Cancellation propagates, leaving nothing registered.
    """
    if any(flag.is_set() for flag in flags) or (failure is not None and failure.done()):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    for flag in flags:
        flag._add(waiter)
    if failure is not None:
        failure.add_done_callback(wake)
    timer = None if within is None else loop.call_later(within, wake)
    try:
        await waiter
    finally:
        for flag in flags:
            flag._discard(waiter)
        if failure is not None:
            failure.remove_done_callback(wake)
        if timer is not None:
            timer.cancel()
