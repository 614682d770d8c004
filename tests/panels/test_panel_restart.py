"""What a panel reported open survives a gateway restart (``gateway/panels/memory.py``).

A panel reports an alarm once and its restore once; it does not report again what
is still open after the gateway restarts. Before its incidents were kept, a
restore after a restart came with no ``incident`` and the center's open incident
was never closed (review of 2026-12-06).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.config.root import GatewayConfig
from gateway.events.model import EventFactory
from gateway.events.panel_observation import PanelMessage, PanelReport
from gateway.panels.memory import INCIDENT, open_incidents
from gateway.panels.reports import PanelReports
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.dc09_panel import SimulatedPanel
from tests.fault_support import wait_until
from tests.helpers import free_port, lock_held, signed_center
from tests.ops_support import status
from tests.panels_support import ACCOUNT, listening, site_config
from tests.patrol_support import EventLog

pytestmark = pytest.mark.timeout(120)


def _intrusion(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [
        e for e in center.events if e["type"] == "alarm.intrusion" and e["data"]["state"] == state
    ]


async def _zone_3_in_alarm(
    cfg: GatewayConfig, outbox: Path, tcp: int, center: CenterConsole
) -> None:
    """A gateway runs, the panel reports zone 3 in alarm, the center has it; the gateway stops."""
    async with (
        listening(cfg, outbox),
        SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=15) as sim,
    ):
        assert (await sim.cid("1130", partition=1, zone=3)).acked
        await center.wait_for(lambda: bool(_intrusion(center, "active")), 10)


async def test_a_restore_after_a_restart_closes_the_incident_opened_before_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp = free_port()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp)
    outbox = tmp_path / "outbox.sqlite"
    async with signed_center(mosquitto.host, mosquitto.port) as center:
        await _zone_3_in_alarm(cfg, outbox, tcp, center)
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


async def test_a_start_under_a_lock_learns_the_open_incidents_once_the_file_reads(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Another process holds the outbox's lock as the gateway starts: it cannot read
    what was kept. Once a commit goes through it reads it, and the restore still
    closes the incident opened before (a fresh review of 2026-12-06: it closed
    nothing, and the stale entry turned the next alarm into an update)."""
    tcp = free_port()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp)
    outbox = tmp_path / "outbox.sqlite"
    async with signed_center(mosquitto.host, mosquitto.port) as center:
        await _zone_3_in_alarm(cfg, outbox, tcp, center)
        async with lock_held(outbox) as release, listening(cfg, outbox) as gateway:
            assert gateway.outbox is not None and gateway.panels is not None
            assert not gateway.outbox.kept_loaded and gateway.panels.reports.open == {}
            release.set()
            await wait_until(lambda: gateway.outbox.kept_loaded, 20, "kept state read")
            assert [k[2] for k in gateway.panels.reports.open] == ["E03"]
            async with SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=15) as sim:
                assert (await sim.cid("3130", partition=1, zone=3)).acked
                await center.wait_for(lambda: bool(_intrusion(center, "cleared")), 10)
    (active,) = _intrusion(center, "active")
    (cleared,) = _intrusion(center, "cleared")
    assert cleared["data"]["incident"] == active["id"]


def _message(code: str, qualifier: str) -> PanelMessage:
    report = PanelReport(protocol="ADM-CID", code=code, qualifier=qualifier, number=3, partition=1)
    return PanelMessage(
        panel_id="east", account=ACCOUNT, protocol="ADM-CID", seq="0001", encrypted=False,
        reports=(report,), unparsed=None, xdata=(), devicetime=None, data="", peer="tcp x:1",
    )  # fmt: skip


def _reports(log: EventLog) -> Callable[..., PanelReports]:
    """Makes the reports of the test site's panel ``east`` (given kept incidents)."""
    cfg = site_config(tcp_port=15030)
    factory = EventFactory(cfg.source_prefix, lambda: True)
    areas = {a.id: a for a in cfg.areas}
    return functools.partial(PanelReports, cfg.panels, areas, factory, log)


async def test_the_open_incident_is_kept_with_its_event_and_forgotten_with_its_restore() -> None:
    log = EventLog()
    reports = _reports(log)
    first = reports()
    (opened,) = await first.message(_message("130", "new"))
    assert [e.id for e in log.recall(INCIDENT).values()] == [opened.id]
    again = reports(open_incidents(log.recall(INCIDENT)))
    (update,) = await again.message(_message("130", "new"))  # still open: an update
    (restore,) = await again.message(_message("130", "restore"))
    assert update.data["incident"] == restore.data["incident"] == opened.id
    assert log.recall(INCIDENT) == {}


async def test_kept_incidents_follow_the_config_and_unknown_codes_are_never_kept() -> None:
    """A second review of 2026-12-06: an incident of a renamed zone, of a removed
    panel, or of a code nobody knows stayed "in alarm" for ever."""
    log = EventLog()
    reports = _reports(log)
    first = reports()
    (opened,) = await first.message(_message("130", "new"))
    report = PanelReport(protocol="SIA-DCS", code="QZ", number=3)  # no table knows QZ
    (unknown,) = await first.message(replace(_message("130", "new"), reports=(report,)))
    assert unknown.type == "alarm.panel_unknown" and unknown.data["state"] == "instant"
    assert list(first.open) == [("east", "alarm.intrusion", "E03")]
    # Kept as the zone's old id, and one of a panel the config no longer has.
    kept = log.recall(INCIDENT)
    ((_, event),) = kept.items()
    stale = {
        ("east", "alarm.intrusion", "OLD-E03"): event,
        ("gone", "alarm.fire", "G01"): event,
    }
    again = reports(stale)
    assert list(again.open) == [("east", "alarm.intrusion", "E03")]
    log.kept[INCIDENT.name] = {'["east", "alarm.intrusion", "OLD-E03"]': event.to_dict()}
    (restore,) = await again.message(_message("130", "restore"))
    assert restore.data["incident"] == opened.id
    assert log.recall(INCIDENT) == {}  # forgotten under the key it was kept by
