"""A broker that flaps (2 s up, 2 s down): every up-window is used, a panic pressed
while it is down arrives (issue 11: the back-off grew toward 30 s and missed them).

Real parts: Debian's mosquitto stopped and started, the pymodbus simulator, the
gateway in-process with the product's own reconnect settings (0.5 s, 30 s)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tenacity import AsyncRetrying, RetryCallState

from gateway.daemon import running
from gateway.delivery.reconnect import ReconnectWait
from simulators.broker import MosquittoBroker
from tests.fault_support import PANIC, alarms, campus_config, module, wait_until
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(120)

UP_S = DOWN_S = 2.0
FLAPS = 5


async def test_a_flapping_broker_s_up_windows_are_all_used_and_a_panic_arrives(
    tmp_path: Path,
) -> None:
    async with (
        MosquittoBroker(tmp_path / "broker", persistence=True) as broker,
        module() as sim,
        signed_center(broker.host, broker.port, identifier="c", persistent=True) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=broker.port, module_port=sim.port)
        defaults = {"reconnect_min": 0.5, "reconnect_max": 30.0}  # BrokerConfig's defaults
        cfg = cfg.model_copy(update={"broker": cfg.broker.model_copy(update=defaults)})
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            uplink = gateway.uplink
            assert uplink is not None
            await wait_until(lambda: uplink.stats.connects >= 1, 10, "first connection")
            used: list[bool] = []
            for flap in range(FLAPS):
                await broker.stop()
                if flap == FLAPS // 2:
                    sim.set_input(PANIC[0], closed=True)  # pressed while the broker is down
                await asyncio.sleep(DOWN_S)  # the fault's schedule, not a wait for a result
                before = uplink.stats.connects
                await broker.start()
                await asyncio.sleep(UP_S)
                used.append(uplink.stats.connects > before)
            await wait_until(
                lambda: any(e["data"]["state"] == "active" for e in alarms(center, "alarm.panic")),
                10,
                "the panic pressed during the flaps reaches the center",
            )
    assert used == [True] * FLAPS, f"up-windows the gateway connected in: {used}"


def _attempt(number: int) -> RetryCallState:
    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = number
    return state


def test_after_a_lost_connection_waits_stay_short_for_reconnect_max_seconds() -> None:
    """The rule itself, attempt by attempt: however many attempts failed, a broker
    seen up less than ``reconnect_max`` ago is retried within ``reconnect_min``."""
    now = [1000.0]
    wait = ReconnectWait(0.5, 30.0, monotonic=lambda: now[0])
    cold = [wait(_attempt(n)) for n in range(1, 12) for _ in range(20)]
    assert max(cold) > 4.0  # never connected: the back-off grows (up to 30 s)
    wait.connection_lost()
    for seconds_later in (0.0, 10.0, 29.9):
        now[0] = 1000.0 + seconds_later
        waits = [wait(_attempt(n)) for n in range(1, 60) for _ in range(5)]
        assert all(0.25 <= w <= 0.5 for w in waits), (seconds_later, max(waits))
    now[0] = 1000.0 + 30.0
    assert max(wait(_attempt(10)) for _ in range(50)) > 4.0  # a long outage backs off
