"""Nothing lost across broker restarts, a killed daemon, flapping links and a silent center.

Real parts only: Debian's mosquitto (restarted, killed), the pymodbus simulator,
the gateway in-process or as its own process (SIGKILLed), the center console.
GB 50394 §5.2.2: no missed alarm.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from pathlib import Path

import aiomqtt
import pytest

from gateway.daemon import Gateway, running
from gateway.delivery.outbox import Outbox
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from tests.fault_support import (
    INTRUSION,
    PANIC,
    alarms,
    campus_config,
    daemon_process,
    module,
    puback_counts,
    stored_ids,
    toggle,
    toggle_polled,
    wait_until,
    write_config,
)
from tests.helpers import assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(180)


async def _assert_zone_order(center: CenterConsole, gateway: Gateway, outbox: Path) -> None:
    """Once every alarm is acked and the gateway's PUBACK marks are committed (they
    wait for a commit to ride in, ``mark_linger``: a re-send's second PUBACK may not
    be in the file yet), per zone, the states alternate active/cleared in seq order
    (none collapsed or repeated), and first deliveries come in seq order, except for
    alarms published again after their ack timeout: a broker restart can lose what it
    PUBACKed, and a re-send never goes before a first send (``Outbox.pending``, issue
    14), so those arrive late by design. The center orders by ``seq``."""
    assert gateway.outbox is not None
    outbox_of = gateway.outbox

    async def settled() -> bool:
        # Alarms whose ack a broker restart lost are published again at their ack
        # timeout, and each re-send brings a new mark: wait until nothing is owed.
        return (
            not outbox_of.marking
            and await outbox_of.unacked_count() == 0
            and await outbox_of.pending_count() == 0
        )

    await wait_until(settled, 30, "every alarm acked and its PUBACK marks committed")
    resent = {i for i, n in puback_counts(outbox).items() if n > 1}
    by_zone: dict[str, list[dict]] = defaultdict(list)
    for event in alarms(center, "alarm.intrusion"):
        by_zone[event["subject"]].append(event)
    for zone, events in by_zone.items():
        seqs = [e["seq"] for e in events if e["id"] not in resent]
        assert seqs == sorted(seqs), f"{zone} out of order: {seqs}"
        states = [e["data"]["state"] for e in sorted(events, key=lambda e: e["seq"])]
        assert states == ["active", "cleared"] * (len(states) // 2) + ["active"] * (
            len(states) % 2
        ), f"{zone} states collapsed or repeated: {states}"


async def test_broker_restart_with_500_events_in_flight_loses_none(tmp_path: Path) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker", persistence=True) as broker,
        module() as sim,
        signed_center(broker.host, broker.port, identifier="center", persistent=True) as center,
    ):
        # A restart can swallow what was PUBACKed but not yet handed to the center;
        # those alarms come back when their ack is overdue.
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=5.0
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.outbox is not None
            await wait_until(lambda: len(center.events) >= 2, 10, "gateway and module online")
            await broker.stop()
            made = await toggle_polled(sim, gateway.pollers["io"], INTRUSION, 50)
            assert made == 500
            await wait_until(
                lambda: len(stored_ids(tmp_path / "outbox.sqlite", "alarm.intrusion")) == 500,
                20,
                "500 transitions stored",
            )
            await broker.start()
            await wait_until(lambda: len(alarms(center)) >= 100, 20, "drain under way")
            await broker.restart(down_seconds=0.5)  # with hundreds still in flight
            await wait_until(lambda: len(alarms(center)) >= 500, 60, "all 500 delivered")
            ids = {e["id"] for e in alarms(center)}
            assert len(ids) == 500
            assert ids == set(stored_ids(tmp_path / "outbox.sqlite", "alarm.intrusion"))
            await _assert_zone_order(center, gateway, tmp_path / "outbox.sqlite")
            assert not center.gaps


async def test_twelve_toggles_while_broker_down_all_arrive_in_order(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    async with module() as sim:
        await broker.start()
        async with signed_center(broker.host, broker.port, identifier="c", persistent=True):
            pass  # the center's session exists before the gateway ever connects
        await broker.stop()
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            await toggle_polled(sim, gateway.pollers["io"], [3], 12)
            await wait_until(
                lambda: len(stored_ids(tmp_path / "outbox.sqlite", "alarm.")) == 12,
                10,
                "12 transitions stored",
            )
            await broker.start()
            async with signed_center(
                broker.host, broker.port, identifier="c", persistent=True
            ) as center:
                await wait_until(lambda: len(alarms(center)) >= 12, 20, "12 transitions")
                events = alarms(center)
                assert [e["subject"] for e in events] == ["Z03"] * 12
                assert [e["data"]["state"] for e in events] == ["active", "cleared"] * 6
                assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        await broker.stop()


async def test_sigkilled_daemon_delivers_its_100_unconfirmed_events_after_restart(
    tmp_path: Path,
) -> None:
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    outbox = tmp_path / "outbox.sqlite"
    async with module() as sim:
        await broker.start()
        async with signed_center(broker.host, broker.port, identifier="c", persistent=True):
            pass
        await broker.stop()
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with daemon_process(config, tmp_path / "daemon1.log") as daemon:
            await wait_until(outbox.exists, 30, "daemon started")
            await wait_until(
                lambda: stored_ids(outbox, "device.online"), 20, "the daemon reads the module"
            )
            for rounds in range(1, 11):  # each round stored before the next: none lost
                await toggle(sim, INTRUSION, 1, gap=0)  # to a late poll on a loaded machine
                want = rounds * len(INTRUSION)
                await wait_until(
                    lambda n=want: len(stored_ids(outbox)) >= n,
                    15,
                    f"round {rounds} stored",
                )
            assert len(stored_ids(outbox)) == 100
            daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
        before = stored_ids(outbox)
        await broker.start()
        async with (
            signed_center(broker.host, broker.port, identifier="c", persistent=True) as center,
            daemon_process(config, tmp_path / "daemon2.log"),
        ):
            await wait_until(lambda: len(alarms(center)) >= 100, 30, "100 delivered")
            assert [e["id"] for e in alarms(center)] == before
            # The alarms keep the stream they were stored with; the restart after a
            # SIGKILL begins a new stream (the old run may have sent seqs it never
            # stored) and says so in gateway.started.
            assert len({e["stream"] for e in alarms(center)}) == 1
            await wait_until(lambda: len(alarms(center, "gateway.started")) == 2, 10, "2 starts")
            first, second = alarms(center, "gateway.started")
            assert second["stream"] != first["stream"] == alarms(center)[0]["stream"]
            assert second["data"]["previous_stream"] == first["stream"]
            assert second["data"]["new_stream_reason"] == "unclean stop"
            # gateway.started and device.online (priority 4) follow the alarms (priority 2)
            await wait_until(lambda: not center.gaps, 10, f"no seq missing: {center.gaps}")
        await broker.stop()


async def test_broker_restarted_without_persistence_every_unacked_alarm_is_sent_again(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker", persistence=False) as broker,
        module() as sim,
    ):
        # The center subscribed once (persistent session), then went away.
        async with signed_center(broker.host, broker.port, identifier="c", persistent=True):
            pass
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=2.0
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.outbox is not None and gateway.uplink is not None
            poller = gateway.pollers["io"]
            await wait_until(lambda: None not in poller.inputs, 10, "module read")
            for channel in PANIC:
                sim.press(channel)
            await wait_until(
                lambda: len(stored_ids(tmp_path / "outbox.sqlite", "alarm.panic")) == 6,
                10,
                "6 panics stored",
            )
            await wait_until(
                lambda: gateway.uplink.stats.published >= 6 + 2,  # + started, online
                10,
                "panics PUBACKed by the broker (queued for the absent center)",
            )
            await broker.restart()  # the queued messages and the session are gone
            async with signed_center(broker.host, broker.port, identifier="c2") as center:
                await wait_until(
                    lambda: len(alarms(center, "alarm.panic")) >= 6, 15, "panics re-sent"
                )
                assert {e["id"] for e in alarms(center, "alarm.panic")} == set(
                    stored_ids(tmp_path / "outbox.sqlite", "alarm.panic")
                )
                await wait_until(
                    lambda: _no_unacked(gateway.outbox), 5, "every alarm acked in the end"
                )


async def _no_unacked(outbox: Outbox) -> bool:
    return await outbox.unacked_count() == 0


async def test_five_flaps_in_twenty_seconds_lose_nothing_and_respect_the_window(
    tmp_path: Path,
) -> None:
    window = 5
    async with (
        MosquittoBroker(tmp_path / "broker", persistence=True) as broker,
        module() as sim,
        signed_center(broker.host, broker.port, identifier="c", persistent=True) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port, window=window)
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None

            async def flap() -> None:
                for _ in range(5):
                    await asyncio.sleep(3.0)
                    await broker.restart(down_seconds=0.7)

            flapping = asyncio.create_task(flap())
            # Contact changes throughout the flaps, and at least 200 of them stored (a
            # loaded machine polls fewer per second: it toggles on until there are).
            while not flapping.done() or len(stored_ids(tmp_path / "outbox.sqlite")) < 200:
                await toggle(sim, INTRUSION, 2, gap=0.15)
            await flapping
            stored = stored_ids(tmp_path / "outbox.sqlite")
            assert len(stored) >= 200
            await wait_until(
                lambda: {e["id"] for e in alarms(center)} >= set(stored), 30, "all delivered"
            )
            assert gateway.uplink.stats.connects >= 6
            assert 1 <= gateway.uplink.stats.max_inflight_seen <= window
            await _assert_zone_order(center, gateway, tmp_path / "outbox.sqlite")
            for event in center.events[:50]:
                assert_valid_event(event)


async def test_unacked_alarm_is_republished_with_its_id_until_the_center_acks(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
    ):
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=1.0
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None
            sim.press(PANIC[0])
            await wait_until(lambda: alarms(deaf, "alarm.panic"), 5, "panic delivered")
            panic = alarms(deaf, "alarm.panic")[0]
            await wait_until(lambda: deaf.duplicates >= 2, 10, "re-published twice")
            assert {e["id"] for e in alarms(deaf, "alarm.panic")} == {panic["id"]}
            assert gateway.uplink.stats.republished_alarms >= 2
            async with signed_center(broker.host, broker.port) as center:
                await wait_until(
                    lambda: panic["id"] in center.acked_ids, 5, "the real center acks it"
                )
                await asyncio.sleep(0.5)
                settled = gateway.uplink.stats.republished_alarms
                await asyncio.sleep(2.5)  # more than two ack timeouts
                assert gateway.uplink.stats.republished_alarms == settled


async def test_heartbeat_is_never_stored_and_state_is_republished_after_reconnect(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker", persistence=False) as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, heartbeat_s=0.5
        )
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None
            await wait_until(lambda: len(center.heartbeats) >= 2, 5, "two heartbeats")
            beat = center.heartbeats[-1]
            assert "seq" not in beat and beat["priority"] == 5
            assert {"outbox_depth", "oldest_pending_s", "unacked_alarms"} <= set(beat["data"])
            assert stored_ids(tmp_path / "outbox.sqlite", "gateway.heartbeat") == []
            await broker.restart()  # no persistence: every retained message is gone
            await wait_until(lambda: gateway.uplink.stats.connects >= 2, 10, "reconnected")
            await asyncio.sleep(0.5)
            states: dict[str, dict] = {}
            async with aiomqtt.Client(broker.host, broker.port) as sub:
                await sub.subscribe("campus/v1/fault-school/gw1/state/#", qos=1)
                async with asyncio.timeout(10):
                    async for message in sub.messages:
                        assert message.retain  # republished by the gateway, kept by the broker
                        assert isinstance(message.payload, bytes)
                        states[message.topic.value] = json.loads(message.payload)
                        break
            state = states["campus/v1/fault-school/gw1/state/io"]
            assert state["health"] == "online" and len(state["inputs"]) == 16


async def test_a_second_daemon_on_the_same_outbox_is_refused(tmp_path: Path) -> None:
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        config = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with daemon_process(config, tmp_path / "first.log") as first:
            await wait_until((tmp_path / "outbox.sqlite").exists, 30, "first daemon started")
            async with daemon_process(config, tmp_path / "second.log") as second:
                assert await asyncio.wait_for(second.wait(), 20) == 1
            assert (
                "in use by another campus-gateway process" in (tmp_path / "second.log").read_text()
            )
            assert first.returncode is None  # the first one runs on, untouched
