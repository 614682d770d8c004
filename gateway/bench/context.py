"""What the bench page's routes work with (kept apart from the routes, which need aiohttp:
the daemon builds it at start and loads the routes only when a page is opened)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.alarm.walk_test import WalkTests
from gateway.bench.auth import BenchAuth
from gateway.bench.feed import EventFeed
from gateway.bench.live import LiveDocument


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What the routes work with.

    Attributes:
        live: the page document, kept current.
        auth: the password and sessions.
        walk: the walk test.
        feed: the pictures.
    """

    live: LiveDocument
    auth: BenchAuth
    walk: WalkTests
    feed: EventFeed
