"""The retained ``state/<device>`` topic: published when a module's inputs or health change,
never for a reading that changed neither (issue 14: it cost one MQTT message per reading).

Real parts: the demo campus's simulated modules, the daemon in-process, mosquitto, a
subscriber counting what arrives on ``…/state/#``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.daemon import Gateway, running
from simulators.broker import MosquittoBroker
from simulators.modbus_module import SimulatedModule
from tests.campus_helpers import demo_config_on, simulated_campus
from tests.fault_support import wait_until

pytestmark = pytest.mark.timeout(90)

PREFIX = "campus/v1/demo-school/gw1/state/"


class StateWatcher:
    """Counts the state messages per device and keeps the last payload of each."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.last: dict[str, dict[str, Any]] = {}

    async def run(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            device = message.topic.value.removeprefix(PREFIX)
            assert isinstance(message.payload, bytes)
            self.count[device] += 1
            self.last[device] = json.loads(message.payload)


@contextlib.asynccontextmanager
async def watching(broker: MosquittoBroker) -> AsyncIterator[StateWatcher]:
    watcher = StateWatcher()
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(PREFIX + "#", qos=1)
        task = asyncio.create_task(watcher.run(client))
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _polls(gateway: Gateway, more: int) -> None:
    """Wait until every module has been polled ``more`` more times."""
    start = {m: p.polls for m, p in gateway.pollers.items()}
    await wait_until(
        lambda: all(p.polls >= start[m] + more for m, p in gateway.pollers.items()),
        20,
        f"{more} more polls of every module",
    )


async def _flip(sim: SimulatedModule, watcher: StateWatcher, device: str, channel: int) -> None:
    """Flip one input and wait for the state message that shows it."""
    closed = not sim.inputs[channel]
    sim.set_input(channel, closed=closed)
    await wait_until(
        lambda: watcher.last.get(device, {}).get("inputs", [None] * 16)[channel] is closed,
        5,
        f"state/{device} shows input {channel} {'closed' if closed else 'open'}",
    )


async def test_state_is_published_only_when_an_input_or_the_health_changes(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        watching(mosquitto) as watcher,
        running(demo_config_on(mosquitto.port, modules), outbox_path=tmp_path / "o.sqlite") as gw,
    ):
        await wait_until(
            lambda: all(watcher.last.get(m, {}).get("health") == "online" for m in modules),
            15,
            "every module online in its state",
        )
        await _polls(gw, 5)
        at_rest = Counter(watcher.count)
        admin, finance = modules["admin-io"], modules["finance-ai"]

        # Readings that change nothing in the state: the EOL loop's analog value moving
        # inside its normal band (each one a reading the rules see), then idle polls.
        for value in (9000, 12000, 15000, 18000):
            finance.set_analog(0, value)
            await wait_until(
                lambda v=value: gw.pollers["finance-ai"].analog.get(0) == v, 5, f"AI-0 read {value}"
            )
        await _polls(gw, 20)
        # Two input changes on another module: once their messages are in, anything the
        # readings above had made would have been published before them.
        await _flip(admin, watcher, "admin-io", 3)
        await _flip(admin, watcher, "admin-io", 3)
        assert watcher.count - at_rest == Counter({"admin-io": 2})
        assert watcher.last["admin-io"]["inputs"][3] is admin.inputs[3]
