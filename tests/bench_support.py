"""Talking to the bench page as a browser does, over real HTTP: JSON, cookies, and the
server-sent events stream (read line by line, as ``text/event-stream`` is framed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from gateway.daemon import Gateway

Document = dict[str, Any]


@contextlib.asynccontextmanager
async def bench_session(gateway: Gateway) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """``(base url, session)`` once the gateway's bench page is serving; the session keeps
    cookies (it may log in)."""
    assert gateway.bench is not None, "the bench page is disabled"
    async with asyncio.timeout(10):
        await gateway.bench.serving.wait()
    assert gateway.bench.url is not None
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield gateway.bench.url, session


class StateStream:
    """The page's ``api/stream``: each ``state`` event's document, in order."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.latest: Document | None = None

    async def next(self) -> Document:
        """The next ``state`` document."""
        event, data = "message", []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise ConnectionError("the stream ended")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                if event == "state":
                    self.latest = json.loads("\n".join(data))
                    return self.latest
                event, data = "message", []

    async def until(
        self, predicate: Callable[[Document], bool], within: float, what: str
    ) -> Document:
        """The first document (the latest one included) for which ``predicate`` holds.

        Raises:
            AssertionError: none within ``within`` seconds (with the last document).
        """
        if self.latest is not None and predicate(self.latest):
            return self.latest
        try:
            async with asyncio.timeout(within):
                while not predicate(document := await self.next()):
                    pass
        except TimeoutError:
            raise AssertionError(f"not within {within} s: {what}; last: {self.latest}") from None
        return document


@contextlib.asynccontextmanager
async def state_stream(base: str, session: aiohttp.ClientSession) -> AsyncIterator[StateStream]:
    """The open ``api/stream`` of the page at ``base``."""
    async with session.get(base + "api/stream", timeout=aiohttp.ClientTimeout(total=None)) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        yield StateStream(r)


def zone(document: Document, zone_id: str) -> Document:
    """One zone of the page document."""
    return next(z for g in document["zone_groups"] for z in g["zones"] if z["id"] == zone_id)


def device(document: Document, device_id: str) -> Document:
    """One device of the page document."""
    return next(d for d in document["devices"] if d["id"] == device_id)
