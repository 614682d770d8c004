"""An alarm's kept record and its event are never committed apart (issue 14): SIGKILL at
many moments of a burst, then compare what the outbox file holds.

The daemon runs as its own process on a simulated 16-input module (real Modbus/TCP)
with latching zones (two panic buttons, a latched intrusion zone) and non-latching
ones (perimeter, intrusion, technical). A seeded burst closes and opens several
inputs at once every few tens of milliseconds and sends signed ``reset`` commands for
released latched zones; the daemon is SIGKILLed at a delay drawn from the same seed.
With the daemon dead, the outbox is read with sqlite3: for every zone, a kept
``alarm`` record (``gateway/delivery/outbox/kept.py``, written by
``gateway/alarm/zones.py`` with the ``active`` event and deleted with its
``cleared``) exists exactly when the zone's last committed alarm event is ``active``,
and it names that event (``incident`` = its id, ``type`` = its type). Then, every
input at rest, the daemon starts again on the same files: a latched zone is latched
with exactly the committed incident, a non-latched zone open at the kill is cleared
with that incident, and nothing else comes back. The next burst runs on that
process, so each kill point also tests the start after the one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulators.broker import MosquittoBroker
from tests.helpers import eventually
from tests.power_cut_support import MODULE, Site, module_site

pytestmark = pytest.mark.timeout(300)

SEED = 14
KILLS = 12
"""Kill points: delays after a burst's start, drawn from ``SEED``."""

AREA = """
[[areas]]
id = "HALL"
name = "教学楼"
initial = "armed"
"""

# id: (name, type, input, area, latch); panic zones always latch
PLAN: dict[str, tuple[str, str, int, str | None, bool]] = {
    "P10": ("门卫室一键报警", "panic", 10, None, True),
    "P11": ("校长室一键报警", "panic", 11, None, True),
    "Z03": ("财务室红外", "intrusion", 3, "HALL", True),
    "Z01": ("南围墙红外对射", "perimeter", 1, "HALL", False),
    "Z02": ("东围墙红外对射", "perimeter", 2, "HALL", False),
    "Z04": ("实验室门磁", "intrusion", 4, None, False),
    "T05": ("机房水浸", "technical", 5, None, False),
}
INPUTS = {zone: plan[2] for zone, plan in PLAN.items()}
TYPES = {zone: f"alarm.{plan[1]}" for zone, plan in PLAN.items()}
LATCHED = frozenset(zone for zone, plan in PLAN.items() if plan[4])
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a hot rollback journal (SQLite file format §4)


def devices(module_port: int) -> str:
    """The module ``io``, area ``HALL`` (armed) and the zones of :data:`PLAN`."""
    text = MODULE.format(module_port=module_port) + AREA
    for zone, (name, type_, channel, area, latch) in PLAN.items():
        text += f'\n[[zones]]\nid = "{zone}"\nname = "{name}"\ntype = "{type_}"\n'
        text += f'module = "io"\ninput = {channel}\n'
        text += f'area = "{area}"\n' if area else ""
        text += "latch = true\n" if latch and type_ != "panic" else ""
    return text


@dataclass(frozen=True)
class ZoneEvent:
    """One committed alarm event of a zone (a row of ``messages``)."""

    n: int
    id: str
    type: str
    zone: str
    state: str
    incident: str | None


@dataclass
class Committed:
    """What an outbox file holds of the zones' alarms.

    Attributes:
        events: every zone alarm event, in row order (``n``).
        kept: the kept ``alarm`` records, key (``<zone>/alarm``) → JSON value.
        last_n: the highest row key in the file.
        hot_journal: a journal was left beside the file (killed within a commit).
    """

    events: list[ZoneEvent]
    kept: dict[str, dict[str, Any]]
    last_n: int
    hot_journal: bool = False
    open: dict[str, str | None] = field(default_factory=dict)
    """zone → id of its ``active`` event when that is its last committed one, else None."""

    def of(self, zone: str) -> list[ZoneEvent]:
        return [e for e in self.events if e.zone == zone]


