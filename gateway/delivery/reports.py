"""Events committed in the state store with the change they report, not yet in the outbox.

A rule that commits state before reporting it (the guard tour) commits the
events with the state, in one transaction of the state store
(:meth:`~gateway.runtime.state_store.StateStore.apply`), then appends them to the
outbox and forgets them. A power cut between those two commits leaves events
in the state store only: :func:`append_unreported` runs at start, before any
rule, and appends those the outbox does not hold yet (by id), so the change and
its report are never separated, and nothing is reported twice.

Open alarms go the other way: the zone engine keeps an alarm's record with its
``active`` event in the outbox (one transaction) and the state store's file
follows the outbox's commits (``StateStore.outbox_kept``). :func:`restore_alarms`
runs at start, before the alarm system, and brings the state store up to the
outbox: a latched panic stays latched and an ended alarm stays ended whatever
moment the power went.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from gateway.delivery.outbox import Outbox, spill
from gateway.delivery.outbox.spill import UNCHECKED
from gateway.errors import OutboxError
from gateway.runtime.state import ALARM, AlarmRecord
from gateway.runtime.state_store import StateStore

log = structlog.get_logger(__name__)

_KEEP_WAIT_S = 2.0
"""How long the start waits for a kept record's delete to commit (it stays queued)."""


async def append_unreported(store: StateStore, outbox: Outbox) -> int:
    """Append the state store's unreported events missing from ``outbox``; returns how many.

    Raises:
        OutboxError: the outbox refused one (the state store keeps them for the
            next start).
        StateError: one cannot be read back.
    """
    pending = store.unreported()
    if not pending:
        return 0
    known = await outbox.known_ids(e.id for e in pending)
    missing = [e for e in pending if e.id not in known]
    for event in missing:
        await outbox.append(event)
    await store.reported(e.id for e in pending)
    log.warning("state.reports_appended", appended=len(missing), already_stored=len(known))
    return len(missing)


async def restore_alarms(store: StateStore, outbox: Outbox) -> int:
    """Bring the state store's open alarms up to the records the outbox kept with their
    events; returns how many records changed.

    The state store's file lags the outbox (it is written once the outbox has
    committed), so after a cut it may lack a record (put back), hold an older one
    for the same condition (replaced), or still hold one whose ``cleared`` event
    the outbox committed (removed). A record the outbox neither keeps nor has seen
    end stays: an outbox that was quarantined or cannot be read, or one written
    before alarms were kept in it, knows nothing of it, and forgetting a latched
    alarm is the unsafe side.

    Raises:
        OutboxError: a kept record cannot be read.
        StateError: the state store is closed.
    """
    kept = dict(outbox.kept(ALARM))
    if outbox.kept(UNCHECKED):  # events came back from a spill since the last check
        await _forget_ended(outbox, kept)
    writes = [
        ALARM.write(key, record)
        for key, record in kept.items()
        if key not in store.alarms or store.alarms[key].incident != record.incident
    ]
    stale = {key: r.incident for key, r in store.alarms.items() if key not in kept}
    if stale:
        try:
            ended = await outbox.ended(stale.values())
        except OutboxError as exc:
            log.error("state.alarms_not_checked", keys=sorted(stale), error=str(exc))
            ended = set()
        writes += [ALARM.write(key, None) for key, incident in stale.items() if incident in ended]
    if writes:
        # Written behind: the outbox is the durable record they come from, and the
        # next start brings the file up to it again. So memory holds them even
        # while the file cannot be written or was not read (a latched panic stays
        # latched on a read-only disk).
        await store.apply(writes, wait=False)
        log.warning("state.alarms_restored", keys=[w.key for w in writes])
    return len(writes)


async def _forget_ended(outbox: Outbox, kept: dict[str, AlarmRecord]) -> None:
    """Take out of ``kept`` (and the outbox's kept table) the alarms whose ``cleared``
    event the outbox holds.

    A spill gives events back without the kept state committed with them: an alarm
    reset while the disk failed has its ``cleared`` event stored from the spill, and
    its record still in the kept table. Put back, it latched the zone again: the
    center had been told the reset succeeded, and a new press of the button made no
    event (review of 2026-12-05). The records go, with the spill's :data:`UNCHECKED`
    marker, in one commit; if the disk will not take that now, the delete stays
    queued and this start goes on, and a start that dies before it commits checks
    again (the marker is still there).
    """
    try:
        ended = await outbox.ended(r.incident for r in kept.values()) if kept else set()
    except OutboxError as exc:
        log.error("state.kept_alarms_not_checked", keys=sorted(kept), error=str(exc))
        return
    over = [key for key, record in kept.items() if record.incident in ended]
    for key in over:
        del kept[key]
    if over:
        log.warning("state.kept_alarms_ended", keys=over)
    writes = [ALARM.write(key, None) for key in over] + [UNCHECKED.write("unchecked", None)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_KEEP_WAIT_S):
            await outbox.keep(writes)


async def latches_in_spill(store: StateStore, outbox: Outbox) -> int:
    """Hold in the state store's memory (never its file) the open alarms kept with the
    events of spill files this start could not take back; returns how many changed.

    A panic spilled while another process held the outbox's lock, the gateway killed
    and started again under the lock: without this the button still pressed raised
    a second panic, and the first, taken back later, could never be reset (a review
    of 2026-12-06). Memory only: the file may hold an alarm only once its event is
    committed (a power cut empties a tmpfs spill, and a latch without its event
    would make the button still pressed raise nothing)."""
    changed = 0
    for path in spill.found(outbox.path):
        try:
            rows, _ = await asyncio.to_thread(spill.read, path)
        except OSError as exc:
            log.error("state.spill_latches_unread", path=str(path), error=str(exc))
            continue
        for _, keep in rows:
            for write in keep:
                if write.kind != ALARM.name:
                    continue
                try:
                    record = None if write.data is None else ALARM.decode(write.data)
                except (KeyError, TypeError, ValueError):
                    continue
                await store.put_alarm(write.key, record)
                changed += 1
    if changed:
        log.warning("state.alarms_from_spill", changed=changed)
    return changed
