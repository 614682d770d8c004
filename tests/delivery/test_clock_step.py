"""A wall-clock step re-sends nothing early: ack deadlines run on the monotonic clock.

Issue 10 item 7, issue 11 item 4. The daemon runs as its own process under
libfaketime (Debian's ``libfaketime``), whose wall clock a test steps by writing
an offset to a file; ``FAKETIME_DONT_FAKE_MONOTONIC`` leaves CLOCK_MONOTONIC alone,
as an NTP step does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from tests.fault_support import (
    INTRUSION,
    PANIC,
    alarms,
    daemon_process,
    module,
    write_config,
)
from tests.helpers import signed_center

pytestmark = pytest.mark.timeout(120)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def faketime_env(offset_file: Path) -> dict[str, str]:
    """The environment that puts a process's wall clock at the offset in ``offset_file``."""
    if not LIBFAKETIME.exists():
        pytest.skip(f"{LIBFAKETIME} is missing (Debian package libfaketime)")
    offset_file.write_text("+0\n")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        # Re-read the offset at most once a second (re-reading it at every clock read
        # starves a daemon that reads the clock often).
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # Without this, libfaketime's pthread_cond_timedwait wrapper makes each timed wait
        # of a thread (aiosqlite's worker) cost ~35 ms: the heartbeat came every 2.5 s.
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
    }


def _ahead_s(event: dict[str, object]) -> float:
    """How far the event's gateway time is ahead of the real time, in seconds."""
    stamp = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    return (stamp - datetime.now(UTC)).total_seconds()


async def test_a_60_s_wall_step_neither_resends_nor_escalates_an_unacked_alarm_early(
    tmp_path: Path,
) -> None:
    offset = tmp_path / "faketime"
    env = faketime_env(offset)
    async with (
        MosquittoBroker(tmp_path / "broker") as broker,
        module() as sim,
        signed_center(broker.host, broker.port, ack=False) as deaf,
    ):
        config = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=30.0,
            heartbeat_s=0.5, outbox_extra="escalate_after_s = 30",
        )  # fmt: skip
        async with daemon_process(config, tmp_path / "daemon.log", env):
            await deaf.wait_for(lambda: bool(deaf.heartbeats), 30)
            sim.press(PANIC[0])
            await deaf.wait_for(lambda: bool(alarms(deaf, "alarm.panic")), 10)
            offset.write_text("+60\n")  # the wall clock jumps a minute ahead
            await deaf.wait_for(lambda: _ahead_s(deaf.heartbeats[-1]) > 50, 5)
            # A new row wakes the send loop: it looks for what is due again.
            sim.set_input(INTRUSION[0], closed=True)
            await deaf.wait_for(lambda: bool(alarms(deaf, "alarm.intrusion")), 10)
            beats = len(deaf.heartbeats)
            await deaf.wait_for(lambda: len(deaf.heartbeats) >= beats + 8, 10)  # 4 s more
            assert deaf.duplicates == 0, "an alarm was re-sent before its ack timeout"
            assert not alarms(deaf, "alarm.unacknowledged"), "escalated early"
            assert _ahead_s(alarms(deaf, "alarm.intrusion")[0]) > 50