def read_outbox(db: sqlite3.Connection) -> Committed:
    """The zones' alarm events and kept records on ``db``."""
    events = []
    for n, event_id, type_, payload in db.execute(
        "SELECT n, id, type, payload FROM messages WHERE seq IS NOT NULL ORDER BY n"
    ):
        body = json.loads(payload)
        zone = body["subject"]
        if TYPES.get(zone) == type_:
            state, incident = body["data"]["state"], body["data"].get("incident")
            events.append(ZoneEvent(n, event_id, type_, zone, state, incident))
    kept = {
        str(key): json.loads(value)
        for key, value in db.execute("SELECT key, value FROM kept WHERE kind = 'alarm'")
    }
    (last_n,) = db.execute("SELECT coalesce(max(n), 0) FROM messages").fetchone()
    committed = Committed(events, kept, int(last_n))
    for zone in INPUTS:
        mine = committed.of(zone)
        last = mine[-1] if mine else None
        committed.open[zone] = last.id if last is not None and last.state == "active" else None
    return committed


def read_after_kill(outbox: Path, copy_dir: Path) -> Committed:
    """What the outbox file of a killed daemon holds, the daemon's file left untouched.

    A kill within a commit leaves a hot journal, which only a connection that may
    write can roll back (a read-only one gets SQLITE_READONLY_ROLLBACK). So the file
    and its journal are copied and the copy is read, as the next start will read the
    original after its own rollback.
    """
    if copy_dir.exists():
        shutil.rmtree(copy_dir)
    copy_dir.mkdir()
    journal = outbox.with_name(outbox.name + "-journal")
    shutil.copy2(outbox, copy_dir / outbox.name)
    # The journal persists between commits (``gateway.runtime.durable``); it is hot
    # only while its header is written (zeroed once a commit is done).
    hot = journal.exists() and journal.read_bytes()[:8] == _JOURNAL_MAGIC
    if journal.exists():
        shutil.copy2(journal, copy_dir / journal.name)
    with contextlib.closing(sqlite3.connect(copy_dir / outbox.name)) as db:
        committed = read_outbox(db)
    committed.hot_journal = hot
    return committed


def read_live(outbox: Path) -> Committed:
    """What the outbox file of the running daemon holds (a read-only connection)."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)) as db:
        return read_outbox(db)


def has_audit(outbox: Path, correlation_id: str) -> bool:
    """The ``command.result`` audit event of ``correlation_id`` is committed."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT payload FROM messages WHERE type = 'command.result'").fetchall()
    return any(json.loads(p)["data"]["correlation_id"] == correlation_id for (p,) in rows)


def disagreements(committed: Committed) -> list[str]:
    """Where kept records and events were committed apart (empty when they agree).

    Per zone: a kept record exactly when the last alarm event is ``active``, naming it
    (``incident`` its id, ``type`` its type); each ``cleared`` ends the ``active``
    before it (so no end was committed without its record's deletion, nor twice).
    """
    found = []
    for zone in INPUTS:
        record = committed.kept.get(f"{zone}/alarm")
        open_id = committed.open[zone]
        if open_id is None and record is not None:
            found.append(f"{zone}: kept {record} but its last alarm event is not active")
        elif open_id is not None and record is None:
            found.append(f"{zone}: active event {open_id} committed without its kept record")
        elif record is not None and (
            record.get("incident") != open_id or record.get("type") != TYPES[zone]
        ):
            found.append(f"{zone}: kept {record} does not name the active event {open_id}")
        active: str | None = None
        for event in committed.of(zone):
            if event.state == "active" and active is None and event.incident == event.id:
                active = event.id
            elif event.state == "cleared" and active is not None and event.incident == active:
                active = None
            else:
                found.append(f"{zone}: {event} does not follow the one before it")
    strays = set(committed.kept) - {f"{zone}/alarm" for zone in INPUTS}
    found += [f"kept {key} names no zone's alarm" for key in sorted(strays)]
    return found


