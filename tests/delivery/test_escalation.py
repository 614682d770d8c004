"""Escalate, never drop (issue 10 item 7), against a real mosquitto and a real Modbus coil.

An alarm the center has not acked within ``escalate_after_s`` is re-sent as
before, raises ``alarm.unacknowledged`` once and switches the guard house's buzzer
(an ``[[outputs]]`` coil on the simulated module) until the center acks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.commands.signing import SIGNATURE_FIELD, sign
from gateway.config.root import GatewayConfig, load_config
from gateway.daemon import Gateway, running
from gateway.errors import ConfigError
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.modbus_module import SimulatedModule
from tests.fault_support import (
    PANIC,
    alarms,
    campus_config,
    module,
    puback_counts,
    row_states,
    stored_ids,
    wait_until,
    write_config,
)
from tests.helpers import TEST_KEY, assert_valid_event, signed_center

pytestmark = pytest.mark.timeout(120)

BUZZER_CHANNEL = 3
BUZZER = f"""
[[outputs]]
id = "guard-buzzer"
name = "门卫室蜂鸣器"
location = "门卫室"
kind = "relay"
module = "io"
channel = {BUZZER_CHANNEL}
"""
ESCALATE = 'escalate_after_s = {after}\nescalate_output = "guard-buzzer"'


@contextlib.asynccontextmanager
async def _deaf_site(
    tmp_path: Path,
) -> AsyncIterator[tuple[MosquittoBroker, SimulatedModule, CenterConsole, GatewayConfig]]:
    """A broker, a module with the buzzer, a center that never acks, and the gateway's
    config (ack timeout 0.5 s, escalation after 2 s)."""
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
    ):
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=0.5,
            outbox_extra=ESCALATE.format(after=2), extra=BUZZER,
        )  # fmt: skip
        yield broker, sim, deaf, cfg


@contextlib.asynccontextmanager
async def _deaf_campus(
    tmp_path: Path, outbox: Path
) -> AsyncIterator[tuple[MosquittoBroker, SimulatedModule, CenterConsole, Gateway]]:
    """:func:`_deaf_site` with the gateway running."""
    async with (
        _deaf_site(tmp_path) as (broker, sim, deaf, cfg),
        running(cfg, outbox_path=outbox) as gateway,
    ):
        yield broker, sim, deaf, gateway


async def _signed_ack(broker: MosquittoBroker, gateway: Gateway, body: dict[str, Any]) -> None:
    """Publish a center's signed ack (``docs/center-protocol.md`` "Acks") with
    Debian's ``mosquitto_pub``."""
    topic = f"{gateway.cfg.topic_prefix}/ack"
    body = {**body, "center": "test"}
    body[SIGNATURE_FIELD] = sign(TEST_KEY, topic, body)
    pub = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic,
        "-m", json.dumps(body),
    )  # fmt: skip
    assert await pub.wait() == 0


