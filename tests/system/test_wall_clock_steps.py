"""The daemon's wall clock stepped −120 s and then +60 s (libfaketime on the daemon
only) during a contact burst: every transition is reported, a 3 s hold lasts 3 s,
nothing is re-published, and each step is reported as ``gateway.clock_step``.

Issue 11: after a −120 s step a zone in alarm could not restore for 56.6 s, a 3 s
hold lasted 62.6 s and violations meanwhile went unreported; after a +60 s step 11
alarms were re-published early (the outbox's re-send deadlines, now monotonic:
``gateway/delivery/outbox/due.py``; ``tests/delivery/test_clock_step.py`` tests them
with a center that does not ack); a re-publish shows here as ``center.duplicates``.

Real parts: Debian's mosquitto, the pymodbus simulator, the acking center, and the
gateway as its own process under Debian's libfaketime. The step is made by
rewriting ``FAKETIME_TIMESTAMP_FILE`` with an offset (read again at most once a
second: ``FAKETIME_CACHE_DURATION=1``; ``FAKETIME_NO_CACHE=1`` would read it at
every clock call); ``FAKETIME_DONT_FAKE_MONOTONIC=1`` leaves
``CLOCK_MONOTONIC`` alone, as an NTP step does. The test's own clock is never faked.
"""

from __future__ import annotations

import asyncio
import glob
import time
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.modbus_module import SimulatedModule
from tests.fault_support import INTRUSION, module, wait_until, write_config
from tests.helpers import signed_center
from tests.power_cut_support import Daemon

pytestmark = pytest.mark.timeout(150)

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
HOLD_S = 3.0
HELD = 0  # Z00: intrusion with a 3 s hold
BURST = [1, 2, 3, 4]  # Z01-Z04: intrusion, no hold
GAP_S = 0.5  # between two changes of the burst


def _events(center: CenterConsole, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
    return [e for e in center.events if e["type"] == type_ and subject in (None, e["subject"])]


async def _hold_cycle(sim: SimulatedModule, center: CenterConsole, step: tuple[Path, str]) -> float:
    """Violate Z00 briefly and step the clock during its hold.

    Returns:
        Seconds from the violation to the moment the center had the ``cleared``
        (the test's own monotonic clock; it includes delivery, so it is an upper
        bound of the hold, and the hold cannot end before the violation + 3 s).
    """
    before = len(_events(center, "alarm.intrusion", "Z00"))
    violated = time.monotonic()
    sim.set_input(HELD, closed=True)  # violated ...
    await asyncio.sleep(0.3)  # ... for 15 polls: the stimulus, not a wait for a result
    sim.set_input(HELD, closed=False)
    path, offset = step
    path.write_text(offset + "\n", encoding="utf-8")  # the step: within 1 s, in the hold
    await wait_until(
        lambda: len(_events(center, "alarm.intrusion", "Z00")) >= before + 2,
        60,
        f"Z00 active and cleared around the {offset} step",
    )
    held = time.monotonic() - violated
    active, cleared = _events(center, "alarm.intrusion", "Z00")[before : before + 2]
    assert (active["data"]["state"], cleared["data"]["state"]) == ("active", "cleared")
    assert cleared["data"]["incident"] == active["id"]
    return held


@pytest.mark.skipif(not LIBFAKETIME, reason="Debian's faketime (libfaketime) is not installed")
async def test_steps_of_the_wall_clock_change_no_hold_and_swallow_no_transition(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    offset = tmp_path / "faketime"
    offset.write_text("+0\n", encoding="utf-8")
    env = {
        "LD_PRELOAD": LIBFAKETIME[0],
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # libfaketime's pthread_cond_timedwait wrapper otherwise makes every timed wait
        # of a thread (the outbox's SQLite worker) cost ~35-50 ms
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
    }
    async with module() as sim:
        for channel in INTRUSION:
            sim.set_input(channel, closed=False)  # at rest
        config = write_config(tmp_path, broker_port=mosquitto.port, module_port=sim.port)
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace('id = "Z00"\n', f'id = "Z00"\nhold_ms = {int(HOLD_S * 1000)}\n', 1),
            encoding="utf-8",
        )
        async with (
            signed_center(mosquitto.host, mosquitto.port) as center,
            Daemon(config, tmp_path, env=env) as daemon,
        ):
            await daemon.start()
            await wait_until(
                lambda: _events(center, "device.online"), 30, "the daemon and module online"
            )

            made = 0
            stop = asyncio.Event()

            async def burst() -> None:
                """Four zones change every GAP_S until both steps are done; they end
                at rest (an even number of changes)."""
                nonlocal made
                closed = False
                while not stop.is_set() or closed:
                    closed = not closed
                    for channel in BURST:
                        sim.set_input(channel, closed=closed)
                    made += len(BURST)
                    await asyncio.sleep(GAP_S)

            burst_task = asyncio.create_task(burst())
            back = await _hold_cycle(sim, center, (offset, "-120"))
            forward = await _hold_cycle(sim, center, (offset, "-60"))
            stop.set()
            await burst_task
            expected = {f"Z{c:02d}": made // len(BURST) for c in BURST}
            await wait_until(
                lambda: {z: len(_events(center, "alarm.intrusion", z)) for z in expected}
                == expected,
                90,
                f"every burst transition reported ({expected})",
            )
    # the holds lasted their 3 s: not 123 s (−120) nor cut short at the step (+60);
    # the upper bound leaves room for a poll, the commit and the way to the center
    assert HOLD_S <= back <= HOLD_S + 3.0, back
    assert HOLD_S <= forward <= HOLD_S + 3.0, forward
    for zone in expected:
        states = [e["data"]["state"] for e in _events(center, "alarm.intrusion", zone)]
        assert states == ["active", "cleared"] * (len(states) // 2), (zone, states)
    steps = [e["data"]["step_s"] for e in _events(center, "gateway.clock_step")]
    assert len(steps) == 2 and abs(steps[0] + 120) < 1 and abs(steps[1] - 60) < 1, steps
    (step,) = [e for e in _events(center, "gateway.clock_step") if e["data"]["step_s"] > 0]
    assert (step["priority"], step["cidcode"], step["siacode"]) == (5, "625", "JT")
    # nothing published twice: the +60 s step made no ack deadline come due early
    assert center.duplicates == 0, center.summary()