async def burst(site: Site, rng: random.Random, stop: asyncio.Event) -> None:
    """Until ``stop``: every 0-50 ms, toggle one to four inputs at once; now and then a
    signed ``reset`` of a released latched zone (its result is not awaited). A step is
    never cut short (a publish cancelled halfway would leave the sender waiting)."""
    zones = sorted(INPUTS)
    while not stop.is_set():
        for zone in rng.sample(zones, rng.randint(1, 4)):
            channel = INPUTS[zone]
            site.module.set_input(channel, not site.module.inputs[channel])
        released = [z for z in sorted(LATCHED) if not site.module.inputs[INPUTS[z]]]
        if released and rng.random() < 0.3:
            await site.sender.publish("reset", {"zone": rng.choice(released)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.0, 0.05))


async def settle(site: Site, committed: Committed, describe: str) -> Committed:
    """With every input at rest, wait until the new process has read all zones and ended
    every non-latched alarm the kill left open; then check its state against
    ``committed`` (what the file held at the kill). Returns what the file holds then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        result = await site.result("get_state")
        assert result["status"] == "ok", result
        zones = result["data"]["zones"]
        if all(zones[z]["violated"] is False for z in INPUTS) and not any(
            zones[z]["alarm"] for z in INPUTS if z not in LATCHED
        ):
            break
        assert loop.time() < deadline, f"{describe}: never settled after the restart: {zones}"
        await asyncio.sleep(0.05)  # the poll's pace; the deadline above bounds the wait
    # The audit event of that get_state was held after every event the rules made
    # before it answered; once it is committed, so are they.
    await eventually(lambda: has_audit(site.outbox, result["correlation_id"]), 10)
    now = read_live(site.outbox)
    since = [e for e in now.events if e.n > committed.last_n]
    expected = sorted(
        (z, "cleared", committed.open[z])
        for z in INPUTS
        if z not in LATCHED and committed.open[z] is not None
    )
    context = f"{describe}\ncommitted at the kill: {committed.open}\nafter the restart: {since}"
    assert sorted((e.zone, e.state, e.incident) for e in since) == expected, context
    for zone in INPUTS:
        want = committed.open[zone] if zone in LATCHED else None
        got = zones[zone]["incident"] if zones[zone]["alarm"] else None
        assert got == want, f"{context}\n{zone} reported {zones[zone]}, committed {want}"
    assert disagreements(now) == [], context
    return now


async def test_a_sigkill_anywhere_in_a_burst_never_separates_an_alarm_from_its_record(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    kills = [round(rng.uniform(0.02, 1.2), 3) for _ in range(KILLS)]
    seen = {"open latched": 0, "open non-latched": 0, "cleared": 0, "hot journal": 0}
    async with module_site(mosquitto, tmp_path, devices) as site:
        await site.daemon.start()
        await site.ok("get_state")
        committed = await settle(site, read_live(site.outbox), "first start")
        for cycle, delay in enumerate(kills):
            describe = f"seed {SEED}, kill {cycle} of {kills}: {delay} s into the burst"
            stop = asyncio.Event()
            task = asyncio.create_task(burst(site, random.Random(f"{SEED}/{cycle}"), stop))
            await asyncio.sleep(delay)  # the moment of the cut is the test's parameter
            await site.daemon.kill()
            stop.set()
            await task
            at_kill = read_after_kill(site.outbox, tmp_path / "at-kill")
            events = [e for e in at_kill.events if e.n > committed.last_n]
            assert disagreements(at_kill) == [], (
                f"{describe}\nkept: {at_kill.kept}\nevents of this burst: {events}"
            )
            seen["open latched"] += sum(1 for z in LATCHED if at_kill.open[z])
            seen["open non-latched"] += sum(
                1 for z in INPUTS if z not in LATCHED and at_kill.open[z]
            )
            seen["cleared"] += sum(1 for e in events if e.state == "cleared")
            seen["hot journal"] += at_kill.hot_journal
            for channel in INPUTS.values():
                site.module.release(channel)
            await site.daemon.start()
            committed = await settle(site, at_kill, describe)
    print(f"seed {SEED}, kills at {kills}: {seen}")
    # The bursts must have left something to compare: alarms open at kills of both
    # kinds, and ends committed.
    assert seen["open latched"] and seen["open non-latched"] and seen["cleared"], seen