def _states(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [e for e in alarms(center, "alarm.unacknowledged") if e["data"]["state"] == state]


async def test_an_unacked_alarm_escalates_once_sounds_the_buzzer_and_is_still_resent(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with _deaf_campus(tmp_path, outbox) as (broker, sim, deaf, gateway):
        assert gateway.escalation is not None
        sim.press(PANIC[0])
        await deaf.wait_for(lambda: bool(alarms(deaf, "alarm.panic")), 10)
        panic = alarms(deaf, "alarm.panic")[0]
        assert not sim.output(BUZZER_CHANNEL)
        await deaf.wait_for(lambda: bool(_states(deaf, "active")), 10)
        [raised] = _states(deaf, "active")
        assert raised["data"]["for_event"] == panic["id"]
        assert raised["priority"] == 3 and raised["cidcode"] == "354"
        assert_valid_event(raised)
        await wait_until(lambda: sim.output(BUZZER_CHANNEL), 5, "the buzzer sounds")
        # Never dropped: re-sent as before, and raised once however long it waits.
        seen = deaf.duplicates
        await deaf.wait_for(lambda: deaf.duplicates >= seen + 8, 15)
        assert len(_states(deaf, "active")) == 1
        assert gateway.escalation.figures() == {"escalated_alarms": 1, "escalations": 1}
        assert [acked for _, i, _, acked in row_states(outbox) if i == panic["id"]] == [False]
        async with signed_center(broker.host, broker.port):  # a center that acks
            await deaf.wait_for(lambda: bool(_states(deaf, "cleared")), 10)
        [cleared] = _states(deaf, "cleared")
        assert cleared["data"]["incident"] == raised["data"]["incident"]
        await wait_until(lambda: not sim.output(BUZZER_CHANNEL), 5, "the buzzer stops")
        assert gateway.escalation.escalated == {}


def test_an_escalation_output_that_does_not_exist_is_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path, broker_port=1883, module_port=502, outbox_extra=ESCALATE.format(after=60)
    )
    with pytest.raises(ConfigError, match="escalate_output") as caught:
        load_config(path)
    assert "guard-buzzer" in str(caught.value)


async def test_while_commits_fail_unacked_panics_are_resent_and_escalate(tmp_path: Path) -> None:
    """A write lock held by another process: a panic stored before it and PUBACKed after
    (the broker frozen meanwhile), and a panic held in memory, are both re-sent every
    ``ack_timeout`` and both escalate, all while every commit fails (reviews of
    2026-12-04: the first was sent once; the second never escalated, the escalation
    counting only committed alarms)."""
    outbox = tmp_path / "outbox.sqlite"
    async with _deaf_campus(tmp_path, outbox) as (broker, sim, deaf, gateway):
        assert gateway.outbox is not None and gateway.uplink is not None
        box, uplink = gateway.outbox, gateway.uplink
        await deaf.wait_for(lambda: bool(deaf.heartbeats), 10)
        await wait_until(lambda: uplink.stats.inflight == 0, 10, "nothing in flight")
        broker.freeze()
        try:
            sim.press(PANIC[0])
            await wait_until(lambda: stored_ids(outbox, "alarm.panic"), 10, "stored")
            [first] = stored_ids(outbox, "alarm.panic")

            async def in_flight() -> bool:
                due = {row.id for row in await box.pending(100)}
                return uplink.stats.inflight >= 1 and first not in due

            await wait_until(in_flight, 10, "the panic published, its PUBACK held")
            blocker = sqlite3.connect(outbox, timeout=5, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # every commit fails from here
        finally:
            broker.thaw()
        try:
            sim.press(PANIC[1])
            await deaf.wait_for(lambda: len(alarms(deaf, "alarm.panic")) == 2, 10)
            panics = [p["id"] for p in alarms(deaf, "alarm.panic")]
            assert panics[0] == first
            await deaf.wait_for(lambda: all(deaf.copies[i] >= 3 for i in panics), 15)
            await deaf.wait_for(
                lambda: {e["data"]["for_event"] for e in _states(deaf, "active")} == set(panics),
                15,
            )
            await wait_until(lambda: sim.output(BUZZER_CHANNEL), 5, "the buzzer sounds")
            assert await box.unacked_count() >= 2  # both, and the escalations' own
            assert box.last_error is not None and puback_counts(outbox)[first] == 0
            # The center acks, its marks still cannot commit: the escalations clear and
            # the buzzer stops now, and a panic it acks at once never escalates (a
            # review of 2026-12-05: both waited for the ack's commit).
            async with signed_center(broker.host, broker.port):  # a center that acks
                await deaf.wait_for(lambda: len(_states(deaf, "cleared")) == 2, 15)
                await wait_until(lambda: not sim.output(BUZZER_CHANNEL), 5, "the buzzer stops")

                async def all_acked() -> bool:
                    return await box.unacked_count() == 0

                await wait_until(all_acked, 5, "every event acked, in memory")
                sim.press(PANIC[2])
                await deaf.wait_for(lambda: len(alarms(deaf, "alarm.panic")) == 3, 10)
                await asyncio.sleep(3)  # past escalate_after_s (2 s): an absence
                assert len(_states(deaf, "active")) == 2 and not sim.output(BUZZER_CHANNEL)
                assert box.last_error is not None  # all of it while commits fail
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


async def test_a_stream_ack_clears_an_earlier_process_escalation_while_commits_fail(
    tmp_path: Path,
) -> None:
    """A panic of the previous process escalates after a clean restart; the center acks
    it by stream while another process holds the write lock: the escalation clears
    and the buzzer stops at once, not when the lock goes (a review of 2026-12-05:
    only an ack by id did)."""
    outbox = tmp_path / "outbox.sqlite"
    async with _deaf_site(tmp_path) as (broker, sim, deaf, cfg):
        async with running(cfg, outbox_path=outbox):
            sim.press(PANIC[0])
            await deaf.wait_for(lambda: bool(alarms(deaf, "alarm.panic")), 10)
        [panic] = alarms(deaf, "alarm.panic")
        async with running(cfg, outbox_path=outbox) as gateway:
            assert gateway.escalation is not None and gateway.outbox is not None
            escalation = gateway.escalation
            await wait_until(lambda: panic["id"] in escalation.escalated, 10, "escalated")
            await wait_until(lambda: sim.output(BUZZER_CHANNEL), 5, "the buzzer sounds")
            blocker = sqlite3.connect(outbox, timeout=5, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # every commit fails from here
            try:
                await wait_until(lambda: gateway.outbox.last_error, 5, "a commit failed")
                body = {"stream": panic["stream"], "up_to_seq": panic["seq"]}
                await _signed_ack(broker, gateway, body)
                await wait_until(lambda: not escalation.escalated, 5, "cleared")
                await wait_until(lambda: not sim.output(BUZZER_CHANNEL), 5, "the buzzer stops")
                assert gateway.outbox.last_error is not None  # still failing
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
