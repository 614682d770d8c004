"""Escalate, never drop (issue 10 item 7), against a real mosquitto and a real Modbus coil.

An alarm the center has not acked within ``escalate_after_s`` is re-sent as
before, raises ``alarm.unacknowledged`` once and switches the guard house's buzzer
(an ``[[outputs]]`` coil on the simulated module) until the center acks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.root import load_config
from gateway.daemon import running
from gateway.errors import ConfigError
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from tests.fault_support import (
    PANIC,
    alarms,
    campus_config,
    module,
    row_states,
    wait_until,
    write_config,
)
from tests.helpers import assert_valid_event, signed_center

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


def _states(center: CenterConsole, state: str) -> list[dict[str, Any]]:
    return [e for e in alarms(center, "alarm.unacknowledged") if e["data"]["state"] == state]


async def test_an_unacked_alarm_escalates_once_sounds_the_buzzer_and_is_still_resent(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
    ):
        cfg = campus_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=0.5,
            outbox_extra=ESCALATE.format(after=2), extra=BUZZER,
        )  # fmt: skip
        async with running(cfg, outbox_path=outbox) as gateway:
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
