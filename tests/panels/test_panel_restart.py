"""What a panel reported open survives a gateway restart (``gateway/panels/memory.py``).

A panel reports an alarm once and its restore once; it does not report again what
is still open after the gateway restarts. Before its incidents were kept, a
restore after a restart came with no ``incident`` and the center's open incident
was never closed (review of 2026-12-06).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
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


@contextlib.asynccontextmanager
async def zone_3_in_alarm(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> AsyncIterator[tuple[GatewayConfig, Path, int, CenterConsole]]:
    """A gateway ran, the panel reported zone 3 in alarm, the center has it, and the
    gateway stopped; yields its config, outbox, DC-09 port and the center (still
    listening)."""
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
        yield cfg, outbox, tcp, center


async def test_a_restore_after_a_restart_closes_the_incident_opened_before_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with zone_3_in_alarm(mosquitto, tmp_path) as (cfg, outbox, tcp, center):
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
    async with (
        zone_3_in_alarm(mosquitto, tmp_path) as (cfg, outbox, tcp, center),
        lock_held(outbox) as release,
        listening(cfg, outbox) as gateway,
    ):
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


async def test_damaged_kept_rows_neither_stop_the_start_nor_the_writer(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A kept key that is no list and a value that is no JSON (a hand-edited or damaged
    file): the start goes on, under a lock and without one, and a panic is stored and
    acked (a review of 2026-12-06: the first made a listener raise into the outbox's
    writer, and nothing was stored after it; the second stopped the start)."""
    async with zone_3_in_alarm(mosquitto, tmp_path) as (cfg, outbox, tcp, center):
        with contextlib.closing(sqlite3.connect(outbox)) as db, db:
            db.execute(
                "INSERT INTO kept SELECT kind, 'null', value FROM kept WHERE kind = ?",
                (INCIDENT.name,),
            )
            db.execute("INSERT INTO kept VALUES ('device.offline', 'east', '{not json')")
        for locked in (True, False):
            await _a_panic_goes_through(cfg, outbox, tcp, center, locked=locked)


async def _a_panic_goes_through(
    cfg: GatewayConfig, outbox: Path, tcp: int, center: CenterConsole, *, locked: bool
) -> None:
    """A start (under a lock released at once, or not) reads the kept state, and a
    panic is acked and reaches the center."""

    def panics() -> int:
        return len([e for e in center.events if e["type"] == "alarm.panic"])

    async with contextlib.AsyncExitStack() as stack:
        if locked:
            (await stack.enter_async_context(lock_held(outbox))).set()
        gateway = await stack.enter_async_context(listening(cfg, outbox))
        box = gateway.outbox
        assert box is not None
        await wait_until(lambda: box.kept_loaded, 20, "kept state read")
        sim = await stack.enter_async_context(
            SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=15)
        )
        before = panics()
        assert (await sim.cid("1120", partition=1, zone=3)).acked
        await center.wait_for(lambda: panics() > before, 10)


async def test_a_restore_before_the_kept_state_is_read_leaves_nothing_open_behind(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The restore comes while the outbox is still locked at start: it cannot carry the
    incident (not known yet), but the kept entry goes with it, so the next start has
    nothing open and the next alarm is a new incident, not an update of the old one."""
    async with zone_3_in_alarm(mosquitto, tmp_path) as (cfg, outbox, tcp, center):
        async with (
            lock_held(outbox) as release,
            listening(cfg, outbox),
            SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=30) as sim,
        ):
            restore = asyncio.create_task(sim.cid("3130", partition=1, zone=3))
            await center.wait_for(lambda: bool(_intrusion(center, "cleared")), 10)
            release.set()
            assert (await asyncio.wait_for(restore, 20)).acked
        async with listening(cfg, outbox) as gateway:
            assert gateway.panels is not None and gateway.panels.reports.open == {}


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
