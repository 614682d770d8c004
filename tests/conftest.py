"""Fixtures shared by every test: a real mosquitto on a free port, the real captures.

Kept generic on purpose: helpers live in ``helpers.py``; fixtures for one
package belong in that package's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import MosquittoBroker
from tests.helpers import (
    REALDATA_PATH,
    BrokerFactory,
    assert_valid_event,
    free_port,
    take_consoles,
)

__all__ = ["BrokerFactory", "assert_valid_event", "free_port"]


@pytest.fixture(autouse=True)
def every_event_validates() -> Iterator[None]:
    """Every event a test's center console received validates against the strict schema
    (``gateway/events/event.schema.json``): the console rejects any that does not."""
    take_consoles()
    yield
    rejected = [r for console in take_consoles() for r in console.rejected]
    assert not rejected, f"events the schema refused: {rejected[:3]}"


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
