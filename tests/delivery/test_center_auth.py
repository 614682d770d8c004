"""Every message from the center is authenticated (issue 10): forged acks do not stop
a panic's re-sends, a signed one does; a retained command is refused even live;
``allow_unsigned`` is a bench setting that every heartbeat confesses.

Real parts: Debian's mosquitto, the pymodbus simulator, the gateway in-process, the
center console, and a forger that is just another MQTT client on the broker.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.commands.signing import sign
from gateway.config.root import load_config
from gateway.daemon import Gateway, running
from simulators.broker import MosquittoBroker
from simulators.center_commands import CommandSender
from tests.fault_support import PANIC, alarms, module, row_states, wait_until, write_config
from tests.helpers import TEST_KEY, TEST_KEY_FILE, assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(120)

PREFIX = "campus/v1/fault-school/gw1"


def _refused(gateway: Gateway, reason: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "campus_gateway_acks_refused_total", {"reason": reason}
    )
    return value or 0.0


def _acked(outbox: Path, event_id: str) -> bool:
    return any(i == event_id and acked for _, i, _, acked in row_states(outbox))


async def test_a_forged_ack_does_not_stop_a_panics_resends_a_signed_one_does(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
        aiomqtt.Client(broker.host, broker.port, identifier="forger") as forger,
    ):
        path = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=0.5
        )
        async with running(load_config(path), outbox_path=outbox) as gateway:
            sim.press(PANIC[0])
            await wait_until(lambda: alarms(deaf, "alarm.panic"), 15, "panic delivered")
            panic_id = alarms(deaf, "alarm.panic")[0]["id"]
            ids = {"ids": [panic_id]}
            forged: list[dict[str, Any]] = [
                ids,  # unsigned
                {**ids, "signature": "00" * 32},  # badly signed
                {**ids, "signature": sign(b"x" * 32, f"{PREFIX}/ack", ids)},  # another key
                {**ids, "signature": sign(TEST_KEY, "campus/v1/x/gw1/ack", ids)},  # another gw
            ]
            for body in forged:
                await forger.publish(f"{PREFIX}/ack", json.dumps(body), qos=1)
            await forger.publish(f"{PREFIX}/ack", b"not json", qos=1)
            await wait_until(
                lambda: _refused(gateway, "bad_signature") == 3
                and _refused(gateway, "unsigned") == 1
                and _refused(gateway, "malformed") == 1,
                15,
                "every forged ack refused and counted",
            )
            await wait_until(
                lambda: len(alarms(deaf, "fault.ack_refused")) == 3,
                15,
                "the center told of each reason once",
            )
            reported = alarms(deaf, "fault.ack_refused")
            assert sorted(e["data"]["refusal"] for e in reported) == [
                "bad_signature",
                "malformed",
                "unsigned",
            ]
            for event in reported:
                assert_valid_event(event)
            resent = deaf.duplicates
            await wait_until(lambda: deaf.duplicates >= resent + 2, 20, "re-sends go on")
            assert not _acked(outbox, panic_id)

            body = {"ids": [panic_id], "center": "forger-with-the-key"}
            body["signature"] = sign(TEST_KEY, f"{PREFIX}/ack", body)
            await forger.publish(f"{PREFIX}/ack", json.dumps(body, ensure_ascii=True), qos=1)
            await wait_until(lambda: _acked(outbox, panic_id), 15, "the signed ack counts")
            assert _refused(gateway, "bad_signature") == 3  # the good one was not refused


async def test_a_retained_command_published_while_connected_is_refused_with_an_audit(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
        CommandSender(broker.host, broker.port, "fault-school", "gw1", key=TEST_KEY) as sender,
    ):
        path = write_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        async with running(load_config(path), outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None
            await wait_until(gateway.uplink.stats.connected.is_set, 15, "gateway connected")
            result = await sender.send("reset", {}, retain=True, timeout_s=10)
            await sender.clear_retained("reset")
            assert result["status"] == "error" and result["data"] == {"reason": "retained"}

            def audits() -> list[dict[str, Any]]:
                return [e for e in center.events if e["type"] == "command.result"]

            await wait_until(audits, 15, "the refusal's audit event reaches the center")
            (audit,) = audits()
            assert_valid_event(audit)
            assert audit["data"]["retained"] is True and audit["data"]["reason"] == "retained"
            assert audit["data"]["correlation_id"] == result["correlation_id"]


async def test_allow_unsigned_starts_and_says_so_in_every_heartbeat(tmp_path: Path) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, key=None) as center,
    ):
        path = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, heartbeat_s=0.3
        )
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace(f'hmac_key_file = "{TEST_KEY_FILE}"', "allow_unsigned = true"),
            encoding="utf-8",
        )
        cfg = load_config(path)
        assert cfg.commands.allow_unsigned and cfg.commands.hmac_key_file is None
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite"):
            await wait_until(lambda: len(center.heartbeats) >= 2, 15, "two heartbeats")
            started = [e for e in center.events if e["type"] == "gateway.started"]
            await wait_until(lambda: started or center.events, 5, "gateway.started")
            started = [e for e in center.events if e["type"] == "gateway.started"]
            insecure = ["unsigned_commands", "unsigned_acks"]
            assert started and started[0]["data"]["insecure"] == insecure
            for heartbeat in center.heartbeats:
                assert heartbeat["data"]["insecure"] == insecure, heartbeat
            sim.press(PANIC[0])  # the console's unsigned ack counts on such a bench
            await wait_until(lambda: alarms(center, "alarm.panic"), 15, "panic delivered")
            panic_id = alarms(center, "alarm.panic")[0]["id"]
            await wait_until(
                lambda: _acked(tmp_path / "outbox.sqlite", panic_id), 15, "unsigned ack taken"
            )


async def test_a_signed_gateway_says_nothing_insecure(tmp_path: Path) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        path = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, heartbeat_s=0.3
        )
        async with running(load_config(path), outbox_path=tmp_path / "outbox.sqlite"):
            await wait_until(lambda: len(center.heartbeats) >= 1, 5, "a heartbeat")
            await wait_until(
                lambda: any(e["type"] == "gateway.started" for e in center.events), 5, "started"
            )
            started = next(e for e in center.events if e["type"] == "gateway.started")
            assert "insecure" not in started["data"]
            assert "insecure" not in center.heartbeats[0]["data"]
    await asyncio.sleep(0)
