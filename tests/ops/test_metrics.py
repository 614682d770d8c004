"""The metrics endpoint follows a broker outage: depth rises, the uplink drops, both recover.

Real parts: mosquitto (stopped and started), the simulated Modbus module, the
gateway in-process, the center console; the endpoint scraped over HTTP and parsed
with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.daemon import running
from gateway.runtime.version import gateway_version
from simulators.broker import MosquittoBroker
from tests.fault_support import INTRUSION, PANIC, module, toggle, wait_until
from tests.helpers import lock_held, signed_center
from tests.ops_support import ops_config, scrape, status

pytestmark = pytest.mark.timeout(120)

DEPTH = ("campus_gateway_outbox_depth", ())
UP = ("campus_gateway_uplink_connected", ())
IO_UP = ("campus_gateway_device_up", (("device", "io"), ("family", "modbus_io")))
RECONNECTS = ("campus_gateway_uplink_reconnects_total", ())


Key = tuple[str, tuple[tuple[str, str], ...]]


async def _at(port: int, key: Key, op: str, value: float) -> bool:
    seen = (await scrape(port))[key]
    return seen == value if op == "==" else seen >= value


async def test_metrics_follow_a_broker_outage_and_recovery(tmp_path: Path) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, identifier="center") as center,
    ):
        path, port = ops_config(
            tmp_path,
            broker_port=broker.port,
            module_port=sim.port,
            heartbeat_s=0.5,
            ack_timeout_s=2.0,  # the console may come back after the backlog went out
        )
        async with running(load_config(path)) as gateway:
            assert gateway.ops is not None
            await asyncio.wait_for(gateway.ops.listening.wait(), 10)
            await wait_until(lambda: _at(port, UP, "==", 1), 10, "uplink connected")
            await wait_until(lambda: _at(port, IO_UP, "==", 1), 10, "module online")
            await wait_until(lambda: _at(port, DEPTH, "==", 0), 10, "start-up events delivered")
            first = await scrape(port)
            assert first[("campus_gateway_build_info", (("version", gateway_version()),))] == 1
            assert first[RECONNECTS] == 0

            await broker.stop()
            await wait_until(lambda: _at(port, UP, "==", 0), 10, "uplink seen down")
            await toggle(sim, INTRUSION[:3], 4, gap=0.1)
            sim.set_input(PANIC[0], closed=True)
            await wait_until(lambda: _at(port, DEPTH, ">=", 13), 10, "outbox depth rising")
            down = await scrape(port)
            assert down[("campus_gateway_outbox_oldest_pending_seconds", ())] > 0
            panic = ("campus_gateway_events_total", (("priority", "1"), ("type", "alarm.panic")))
            assert down[panic] == 1
            assert (await status(port))["uplink"]["state"] == "disconnected"

            await broker.start()
            await wait_until(lambda: _at(port, UP, "==", 1), 20, "uplink back")
            await wait_until(lambda: _at(port, DEPTH, "==", 0), 20, "backlog drained")
            back = await scrape(port)
            assert back[RECONNECTS] >= 1
            assert back[("campus_gateway_puback_seconds_count", ())] >= 13
            await wait_until(
                lambda: any(e["type"] == "alarm.panic" for e in center.events), 15, "panic out"
            )
            acks = ("campus_gateway_center_ack_seconds_count", ())
            await wait_until(lambda: _at(port, acks, ">=", 1), 10, "the center's ack timed")
            unacked = ("campus_gateway_outbox_unacked_alarms", ())
            # alarms PUBACKed while the console was away are republished, then acked
            await wait_until(lambda: _at(port, unacked, "==", 0), 20, "every alarm acked")
    started = [e for e in center.events if e["type"] == "gateway.started"]
    assert started and started[0]["data"]["version"] == gateway_version()
    assert center.heartbeats and center.heartbeats[-1]["data"]["version"] == gateway_version()


async def test_a_modules_malformed_replies_are_counted_in_the_metrics_and_the_status(
    tmp_path: Path,
) -> None:
    """A malformed frame is logged once, counted and skipped: the count is in /metrics
    and /status, not only in memory (review of 2026-12-05)."""
    errors = ("campus_gateway_device_protocol_errors_total", IO_UP[1])
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        path, port = ops_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(load_config(path)) as gateway:
            assert gateway.ops is not None
            await asyncio.wait_for(gateway.ops.listening.wait(), 10)
            await wait_until(lambda: _at(port, IO_UP, "==", 1), 10, "module online")
            assert (await scrape(port))[errors] == 0
            sim.short_reply = True  # a 1-byte reply to a 16-bit read
            await wait_until(lambda: _at(port, errors, ">=", 3), 10, "bad replies counted")
            sim.short_reply = False
            [io] = [d for d in (await status(port))["devices"] if d["id"] == "io"]
            assert io["protocol_errors"] >= 3


async def test_metrics_and_status_answer_while_another_process_holds_the_outbox(
    tmp_path: Path,
) -> None:
    """The storage fault's own counters must be scrapable during the fault (a review
    of 2026-12-06: ``/metrics`` answered 503 for the whole of a lock)."""
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        path, port = ops_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        cfg = load_config(path)
        async with running(cfg) as gateway:
            assert gateway.ops is not None and gateway.outbox is not None
            await asyncio.wait_for(gateway.ops.listening.wait(), 10)
            async with lock_held(gateway.outbox.path):
                sim.press(PANIC[0])
                failed = ("campus_gateway_storage_faults_total", (("kind", "commit_failed"),))
                await wait_until(lambda: _at(port, failed, ">=", 1), 20, "a failed commit counted")
                samples = await scrape(port)
                assert samples[("campus_gateway_outbox_readable", ())] == 0
                assert samples[failed] >= 1
                body = await status(port)
                assert body["outbox"]["storage_error"], body["outbox"]
                assert body["uplink"]["state"] == "connected"  # the rest is still shown
            readable = ("campus_gateway_outbox_readable", ())
            await wait_until(lambda: _at(port, readable, "==", 1), 20, "read again")
            assert DEPTH in await scrape(port)
