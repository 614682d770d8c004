"""A broker that takes the TCP connection but never answers CONNACK, for 30 s.

Real mosquitto behind :class:`simulators.mqtt_faults.StallingProxy`: while it
stalls, every connection is accepted and ignored. When it behaves again, the
gateway must be through within one backoff period (connect timeout + the
longest backoff), and what happened meanwhile must arrive.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.mqtt_faults import StallingProxy
from tests.fault_support import PANIC, alarms, campus_config, module, wait_until
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(120)

STALL_S = 30.0
CONNECT_TIMEOUT_S = 5.0
BACKOFF_MAX_S = 4.0


async def test_no_connack_for_30_s_then_recovery_within_one_backoff_period(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        StallingProxy(broker.host, broker.port, stalled=True) as proxy,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(
            tmp_path,
            broker_port=proxy.port,
            module_port=sim.port,
            publish_timeout=CONNECT_TIMEOUT_S,
            reconnect_max=BACKOFF_MAX_S,
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None
            poller = gateway.pollers["io"]
            await wait_until(lambda: None not in poller.inputs, 10, "module read")
            sim.press(PANIC[0])  # an alarm while the broker is mute
            await asyncio.sleep(STALL_S - 1.0)
            assert gateway.uplink.stats.connects == 0
            assert proxy.accepted >= 3  # it kept trying, never gave up
            proxy.stalled = False
            behaved_at = time.monotonic()
            await wait_until(lambda: gateway.uplink.stats.connects >= 1, 15, "connected")
            recovered_in = time.monotonic() - behaved_at
            assert recovered_in <= CONNECT_TIMEOUT_S + BACKOFF_MAX_S + 1.0
            await wait_until(lambda: alarms(center, "alarm.panic"), 5, "the panic arrives")
