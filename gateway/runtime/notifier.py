"""A poke that something may have changed: many listeners, each woken once per burst.

The alarm state is read by local views (the retained dashboard topics, the bench
page). Rather than every rule knowing who watches it, the daemon pokes one
:class:`Notifier` after every stored event, applied observation and handled
command; each view waits on its own :class:`Listener`, then reads the state and
publishes what differs from what it published last. A burst of pokes while a
view is busy wakes it once.
"""

from __future__ import annotations

import asyncio
import weakref


class Listener:
    """One view's wake-up: :meth:`wait` returns once a poke came since the last wait."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._event.set()  # a new listener reads the state once at once

    async def wait(self) -> None:
        """Wait for the next poke (at once when one came since the last call)."""
        await self._event.wait()
        self._event.clear()

    def _poke(self) -> None:
        self._event.set()


class Notifier:
    """Pokes every live :class:`Listener` (a listener nobody holds is forgotten)."""

    def __init__(self) -> None:
        self._listeners: weakref.WeakSet[Listener] = weakref.WeakSet()

    def listen(self) -> Listener:
        """A new listener, woken by every later :meth:`poke` (and once at once)."""
        listener = Listener()
        self._listeners.add(listener)
        return listener

    def poke(self) -> None:
        """Wake every listener."""
        for listener in list(self._listeners):
            listener._poke()
