"""A panel's message → events on the site's map (``gateway/panels/reports.py``)."""

from __future__ import annotations

from gateway.config.root import GatewayConfig
from gateway.events.model import EventFactory
from gateway.events.panel_observation import PanelMessage, PanelReport
from gateway.panels.reports import PanelReports
from tests.helpers import SIGNED_COMMANDS
from tests.panels_support import panel
from tests.patrol_support import EventLog


def _reports(log: EventLog) -> PanelReports:
    cfg = GatewayConfig.model_validate(
        {
            "commands": SIGNED_COMMANDS,
            "site": {"id": "s", "gateway": "gw1"},
            "areas": [{"id": "TEACH", "name": "教学行政区"}, {"id": "LAB", "name": "实验楼"}],
            "dc09": {"listen": [{"protocol": "tcp", "port": 15030}]},
            "panels": [
                panel(partitions=[{"number": 1, "area": "TEACH"}, {"number": 2, "area": "LAB"}])
            ],
        }
    )
    factory = EventFactory(cfg.source_prefix, lambda: True)
    return PanelReports(cfg.panels, {a.id: a for a in cfg.areas}, factory, log)


def _message(*reports: PanelReport, unparsed: str | None = None) -> PanelMessage:
    return PanelMessage(
        panel_id="east", account="1234", protocol=reports[0].protocol if reports else "SIA-DCS",
        seq="0001", encrypted=False, reports=reports, unparsed=unparsed, xdata=(("X", "1"),),
        devicetime=None, data="…", peer="tcp 127.0.0.1:1",
    )  # fmt: skip


async def test_zones_partitions_users_and_codes_are_put_on_the_map() -> None:
    log = EventLog()
    reports = _reports(log)
    await reports.message(
        _message(
            PanelReport("ADM-CID", "130", "new", partition=2, number=7),  # a zone nobody named
            PanelReport("ADM-CID", "401", "restore", partition=2, number=57),  # closing by user 57
            PanelReport("ADM-CID", "301", "new", partition=0, number=0),  # AC loss: no zone
            PanelReport("ADM-CID", "602", "new", partition=0, number=0),  # periodic test: none
        )
    )
    intrusion, armed, ac = log.events
    assert (intrusion.type, intrusion.subject, intrusion.data["area"]) == (
        "alarm.intrusion",
        "east.z007",
        "LAB",
    )
    assert intrusion.data["area_name"] == "实验楼" and intrusion.data["xdata"] == {"X": "1"}
    assert (armed.type, armed.subject, armed.data["user"], armed.siacode) == (
        "area.armed",
        "LAB",
        57,
        "CL",
    )
    assert armed.data["name"] == "实验楼" and armed.cidcode == "401"
    assert (ac.type, ac.subject, ac.siacode, ac.cidcode) == ("fault.panel", "east", "AT", "301")
    assert ac.data["area"] == "TEACH"  # no partition mapped for 0: the panel's own area


async def test_unknown_codes_and_unreadable_data_are_reported_never_dropped() -> None:
    log = EventLog()
    reports = _reports(log)
    await reports.message(_message(PanelReport("SIA-DCS", "QZ", partition=1, number=3)))
    await reports.message(_message(unparsed="garbage 12"))
    await reports.message(_message(PanelReport("ADM-CID", "999", "new", 1, 3)))  # in the table
    unknown, unparsed, known = log.events
    assert (unknown.type, unknown.subject, unknown.siacode, unknown.priority) == (
        "alarm.panel_unknown", "E03", "QZ", 2,
    )  # fmt: skip
    assert unknown.cidcode is None and unknown.data["name"] == "东门红外"
    assert (unparsed.type, unparsed.siacode, unparsed.data["unparsed"]) == (
        "alarm.panel_unknown", "UX", "garbage 12",
    )  # fmt: skip
    assert known.type == "panel.event" and known.cidcode == "999"
