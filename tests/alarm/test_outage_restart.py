"""A module's outage over a gateway restart is one incident
(``gateway/runtime/device_health.py``, kind ``device.offline``).

Before it was kept, a module still silent after a restart was reported offline a
second time (a new incident) and the incident opened before was never closed
(review of 2026-12-06). The module is a real Modbus simulator that stops answering;
the gateway runs in-process against a real mosquitto.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.daemon import running
from simulators.broker import MosquittoBroker
from tests.fault_support import alarms, campus_config, module, wait_until
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(120)


async def test_an_outage_over_a_restart_is_one_incident_closed_when_the_module_answers(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=outbox):
            await wait_until(lambda: alarms(center, "device.online"), 30, "module online")
            sim.silent = True
            await wait_until(lambda: alarms(center, "fault.device_offline"), 30, "offline")
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.modules is not None and gateway.engine is not None
            assert gateway.engine.offline_modules == {"io"}  # known from the start
            # The poller finds it silent again: the same outage, nothing new to say.
            await wait_until(lambda: gateway.modules.health()["io"] == "offline", 30, "silent")
            sim.silent = False
            await wait_until(lambda: len(alarms(center, "device.online")) >= 2, 30, "back")
            assert gateway.engine.offline_modules == frozenset()
        # A third start knows of no outage.
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.engine is not None and gateway.engine.offline_modules == frozenset()
    (offline,) = alarms(center, "fault.device_offline")
    back = alarms(center, "device.online")[-1]
    assert back["data"]["incident"] == offline["data"]["incident"] == offline["id"]
