"""A module's outage over a gateway restart is one incident
(``gateway/runtime/device_health.py``, kind ``device.offline``).

Before it was kept, a module still silent after a restart was reported offline a
second time (a new incident) and the incident opened before was never closed
(review of 2026-12-06). The module is a real Modbus simulator that stops answering;
the gateway runs in-process against a real mosquitto.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.modbus_module import SimulatedModule
from tests.fault_support import alarms, campus_config, module, wait_until, write_config
from tests.helpers import lock_held, signed_center

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def went_offline(
    tmp_path: Path,
) -> AsyncIterator[tuple[MosquittoBroker, SimulatedModule, CenterConsole]]:
    """A gateway ran, its module stopped answering, the center heard it offline, and
    the gateway stopped; the broker, the (still silent) module and the center go on."""
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite"):
            await wait_until(lambda: alarms(center, "device.online"), 30, "module online")
            sim.silent = True
            await wait_until(lambda: alarms(center, "fault.device_offline"), 30, "offline")
        yield broker, sim, center


async def test_an_outage_over_a_restart_is_one_incident_closed_when_the_module_answers(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with went_offline(tmp_path) as (broker, sim, center):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
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


async def test_a_start_under_a_lock_learns_the_outage_once_the_file_reads(
    tmp_path: Path,
) -> None:
    """Another process holds the outbox's lock as the gateway starts: the outage
    kept there is learnt once a commit goes through, and the module's return closes
    it (a second review of 2026-12-06 found kept state never read after such a start)."""
    outbox = tmp_path / "outbox.sqlite"
    async with went_offline(tmp_path) as (broker, sim, center):
        # The second start judges the silent module only after the test is done (it
        # must not find the outage anew before the kept one is read: that is a new one).
        patient = write_config(tmp_path / "patient", broker_port=broker.port, module_port=sim.port)
        patient.write_text(patient.read_text().replace("offline_after = 5", "offline_after = 1000"))
        later = load_config(patient)
        async with lock_held(outbox) as release, running(later, outbox_path=outbox) as gateway:
            assert gateway.outbox is not None and gateway.engine is not None
            assert not gateway.outbox.kept_loaded and gateway.engine.offline_modules == set()
            release.set()
            await wait_until(lambda: gateway.outbox.kept_loaded, 20, "kept state read")
            assert gateway.engine.offline_modules == {"io"}
            sim.silent = False
            await wait_until(lambda: len(alarms(center, "device.online")) >= 2, 30, "back")
    (offline,) = alarms(center, "fault.device_offline")
    assert alarms(center, "device.online")[-1]["data"]["incident"] == offline["id"]
