"""A DC-09 panel → the gateway daemon → real mosquitto → the center console.

Every test runs the whole daemon with a ``[[panels]]`` config; the panel is
:class:`~simulators.dc09_panel.SimulatedPanel` on real TCP or UDP sockets, the
broker Debian's mosquitto, the center :class:`~simulators.center.CenterConsole`
(which checks every event against the schema and tracks ``seq`` gaps).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.dc09_panel import SimulatedPanel
from tests.fault_support import stored_ids, wait_until
from tests.helpers import assert_valid_event, free_port, lock_held, signed_center
from tests.ops_support import scrape, status
from tests.panels_support import (
    ACCOUNT,
    KEY_TEXT,
    PANIC_ZONE_NAME,
    key_file,
    listening,
    panel,
    site_config,
)

pytestmark = pytest.mark.timeout(120)

PATIENT = 15.0
"""How long the simulated panels wait for an answer: a loaded test machine may take
seconds to commit, and a re-send then would make the attempt counts lie. Re-sends on
silence are tested in ``tests/drivers/dc09/test_dc09_receiver.py``."""


def _of(center: CenterConsole, type_: str) -> list[dict[str, Any]]:
    return [e for e in center.events if e["type"] == type_]


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ports() -> tuple[int, int]:
    return free_port(), free_port()


async def test_contact_id_panic_over_tcp_reaches_the_center_within_1_s(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp, udp = _ports()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp)
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite"),
        SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=PATIENT) as sim,
    ):
        started = time.monotonic()
        outcome = await sim.cid("1120", partition=1, zone=3)
        await center.wait_for(lambda: bool(_of(center, "alarm.panic")), 1.0)
        elapsed = time.monotonic() - started
    assert outcome.acked and outcome.attempts == 1 and sim.malformed == 0
    (panic,) = _of(center, "alarm.panic")
    assert elapsed < 1.0
    assert (panic["priority"], panic["cidcode"], panic["siacode"]) == (1, "120", "PA")
    assert panic["subject"] == "E03" and panic["data"]["name"] == PANIC_ZONE_NAME
    assert panic["source"] == "campus/dc09-school/gw1/east"
    assert panic["data"]["zone"] == 3 and panic["data"]["area"] == "TEACH"
    assert panic["data"]["state"] == "active" and panic["data"]["account"] == ACCOUNT
    assert center.invalid == 0
    for event in center.events:
        assert_valid_event(event)


async def test_the_ack_waits_for_the_commit(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Another process holds the outbox's write lock: the panel gets no ACK until the
    panic is in the file, then gets it (GB 50394 §5.2.2: acknowledge only what is kept)."""
    tcp, udp = _ports()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp)
    outbox = tmp_path / "outbox.sqlite"
    async with listening(cfg, outbox) as gateway:
        assert gateway.panels is not None
        receiver = gateway.panels.receiver
        async with SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=30) as sim:
            await sim.link_test()  # connected, panel online: only the panic is left to commit
            blocker = sqlite3.connect(outbox, timeout=5)
            blocker.execute("BEGIN IMMEDIATE")  # the write lock, held
            try:
                sending = asyncio.create_task(sim.cid("1120", partition=1, zone=3))
                await wait_until(lambda: receiver.counts["frames"] >= 2, 5, "panic received")
                await wait_until(lambda: len(receiver.retransmissions) == 1, 5, "being stored")
                assert sim.link.answers.empty() and not sending.done()
                assert stored_ids(outbox, "alarm.panic") == []
            finally:
                blocker.rollback()
                blocker.close()
            outcome = await asyncio.wait_for(sending, 10)
            assert outcome.acked and outcome.attempts == 1
            assert len(stored_ids(outbox, "alarm.panic")) == 1


