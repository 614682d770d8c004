"""What a panel reported open survives a gateway restart (``gateway/panels/memory.py``).

A panel reports an alarm once and its restore once; it does not report again what
is still open after the gateway restarts. Before its incidents were kept, a
restore after a restart came with no ``incident`` and the center's open incident
was never closed (review of 2026-12-06).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.events.model import EventFactory
from gateway.events.panel_observation import PanelMessage, PanelReport
from gateway.panels.memory import INCIDENT, open_incidents
from gateway.panels.reports import PanelReports
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.dc09_panel import SimulatedPanel
from tests.helpers import free_port, signed_center
from tests.ops_support import status
from tests.panels_support import ACCOUNT, listening, site_config
from tests.patrol_support import EventLog

pytestmark = pytest.mark.timeout(120)


def _intrusion(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [
        e for e in center.events if e["type"] == "alarm.intrusion" and e["data"]["state"] == state
    ]


async def test_a_restore_after_a_restart_closes_the_incident_opened_before_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp = free_port()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp)
    outbox = tmp_path / "outbox.sqlite"
    async with signed_center(mosquitto.host, mosquitto.port) as center:
        async with (
            listening(cfg, outbox),
            SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=15) as sim,
        ):
            assert (await sim.cid("1130", partition=1, zone=3)).acked
            await center.wait_for(lambda: bool(_intrusion(center, "active")), 10)
        # The gateway restarts; the zone is still in alarm at the panel.
        async with (
            listening(cfg, outbox) as gateway,
            SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=15) as sim,
        ):
            assert gateway.ops is not None
            await asyncio.wait_for(gateway.ops.listening.wait(), 10)
            assert gateway.ops.address is not None
            shown = await status(gateway.ops.address[1])
            assert [(a["zone"], a["type"]) for a in shown["alarms"]] == [("E03", "alarm.intrusion")]
            assert (await sim.cid("3130", partition=1, zone=3)).acked
            await center.wait_for(lambda: bool(_intrusion(center, "cleared")), 10)
            after = await status(gateway.ops.address[1])
        # And a third start has nothing open any more.
        async with listening(cfg, outbox) as gateway:
            assert gateway.panels is not None and gateway.panels.reports.open == {}
    (active,) = _intrusion(center, "active")
    (cleared,) = _intrusion(center, "cleared")
    assert cleared["data"]["incident"] == active["data"]["incident"] == active["id"]
    assert after["alarms"] == []


def _message(code: str, qualifier: str) -> PanelMessage:
    report = PanelReport(protocol="ADM-CID", code=code, qualifier=qualifier, number=3, partition=1)
    return PanelMessage(
        panel_id="east", account=ACCOUNT, protocol="ADM-CID", seq="0001", encrypted=False,
        reports=(report,), unparsed=None, xdata=(), devicetime=None, data="", peer="tcp x:1",
    )  # fmt: skip


async def test_the_open_incident_is_kept_with_its_event_and_forgotten_with_its_restore() -> None:
    cfg = site_config(tcp_port=15030)
    factory = EventFactory(cfg.source_prefix, lambda: True)
    log = EventLog()
    areas = {a.id: a for a in cfg.areas}
    first = PanelReports(cfg.panels, areas, factory, log)
    (opened,) = await first.message(_message("130", "new"))
    assert [e.id for e in log.recall(INCIDENT).values()] == [opened.id]
    again = PanelReports(cfg.panels, areas, factory, log, open_incidents(log.recall(INCIDENT)))
    (update,) = await again.message(_message("130", "new"))  # still open: an update
    (restore,) = await again.message(_message("130", "restore"))
    assert update.data["incident"] == restore.data["incident"] == opened.id
    assert log.recall(INCIDENT) == {}
