"""A crash between an event's commit and its PUBACK mark re-sends it with the same id.

The "sent" mark is the one write the outbox may lose (issue 14 commits marks lazily,
without an fsync of their own): losing it must cost a duplicate, never the event.
Real parts: the daemon as its own process, SIGKILLed; mosquitto behind a proxy
that loses the PUBACKs of one event type, so the daemon has committed and
published the event but never seen its PUBACK; a subscriber that keeps every copy.
A panic (priority 1, acked by the center) and ``device.online`` (priority 4, no
ack: only the missing mark brings it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from simulators.broker import MosquittoBroker
from simulators.mqtt_inflight import InflightProxy
from tests.fault_support import PANIC, daemon_process, module, row_states, wait_until, write_config

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def copies(broker: MosquittoBroker, topic: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every event delivered on ``…/events/<topic>/#``, re-deliveries included."""
    seen: list[dict[str, Any]] = []
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"campus/v1/fault-school/gw1/events/{topic}/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append(json.loads(message.payload))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize("kind", ["alarm.panic", "device.online"])
async def test_an_event_committed_but_never_marked_sent_is_sent_again_after_a_crash(
    tmp_path: Path, kind: str
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    family = kind.split(".")[0]
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        InflightProxy(broker.host, broker.port, drop_pubacks=f"/events/{family}/") as proxy,
        module() as sim,
        copies(broker, family) as seen,
    ):
        # A long publish timeout: nothing is re-sent before the crash.
        config = write_config(
            tmp_path, broker_port=proxy.port, module_port=sim.port, publish_timeout=60.0
        )
        async with daemon_process(config, tmp_path / "first.log") as daemon:
            await wait_until(lambda: sim.requests > 5, 20, "the module polled")
            if kind == "alarm.panic":
                sim.press(PANIC[0])
            await wait_until(lambda: len(seen) == 1, 10, f"{kind} reached the subscriber")
            await wait_until(lambda: proxy.dropped >= 1, 5, "its PUBACK lost")
            [(stored_kind, stored_id, sent, _)] = row_states(outbox, kind)
            assert (stored_kind, stored_id, sent) == (kind, seen[0]["id"], False)
            daemon.kill()  # SIGKILL: committed, published, never marked sent
            await daemon.wait()
        first = seen[0]
        proxy.drop_pubacks = None
        async with daemon_process(config, tmp_path / "second.log"):
            await wait_until(
                lambda: any(e["id"] == first["id"] for e in seen[1:]), 20, "sent again"
            )
            await wait_until(
                lambda: dict((i, s) for _, i, s, _ in row_states(outbox, kind))[first["id"]],
                10,
                "marked sent at its PUBACK",
            )
    again = [e for e in seen[1:] if e["id"] == first["id"]]
    assert all(e == first for e in again)  # the same event: id, seq, stream, data
