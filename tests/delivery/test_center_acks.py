"""The center acks everything that matters (issue 10 item 4), against a real mosquitto.

A priority 1-3 event stays open until the center acks its id and is published again,
with the same id, every ``ack_timeout_s`` until then; a center may also ack a whole
stream up to a seq; the heartbeat says how far the stream is acked.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiomqtt
import pytest

from gateway.commands.signing import sign
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.center_commands import CommandSender
from tests.fault_support import PANIC, alarms, campus_config, module, row_states, wait_until
from tests.helpers import TEST_KEY, assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(120)

ACK = "campus/v1/fault-school/gw1/ack"


def _sent(outbox: Path, type_: str) -> list[str]:
    return [i for t, i, sent, _ in row_states(outbox, type_) if sent]


async def test_a_fault_the_broker_took_while_no_center_listened_reaches_a_later_center(
    tmp_path: Path,
) -> None:
    """Issue 10: seq 12-13 (``fault.device_offline`` and its recovery) were lost to a
    center that connected 15 s late. Now they are re-sent until acked."""
    outbox = tmp_path / "outbox.sqlite"
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=1.0
        )
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.uplink is not None
            await wait_until(lambda: _sent(outbox, "device.online"), 30, "module online, sent")
            sim.silent = True
            await wait_until(lambda: _sent(outbox, "fault.device_offline"), 30, "fault sent")
            sim.silent = False
            await wait_until(lambda: len(_sent(outbox, "device.online")) >= 2, 30, "back")
            faults = {i for _, i, _, _ in row_states(outbox, "fault.")}
            # The broker accepted them (PUBACK) while nobody was subscribed: they are gone
            # from the broker. Only the gateway's re-sends can bring them to a center.
            async with signed_center(broker.host, broker.port) as center:
                await center.wait_for(lambda: faults <= set(center.ids()), 20)
                await wait_until(
                    lambda: all(acked for _, _, _, acked in row_states(outbox, "fault.")),
                    10,
                    "the fault acked by the center",
                )
            for event in alarms(center, "fault."):
                assert_valid_event(event)
                assert event["priority"] == 3


async def test_a_stream_ack_closes_every_event_up_to_its_seq_and_the_heartbeat_says_so(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
    ):
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=1.0,
            heartbeat_s=0.2,
        )  # fmt: skip
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.outbox is not None and gateway.uplink is not None
            sim.press(PANIC[0])
            await deaf.wait_for(lambda: deaf.duplicates >= 1, 10)  # re-sent: nobody acked
            stream, last = gateway.outbox.stream, gateway.outbox.last_seq

            def beat() -> dict[str, object]:
                data: dict[str, object] = deaf.heartbeats[-1]["data"]
                return data

            await deaf.wait_for(lambda: bool(deaf.heartbeats) and beat()["last_seq"] == last, 5)
            assert beat()["stream"] == stream
            assert isinstance(beat()["acked_up_to"], int) and beat()["acked_up_to"] < last
            assert beat()["heartbeat_s"] == 0.2
            async with aiomqtt.Client(broker.host, broker.port) as center:
                ack: dict[str, object] = {"stream": stream, "up_to_seq": last}
                ack["signature"] = sign(TEST_KEY, ACK, ack)
                await center.publish(ACK, json.dumps(ack), qos=1)
            await deaf.wait_for(lambda: beat()["acked_up_to"] == last, 5)
            assert all(acked for _, _, _, acked in row_states(outbox, "alarm."))
            settled = gateway.uplink.stats.republished_alarms
            seen = deaf.deliveries
            await deaf.wait_for(lambda: deaf.deliveries >= seen + 15, 10)  # 3 s of beats
            assert gateway.uplink.stats.republished_alarms == settled


async def test_a_center_that_was_away_catches_up_with_a_signed_replay(tmp_path: Path) -> None:
    """Issue 10 item 4: ``replay`` from a seq re-sends what the outbox holds, priority 4
    events too (they are never re-sent by themselves), so the center has no gap."""
    outbox = tmp_path / "outbox.sqlite"
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.outbox is not None
            await wait_until(lambda: _sent(outbox, "device.online"), 30, "module online, sent")
            await wait_until(
                lambda: all(sent for _, _, sent, _ in row_states(outbox)), 30, "all sent"
            )
            held = [i for _, i, _, _ in row_states(outbox)]
            stream, last = gateway.outbox.stream, gateway.outbox.last_seq
            async with (
                signed_center(broker.host, broker.port) as center,
                CommandSender(
                    broker.host, broker.port, "fault-school", "gw1", key=cfg.commands.key()
                ) as sender,
            ):
                result = await sender.send("replay", {"stream": stream, "from_seq": 1})
                assert result["status"] == "ok", result
                assert result["data"]["to_seq"] >= last and result["data"]["not_held"] == []
                assert result["data"]["resent"] >= len(held)
                await center.wait_for(lambda: set(held) <= set(center.ids()), 10)
                assert center.gaps == {} and center.invalid == 0
                refused = await sender.send("replay", {"stream": "01OTHER", "from_seq": 1})
                assert refused["status"] == "error" and "stream" in refused["error"]
                beyond = await sender.send("replay", {"stream": stream, "from_seq": last + 99})
                assert beyond["status"] == "error"
                # 1.0 and 1 are one JSON number (docs/center-protocol.md); 1.5 is no seq.
                floats = {"stream": stream, "from_seq": 1.0, "to_seq": 1.0}
                again = await sender.send("replay", floats)
                assert again["status"] == "ok" and again["data"]["from_seq"] == 1, again
                half = await sender.send("replay", {"stream": stream, "from_seq": 1.5})
                assert half["status"] == "error" and half["data"]["reason"] == "invalid"
