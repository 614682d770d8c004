"""Fixtures shared by every test: a real mosquitto on a free port, the real captures.

Kept generic on purpose: helpers live in ``helpers.py``; fixtures for one
package belong in that package's tests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from simulators.broker import MosquittoBroker
from tests.helpers import (
    REALDATA_PATH,
    BrokerFactory,
    assert_valid_event,
    free_port,
    take_consoles,
)

__all__ = ["BrokerFactory", "assert_valid_event", "free_port"]

# Property tests search the same examples at every run, so a CI run that fails fails
# again when re-run (a random seed once failed one run in eight on a defect months
# old). ``HYPOTHESIS_PROFILE=fuzz`` searches from a fresh random seed at every run.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("fuzz", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def every_event_validates() -> Iterator[None]:
    """Every event a test's center console received validates against the strict schema
    (``gateway/events/event.schema.json``): the console rejects any that does not."""
    take_consoles()
    yield
    rejected = [r for console in take_consoles() for r in console.rejected]
    assert not rejected, f"events the schema refused: {rejected[:3]}"


@pytest.fixture(autouse=True)
def no_sqlite_connection_left_open() -> Iterator[None]:
    """A test leaves no aiosqlite connection open. Each has a worker thread that is not
    a daemon: one left running holds the process open at exit, and a CI run that
    printed its result never ends (seen: a second cancellation cut an outbox's close
    short). Fails the test that leaked, naming it, instead."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0  # a connection's close ends its thread soon after

    def left() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and "_connection_worker_thread" in t.name
        ]

    while left() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left(), f"aiosqlite connections left open: {[t.name for t in left()]}"


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    """A started private mosquitto on 127.0.0.1 and a free port; stopped afterwards."""
    async with MosquittoBroker(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
async def mosquitto_factory(tmp_path: Path) -> AsyncIterator[BrokerFactory]:
    """Starts brokers with options (``await mosquitto_factory(persistence=True)``).

    Each gets its own directory under ``tmp_path``; all are stopped afterwards.
    Keyword arguments go to :class:`MosquittoBroker`.
    """
    brokers: list[MosquittoBroker] = []

    async def make(**options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in brokers:
        await broker.stop()
        broker.close()


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata``: the real device captures, or a skip where they are absent."""
    if not REALDATA_PATH.is_dir():
        pytest.skip("../shared/realdata not present: real captures are only on the team's machines")
    return REALDATA_PATH
