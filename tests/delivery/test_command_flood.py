"""A flood of commands from any client of the broker never holds a panic back, and
costs a bounded number of commands in hand (review of 2026-12-05: 6,000 unsigned
``disarm`` commands published in 0.17 s held a panic 47 s, every result waiting for
a window slot ahead of it).

Real parts: Debian's mosquitto, the pymodbus simulator, the gateway in-process, an
acking center, and a flooder that is just another MQTT client on the broker.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from gateway.config.root import load_config
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.mqtt_inflight import InflightProxy
from tests.fault_support import PANIC, alarms, module, wait_until, write_config
from tests.helpers import signed_center
from tests.ops_support import scrape

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/fault-school/gw1"
WITHIN_S = 2.0  # a panic reaches the center within 2 s whatever else is wrong


async def test_a_command_flood_holds_no_panic_back_and_is_dropped_beyond_a_bound(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        # Slow PUBACKs and a small window: the results of the flood queue for slots
        # all the while it lasts, as they did on the reviewer's loaded box.
        InflightProxy(broker.host, broker.port, puback_delay=0.05) as proxy,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
        aiomqtt.Client(broker.host, broker.port, identifier="flooder") as flooder,
    ):
        path = write_config(tmp_path, broker_port=proxy.port, module_port=sim.port, window=4)
        async with running(load_config(path), outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None
            stats = gateway.uplink.stats
            await wait_until(stats.connected.is_set, 15, "gateway connected")
            results = [0]
            sent = [0]
            subscribed = asyncio.Event()

            async def count_results() -> None:
                async with aiomqtt.Client(broker.host, broker.port) as watcher:
                    await watcher.subscribe(f"{PREFIX}/cmd/disarm/result", qos=1)
                    subscribed.set()
                    async for _ in watcher.messages:
                        results[0] += 1

            stop = asyncio.Event()

            async def flood() -> None:
                while not stop.is_set():  # 200 unsigned commands a second (answered at 80)
                    for _ in range(10):
                        junk = json.dumps({"correlation_id": f"x{sent[0]}"})
                        await flooder.publish(f"{PREFIX}/cmd/disarm", junk, qos=0)
                        sent[0] += 1
                    await asyncio.sleep(0.05)

            watching = asyncio.create_task(count_results())
            await asyncio.wait_for(subscribed.wait(), 10)
            flooding = asyncio.create_task(flood())
            try:
                # The panic comes while the flood's results wait for their slots.
                await wait_until(lambda: stats.commands_dropped > 0, 30, "the flood overflows")
                pressed = asyncio.get_running_loop().time()
                sim.press(PANIC[0])
                await wait_until(lambda: alarms(center, "alarm.panic"), 60, "panic delivered")
                took = asyncio.get_running_loop().time() - pressed
                assert took <= WITHIN_S, f"the panic took {took:.1f} s behind the flood"
                stop.set()
                await flooding
                # Every command was answered or counted as dropped: none vanished.
                await wait_until(
                    lambda: results[0] + stats.commands_dropped == sent[0], 60, "all accounted"
                )
            finally:
                flooding.cancel()
                watching.cancel()
            assert gateway.ops is not None and gateway.ops.address is not None
            metrics = await scrape(gateway.ops.address[1])
            assert metrics[("campus_gateway_uplink_commands_dropped_total", ())] == (
                stats.commands_dropped
            )
