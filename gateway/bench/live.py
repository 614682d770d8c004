"""The page's document kept current for every open page: one builder, many readers.

:class:`LiveDocument` rebuilds the document when the daemon pokes (an event, a
reading, a command) and at least every ``period`` seconds (the uplink's state,
the backlog and device health change without a poke), and gives it a new
version only when it differs. Each server-sent-events client waits for a
version newer than the one it sent last, so a burst of changes costs one build
and one message per client, and a quiet gateway costs nothing but the rebuild.

Only while a page is open (:meth:`LiveDocument.watching`): a build formats every
shown event, and building on every poke with nobody watching was a fifth of the
daemon's CPU per contact change (issue 14, py-spy on ``bench/contact_latency.py``).
A one-off read (``GET /api/state``) builds on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import structlog

from gateway.runtime.notifier import Listener

log = structlog.get_logger(__name__)

Build = Callable[[], Awaitable[dict[str, Any]]]


class LiveDocument:
    """The latest document and its version. ``await live.run()`` as a task.

    Args:
        build: makes the document (:meth:`BenchModel.snapshot`).
        listener: woken when something may have changed.
        period: the longest time between two builds (seconds).
    """

    def __init__(self, build: Build, listener: Listener, period: float = 1.0) -> None:
        self._build = build
        self._listener = listener
        self._period = period
        self._changed = asyncio.Condition()
        self.version = 0
        self.document: dict[str, Any] | None = None
        self.builds = 0
        self._watchers = 0
        self._watched = asyncio.Event()

    async def run(self) -> None:
        """While a page is open, rebuild on every poke and every ``period`` seconds;
        until cancelled."""
        while True:
            await self._watched.wait()
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener.wait(), self._period)

    async def refresh(self) -> None:
        """Build the document now; publish it when it changed."""
        document = await self._build()
        self.builds += 1
        if document != self.document:
            async with self._changed:
                self.document = document
                self.version += 1
                self._changed.notify_all()

    async def newer_than(self, version: int, wait_s: float) -> tuple[int, dict[str, Any]] | None:
        """The document once its version passes ``version``; None after ``wait_s`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > version), wait_s
                )
            except TimeoutError:
                return None
            assert self.document is not None
            return self.version, self.document

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Keep the document current while the block runs (an open page's stream)."""
        self._watchers += 1
        self._watched.set()
        try:
            yield
        finally:
            self._watchers -= 1
            if not self._watchers:
                self._watched.clear()
