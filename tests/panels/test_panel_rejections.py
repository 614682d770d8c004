"""Refused frames are reported as ``fault.panel_rejected``: at once, then at most one
per sender and reason every ``reject_report_s``, counting the ones in between."""

from __future__ import annotations

from gateway.events.model import EventFactory
from gateway.events.panel_observation import PanelRejected
from gateway.panels.rejections import MAX_REPORTS, Rejections
from tests.helpers import ManualClock
from tests.patrol_support import EventLog


def _refused(
    reason: str, peer: str = "tcp 10.0.0.5:40000", panel: str | None = None
) -> PanelRejected:
    return PanelRejected(
        reason=reason, detail="d", answer="DUH", raw="r", peer=peer, panel_id=panel
    )


async def test_a_flood_of_refusals_is_one_report_per_sender_reason_and_period() -> None:
    log, clock = EventLog(), ManualClock()
    rejections = Rejections(EventFactory("campus/s/gw1", lambda: True), log, 600, clock=clock)
    for port in range(40000, 40050):  # 50 frames of an unknown account from one host
        await rejections.rejected(_refused("unknown_account", peer=f"tcp 10.0.0.5:{port}"))
    await rejections.rejected(_refused("crc"))  # another reason: reported at once
    await rejections.rejected(_refused("unknown_account", peer="udp 10.0.0.6:5000"))
    clock.now += 601
    await rejections.rejected(_refused("unknown_account"))
    assert rejections.refused == 53
    events = log.of("fault.panel_rejected")
    assert [(e.subject, e.data["reason"], e.data["refused_since"]) for e in events] == [
        ("10.0.0.5", "unknown_account", 0),
        ("10.0.0.5", "crc", 0),
        ("10.0.0.6", "unknown_account", 0),
        ("10.0.0.5", "unknown_account", 49),
    ]
    assert all(e.priority == 3 and e.source == "campus/s/gw1/dc09" for e in events)


async def test_a_configured_panel_s_refusals_are_its_own() -> None:
    log = EventLog()
    rejections = Rejections(EventFactory("campus/s/gw1", lambda: True), log, 600)
    await rejections.rejected(_refused("decrypt", panel="east"))
    (event,) = log.events
    assert (event.source, event.subject, event.siacode) == ("campus/s/gw1/east", "east", "YN")


async def test_junk_from_thousands_of_addresses_is_capped_per_period_in_all() -> None:
    """One report per sender is still a flood when the senders are many (a review of
    2026-12-06: 353 events from 3,000 addresses); the next report counts the rest."""
    log, clock = EventLog(), ManualClock()
    rejections = Rejections(EventFactory("campus/s/gw1", lambda: True), log, 600, clock=clock)
    for host in range(100):
        await rejections.rejected(_refused("framing", peer=f"tcp 10.0.{host // 250}.{host}:4000"))
    assert len(log.of("fault.panel_rejected")) == MAX_REPORTS
    clock.now += 601
    await rejections.rejected(_refused("framing", peer="tcp 10.9.9.9:4000"))
    events = log.of("fault.panel_rejected")
    assert len(events) == MAX_REPORTS + 1
    assert events[-1].data["unreported"] == 100 - MAX_REPORTS
    assert rejections.refused == 101


async def test_datagrams_lost_in_a_flood_are_reported_whatever_the_flood_reported() -> None:
    """The flood that drops datagrams fills the cap with its own refusals; the loss is
    reported all the same (a review of 2026-12-06)."""
    log = EventLog()
    rejections = Rejections(EventFactory("campus/s/gw1", lambda: True), log, 600)
    for host in range(MAX_REPORTS + 5):
        await rejections.rejected(_refused("framing", peer=f"udp 10.0.0.{host}:4000"))
    await rejections.rejected(_refused("dropped", peer="udp 0.0.0.0:15030"))
    assert log.of("fault.panel_rejected")[-1].data["reason"] == "dropped"
