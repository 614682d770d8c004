"""Arming, bypasses and latched alarms across SIGKILLs (GB 50394 commentary: after power
returns the previous arming state is restored).

The daemon runs as its own process (``campus-gateway run``) on a TOML file and is
SIGKILLed — a power cut, or the watchdog — right after each step of a scripted
sequence, then started again on the same files: each kill lands at a different
moment (after an ``arm`` result, after a ``bypass`` result, right after a panic
alarm reached the center), and everything done before it must hold after it.
A simulated Modbus module on a real port, real mosquitto, signed commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.modbus_profiles import PROFILES
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.center_commands import CommandSender
from simulators.modbus_module import SimulatedModule
from tests.helpers import TEST_KEY, assert_valid_event, signed_center
from tests.power_cut_support import Daemon, module_toml, retry, site_toml, write_toml

pytestmark = pytest.mark.timeout(180)


class Site:
    """The running test site: module, center, signed commands, the daemon process."""

    def __init__(
        self, module: SimulatedModule, center: CenterConsole, sender: CommandSender, daemon: Daemon
    ) -> None:
        self.module, self.center, self.sender, self.daemon = module, center, sender, daemon

    def of(self, type_: str, subject: str, state: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.center.events
            if e["type"] == type_ and e["subject"] == subject
            and state in (None, e["data"].get("state"))
        ]  # fmt: skip

    async def ok(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A signed command that must succeed (retried while the daemon is not subscribed)."""
        result = await retry(
            lambda: self.sender.send(name, params, timeout_s=2.0), (TimeoutError,), 30, self.daemon
        )
        assert result["status"] == "ok", result
        data: dict[str, Any] = result["data"]
        return data

    async def restart_after_sigkill(self) -> dict[str, Any]:
        """SIGKILL now, start again; returns ``get_state`` of the new process."""
        await self.daemon.kill()
        await self.daemon.start()
        return await self.ok("get_state")


async def test_arm_bypass_and_a_latched_panic_hold_across_a_sigkill_after_each(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with SimulatedModule(PROFILES["generic"]) as module:
        config = write_toml(
            tmp_path,
            site_toml(tmp_path, mosquitto.port) + module_toml(module.port, perim="disarmed"),
        )
        async with (
            signed_center(mosquitto.host, mosquitto.port) as center,
            CommandSender(
                mosquitto.host, mosquitto.port, "cut-school", "gw1", key=TEST_KEY
            ) as sender,
            Daemon(config, tmp_path) as daemon,
        ):
            site = Site(module, center, sender, daemon)
            await daemon.start()
            assert (await site.ok("get_state"))["areas"]["PERIM"]["armed"] is False

            await site.ok("arm", {"area": "PERIM"})  # 1. killed right after the result
            state = await site.restart_after_sigkill()
            assert state["areas"]["PERIM"]["armed"] is True

            await site.ok("bypass", {"zone": "Z02", "duration_s": 3600})  # 2.
            state = await site.restart_after_sigkill()
            assert state["areas"]["PERIM"]["armed"] is True
            assert state["zones"]["Z02"]["bypassed"]

            module.press(10)  # 3. the gatehouse panic button, killed as its alarm arrives
            await center.wait_for(lambda: site.of("alarm.panic", "P10", "active") != [], 10)
            await daemon.kill()
            module.release(10)  # released while the gateway is off: the alarm stays latched
            await daemon.start()
            state = await site.ok("get_state")
            (active,) = site.of("alarm.panic", "P10", "active")
            assert state["zones"]["P10"]["latched"] is True
            assert state["zones"]["P10"]["incident"] == active["id"]
            assert state["areas"]["PERIM"]["armed"] and state["zones"]["Z02"]["bypassed"]

            # and they act: Z02 bypassed, Z01 armed, the panic cleared only by a reset
            module.set_input(2, closed=True)
            module.set_input(1, closed=True)
            await center.wait_for(lambda: site.of("alarm.perimeter", "Z01", "active") != [], 10)
            assert (await site.ok("reset", {"zone": "P10"}))["cleared"] == ["P10"]
            await center.wait_for(lambda: site.of("alarm.panic", "P10", "cleared") != [], 10)
            (cleared,) = site.of("alarm.panic", "P10", "cleared")
            assert cleared["data"]["incident"] == active["id"]
            assert site.of("alarm.perimeter", "Z02") == []
            assert len(site.of("alarm.panic", "P10", "active")) == 1
            assert daemon.starts == 4
    for event in center.events:
        assert_valid_event(event)
