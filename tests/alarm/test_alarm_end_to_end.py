"""The alarm system end to end: the demo campus's simulated modules → the daemon → a real
mosquitto → the center console, and signed commands back from the center.

GB 50394 rules (§5.2.3 panic, §5.2.4 tamper and line faults, arming restored after
a restart), the command checks over MQTT, and a siren that sounds with the broker
down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.root import GatewayConfig
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.center_commands import CommandSender
from tests.campus_helpers import KEY, Campus, demo_config_on, demo_gateway, simulated_campus
from tests.fault_support import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def campus(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Campus]:
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as c,
    ):
        yield c


async def test_disarmed_panic_alarms_and_stays_latched_until_the_reset_command(
    campus: Campus,
) -> None:
    """GB 50394 §5.2.3, over MQTT: Z02 (principal's office) is in area TEACH."""
    await campus.ok("disarm", {"area": "TEACH"})
    await campus.wait("area.disarmed", "TEACH", "instant")
    campus.modules["admin-io"].set_input(2, closed=False)  # Z06 while disarmed: nothing
    campus.modules["admin-io"].press(0)
    active = await campus.wait("alarm.panic", "Z02", "active", within=2.0)
    campus.modules["admin-io"].release(0)
    await asyncio.sleep(0.6)
    assert [e["data"]["state"] for e in campus.of("alarm.panic", "Z02")] == ["active"]
    result = await campus.ok("reset", {"zone": "Z02"})
    assert result["data"]["cleared"] == ["Z02"]
    cleared = await campus.wait("alarm.panic", "Z02", "cleared")
    assert cleared["data"]["incident"] == active["id"] and cleared["data"]["reset"] is True
    assert campus.of("alarm.intrusion", "Z06") == []


async def test_tamper_and_line_faults_alarm_while_disarmed(campus: Campus) -> None:
    """GB 50394 §5.2.4: tamper, a cut EOL loop and a cut paired cable, area disarmed."""
    await campus.ok("disarm", {"area": "TEACH"})
    admin, finance = campus.modules["admin-io"], campus.modules["finance-ai"]
    admin.set_input(15, closed=False)  # Z09: the admin module's box opened
    finance.set_analog(0, 65000)  # Z10: EOL loop cut
    admin.set_input(6, closed=False)  # Z11: the archive detector's cover opened
    tamper = await campus.wait("alarm.tamper", "Z09", "active")
    cut = await campus.wait("fault.line", "Z10", "active")
    cover = await campus.wait("alarm.tamper", "Z11", "active")
    admin.set_input(5, closed=False)  # Z11: both loops open: its cable is cut
    cable = await campus.wait("fault.line", "Z11", "active")
    assert (tamper["priority"], tamper["siacode"]) == (2, "TA")
    assert (cut["priority"], cut["cidcode"], cut["data"]["condition"]) == (3, "380", "cut")
    assert cut["data"]["value"] == 65000
    assert cover["data"]["condition"] == "tamper" and cable["data"]["condition"] == "cut"
    assert campus.of("alarm.intrusion") == []  # disarmed: faults, no intrusion alarms


async def test_arming_state_survives_a_daemon_restart(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    outbox = tmp_path / "o.sqlite"
    async with simulated_campus() as modules:
        async with demo_gateway(mosquitto, outbox, modules) as first:
            await first.ok("disarm", {"area": "TEACH"})
            await first.ok("bypass", {"zone": "Z04", "duration_s": 3600})
            await first.wait("zone.bypassed", "Z04", "active")
        async with demo_gateway(mosquitto, outbox, modules) as second:
            state = (await second.ok("get_state"))["data"]
            assert state["areas"]["TEACH"]["armed"] is False
            assert state["areas"]["TEACH"]["by"] == "duty-officer"
            assert state["areas"]["PERIM"]["armed"] is True
            assert state["zones"]["Z04"]["bypassed"].endswith("Z")
            modules["admin-io"].set_input(2, closed=False)  # Z06 while still disarmed
            await asyncio.sleep(0.5)
            assert second.of("alarm.intrusion") == []
            refused = await second.commands.send("arm", {"area": "TEACH"})
            assert refused["status"] == "error" and "Z06" in refused["error"]
            modules["admin-io"].set_input(2, closed=True)
            await asyncio.sleep(0.3)
            await second.ok("arm", {"area": "TEACH"})
            modules["admin-io"].set_input(2, closed=False)
            await second.wait("alarm.intrusion", "Z06", "active")


async def test_bad_signature_expired_and_retained_commands_are_refused_a_good_one_acts(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        CommandSender(mosquitto.host, mosquitto.port, "demo-school", "gw1", key=KEY) as early,
    ):
        # retained: published before the gateway subscribes, so the broker replays it
        retained_id, retained = await early.publish("disarm", {"area": "TEACH"}, retain=True)
        async with demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus:
            refused_retained = await asyncio.wait_for(retained, 10)
            await early.clear_retained("disarm")
            bad = await campus.commands.send("disarm", {"area": "TEACH"}, key=b"guessed-key")
            old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            expired = await campus.commands.send("disarm", {"area": "TEACH"}, issued_at=old)
            assert campus.gateway.alarm is not None
            assert campus.gateway.alarm.areas.armed("TEACH")  # none of them acted
            good_id, good_future = await campus.commands.publish("disarm", {"area": "TEACH"})
            good = await asyncio.wait_for(good_future, 10)
            await campus.wait("area.disarmed", "TEACH", "instant")
            # retained, bad signature, expired, good (the empty retained-clear is ignored)
            await campus.center.wait_for(lambda: len(campus.of("command.result")) >= 4, 5)
            audits = {e["data"]["correlation_id"]: e["data"] for e in campus.of("command.result")}
    assert refused_retained["correlation_id"] == retained_id
    assert (
        refused_retained["status"] == "error" and refused_retained["data"]["reason"] == "retained"
    )
    assert (bad["status"], bad["data"]["reason"]) == ("error", "bad_signature")
    assert (expired["status"], expired["data"]["reason"]) == ("error", "expired")
    assert good["correlation_id"] == good_id and good["status"] == "ok"
    assert good["data"]["armed"] is False and good["data"]["changed"] is True
    assert audits[retained_id]["reason"] == "retained" and audits[good_id]["status"] == "ok"
    assert {a["reason"] for a in audits.values() if a["status"] == "error"} >= {
        "retained",
        "bad_signature",
        "expired",
    }


def _siren_config(cfg: GatewayConfig, duration_s: float) -> GatewayConfig:
    outputs = [o.model_copy(update={"duration_s": duration_s}) for o in cfg.outputs]
    return cfg.model_copy(update={"outputs": outputs})


async def test_siren_coil_sounds_for_its_duration_while_the_broker_is_down(
    tmp_path: Path,
) -> None:
    broker = MosquittoBroker(tmp_path / "broker")  # configured, never started
    async with simulated_campus() as modules:
        cfg = _siren_config(demo_config_on(broker.port, modules), 1.5)
        gate = modules["gate-io"]
        async with running(cfg, outbox_path=tmp_path / "o.sqlite") as gateway:
            await wait_until(  # every module read once: a change now is a transition
                lambda: all(None not in p.inputs for p in gateway.pollers.values()), 10, "read"
            )
            loop = asyncio.get_running_loop()
            gate.set_input(1, closed=False)  # Z03: the south perimeter beam is broken
            broken = loop.time()
            on_at = off_at = None
            while loop.time() - broken < 4.0 and off_at is None:
                if on_at is None and gate.output(0):
                    on_at = loop.time()
                elif on_at is not None and not gate.output(0):
                    off_at = loop.time()
                await asyncio.sleep(0.01)
            assert gateway.uplink is not None and gateway.uplink.stats.connects == 0
            assert gateway.outbox is not None and await gateway.outbox.pending_count() >= 3
    assert on_at is not None and off_at is not None, (on_at, off_at)
    assert on_at - broken < 1.0  # 100 ms debounce, one poll, one write
    assert 1.4 <= off_at - on_at <= 2.0, off_at - on_at
    assert gate.outputs == [False] * gate.profile.do_count