async def test_while_the_outbox_is_locked_no_panel_event_and_no_nak_waits_for_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Another process holds the outbox's lock from before the panels' first messages:
    a panel's first panic (its ``device.online`` comes with it), both events of one
    frame, and a NAK for a slow clock all go within 2 s; only the ACKs wait for the
    commit (a fresh review of 2026-12-05: each waited out the lock)."""
    tcp, udp = _ports()
    accounts = (ACCOUNT, "5678", "9012")  # three panels: each waits for its own ACK
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp, panels=[
        panel(),
        panel(id="west", account=accounts[1], zones=[]),
        panel(id="north", account=accounts[2], zones=[]),
    ])  # fmt: skip
    outbox = tmp_path / "outbox.sqlite"
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, outbox) as gateway,
    ):
        assert gateway.panels is not None
        receiver = gateway.panels.receiver
        panels = [
            SimulatedPanel("127.0.0.1", tcp, accounts[0], ack_timeout_s=30),
            SimulatedPanel("127.0.0.1", tcp, accounts[1], ack_timeout_s=30),
            SimulatedPanel("127.0.0.1", tcp, accounts[2], clock_offset_s=-300, ack_timeout_s=30),
        ]
        async with panels[0] as first, panels[1] as frame, panels[2] as late:
            async with lock_held(outbox):
                sent = time.monotonic()
                panic = asyncio.create_task(first.cid("1120", partition=1, zone=3))
                await center.wait_for(lambda: bool(_of(center, "alarm.panic")), 2.0)
                both = asyncio.create_task(frame.send("SIA-DCS", "Nri1/BA005/PA004"))
                await center.wait_for(lambda: len(_of(center, "alarm.panic")) == 2, 2.0)
                await center.wait_for(lambda: len(_of(center, "alarm.intrusion")) == 1, 2.0)
                slow = asyncio.create_task(late.cid("1130", partition=1, zone=3))
                await wait_until(lambda: receiver.counts["nak"] == 1, 2.0, "the NAK, locked")
                assert time.monotonic() - sent < 6.0
                assert not (panic.done() or both.done() or slow.done())  # ACKs wait
                assert stored_ids(outbox, "alarm.panic") == []
            outcomes = [await asyncio.wait_for(t, 15) for t in (panic, both, slow)]
    assert [o.answer for o in outcomes] == ["ACK", "ACK", "ACK"]
    assert outcomes[2].attempts == 2  # NAKed once, then taken with the gateway's time
    assert len(stored_ids(outbox, "alarm.panic")) == 2
    assert len(stored_ids(outbox, "alarm.intrusion")) == 2


@pytest.mark.parametrize(("transport", "encrypted"), [("udp", False), ("tcp", True), ("udp", True)])
async def test_panic_over_udp_and_encrypted(
    mosquitto: MosquittoBroker, tmp_path: Path, transport: str, encrypted: bool
) -> None:
    tcp, udp = _ports()
    extra = {"key_file": str(key_file(tmp_path))} if encrypted else {}
    cfg = site_config(
        broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp, panels=[panel(**extra)]
    )
    key = KEY_TEXT.encode() if encrypted else None
    port = udp if transport == "udp" else tcp
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite"),
        SimulatedPanel(
            "127.0.0.1",
            port,
            ACCOUNT,
            key=key,
            transport=transport,  # type: ignore[arg-type]
            ack_timeout_s=PATIENT,
        ) as sim,
    ):
        started = time.monotonic()
        outcome = await sim.cid("1120", partition=1, zone=3)
        await center.wait_for(lambda: bool(_of(center, "alarm.panic")), 1.0)
        elapsed = time.monotonic() - started
    assert outcome.acked and sim.malformed == 0, outcome
    assert elapsed < 1.0
    (panic,) = _of(center, "alarm.panic")
    assert (panic["priority"], panic["cidcode"], panic["siacode"]) == (1, "120", "PA")
    assert panic["data"]["name"] == PANIC_ZONE_NAME and panic["data"]["encrypted"] is encrypted
    if encrypted:
        (answer,) = outcome.frames
        assert answer[8:14] == b'"*ACK"'  # the ACK of an encrypted message is encrypted


async def test_an_ajax_packet_of_three_frames_gives_three_events_and_three_acks(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp, udp = _ports()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp, panels=[
        panel(key_file=str(key_file(tmp_path)))
    ])  # fmt: skip
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite") as gateway,
        SimulatedPanel(
            "127.0.0.1", tcp, ACCOUNT, key=KEY_TEXT.encode(), binary_pad=True, ack_timeout_s=PATIENT
        ) as sim,
    ):
        outcomes = await sim.send_packet(
            [("SIA-DCS", "Nri1/BA005"), ("SIA-DCS", "Nri1/PA003"), ("SIA-DCS", "Nri1/BH005")]
        )
        await center.wait_for(lambda: len(_of(center, "alarm.intrusion")) == 2, 3)
        await center.wait_for(lambda: len(_of(center, "alarm.panic")) == 1, 3)
        assert gateway.ops is not None
        await asyncio.wait_for(gateway.ops.listening.wait(), 10)
        assert gateway.ops.address is not None
        shown = await status(gateway.ops.address[1])
    # What the panel reports active now is in the status: the panic, not the restored zone.
    assert [(a["zone"], a["type"], a["condition"], a["detail"]) for a in shown["alarms"]] == [
        ("E03", "alarm.panic", "panel", "panel east")
    ]
    assert [o.answer for o in outcomes] == ["ACK", "ACK", "ACK"]
    assert [o.attempts for o in outcomes] == [1, 1, 1] and sim.malformed == 0
    assert len(sim.sent) == 3  # one packet, nothing sent again
    intrusion = _of(center, "alarm.intrusion")
    assert [e["data"]["state"] for e in intrusion] == ["active", "cleared"]
    assert [e["siacode"] for e in intrusion] == ["BA", "BH"]
    assert intrusion[1]["data"]["incident"] == intrusion[0]["id"]
    assert _of(center, "alarm.panic")[0]["subject"] == "E03"


async def test_an_unknown_code_is_acked_reported_and_the_link_goes_on(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp, udp = _ports()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp)
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite"),
        SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=PATIENT) as sim,
    ):
        unknown_cid = await sim.cid("1777", partition=1, zone=5)  # no Contact ID 777
        unknown_sia = await sim.sia("QZ", 5, area=1)  # no SIA QZ
        panic = await sim.cid("1120", partition=1, zone=3)
        await center.wait_for(lambda: len(_of(center, "alarm.panel_unknown")) == 2, 3)
        await center.wait_for(lambda: bool(_of(center, "alarm.panic")), 3)
    assert [o.answer for o in (unknown_cid, unknown_sia, panic)] == ["ACK"] * 3
    assert [o.attempts for o in (unknown_cid, unknown_sia, panic)] == [1, 1, 1]
    first, second = _of(center, "alarm.panel_unknown")
    assert first["priority"] == 2 and first["cidcode"] == "777" and first["data"]["code"] == "777"
    assert first["subject"] == "E05" and first["data"]["name"] == "东侧窗磁"
    assert second["siacode"] == "QZ" and "cidcode" not in second
    for event in center.events:
        assert_valid_event(event)


async def test_a_silent_panel_goes_offline_and_its_next_null_brings_it_online(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp, udp = _ports()
    cfg = site_config(
        broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp, panels=[panel(supervision_s=1.5)]
    )
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite") as gateway,
        SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=PATIENT) as sim,
    ):
        assert gateway.panels is not None
        assert gateway.panels.last_seen() == {"east": None}  # not heard since start
        await sim.link_test()
        await center.wait_for(lambda: bool(_of(center, "device.online")), 10)
        first_seen = gateway.panels.last_seen()["east"]
        assert first_seen is not None  # a NULL link test is seen, though never an event
        await center.wait_for(lambda: bool(_of(center, "fault.device_offline")), 10)
        # Silent for its supervision interval, by the gateway's own clock (the events'
        # times), not by when a loaded test process got to look.
        heard, declared = _of(center, "device.online")[0], _of(center, "fault.device_offline")[0]
        assert _time(declared["time"]) - _time(heard["time"]) >= 1.4
        assert gateway.panels.health() == {"east": "offline"}
        assert (await sim.link_test()).acked
        await center.wait_for(lambda: len(_of(center, "device.online")) == 2, 3)
        later = gateway.panels.last_seen()["east"]
        assert later is not None and later > first_seen
    assert gateway.panels.health() == {"east": "online"}
    (offline,) = _of(center, "fault.device_offline")
    back = _of(center, "device.online")[1]
    assert offline["subject"] == "east" and offline["priority"] == 3
    assert "supervision 1.5 s" in offline["data"]["reason"]
    assert back["data"]["incident"] == offline["id"]
    assert [e["type"] for e in center.events if e["source"].endswith("/east")] == [
        "device.online",
        "fault.device_offline",
        "device.online",
    ]  # fmt: skip: NULL link tests are never events of their own


async def test_a_frame_outside_the_window_gets_a_nak_and_the_corrected_retry_is_taken(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tcp, udp = _ports()
    cfg = site_config(broker_port=mosquitto.port, tcp_port=tcp, udp_port=udp)
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        listening(cfg, tmp_path / "outbox.sqlite") as gateway,
        SimulatedPanel(
            "127.0.0.1", tcp, ACCOUNT, clock_offset_s=-300, ack_timeout_s=PATIENT
        ) as sim,
    ):
        outcome = await sim.cid("1120", partition=1, zone=3)
        await center.wait_for(lambda: bool(_of(center, "alarm.panic")), 3)
        assert gateway.ops is not None
        await asyncio.wait_for(gateway.ops.listening.wait(), 10)
        assert gateway.ops.address is not None
        metrics = await scrape(gateway.ops.address[1])
    nak, _ = outcome.frames
    assert nak[8:13] == b'"NAK"' and outcome.answer == "ACK" and outcome.attempts == 2
    assert abs(sim.clock_offset_s) < 3  # the panel took the gateway's time from the NAK
    (rejected,) = _of(center, "fault.panel_rejected")
    assert rejected["data"]["reason"] == "timestamp" and rejected["data"]["answer"] == "NAK"
    assert len(_of(center, "alarm.panic")) == 1
    # The receiver's counters in Prometheus /metrics: one NAK (timestamp), then one ACK.
    prefix = "campus_gateway_dc09"
    assert metrics[(f"{prefix}_frames_total", ())] == 2
    assert metrics[(f"{prefix}_answers_total", (("answer", "nak"),))] == 1
    assert metrics[(f"{prefix}_answers_total", (("answer", "ack"),))] == 1
    assert metrics[(f"{prefix}_answers_total", (("answer", "duh"),))] == 0
    assert metrics[(f"{prefix}_refused_total", (("reason", "timestamp"),))] == 1
    assert metrics[(f"{prefix}_outcomes_total", (("outcome", "accepted"),))] == 1
    assert metrics[(f"{prefix}_connections", ())] == 1


async def test_with_the_broker_down_panel_events_are_stored_acked_and_delivered_gap_free(
    tmp_path: Path,
) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    await broker.start()
    async with signed_center(broker.host, broker.port, identifier="c", persistent=True):
        pass  # the center's session exists before the gateway ever connects
    await broker.stop()
    tcp, udp = _ports()
    cfg = site_config(broker_port=broker.port, tcp_port=tcp, udp_port=udp)
    outbox = tmp_path / "outbox.sqlite"
    async with (
        listening(cfg, outbox),
        SimulatedPanel("127.0.0.1", tcp, ACCOUNT, ack_timeout_s=PATIENT) as sim,
    ):
        outcomes = [await sim.cid(f"{q}130", partition=1, zone=5) for q in "1313131313"]
        outcomes.append(await sim.cid("1120", partition=1, zone=3))
        assert all(o.acked and o.attempts == 1 for o in outcomes)
        assert len(stored_ids(outbox, "alarm.")) == 11
        await broker.start()
        async with signed_center(broker.host, broker.port, identifier="c", persistent=True) as c:
            # 11 alarms, gateway.started and device.online: every seq, none missing
            await c.wait_for(lambda: len(c.events) == 13 and not c.gaps, 20)
            alarms = [e for e in c.events if e["type"].startswith("alarm.")]
            seqs = sorted(e["seq"] for e in c.events)
            gaps = c.gaps
    await broker.stop()
    assert not gaps and seqs == list(range(1, 14))
    assert (
        sorted(e["data"]["state"] for e in alarms if e["type"] == "alarm.intrusion")
        == ["active"] * 5 + ["cleared"] * 5
    )
    assert {e["id"] for e in alarms} == set(stored_ids(outbox, "alarm."))
