"""Events committed in the state store with the change they report, not yet in the outbox.

A rule that commits state before reporting it (the guard tour) commits the
events with the state, in one transaction of the state store
(:meth:`~gateway.runtime.state_store.StateStore.apply`), then appends them to the
outbox and forgets them. A power cut between those two commits leaves events
in the state store only: :func:`append_unreported` runs at start, before any
rule, and appends those the outbox does not hold yet (by id), so the change and
its report are never separated, and nothing is reported twice.

Open alarms go the other way: the zone engine keeps an alarm's record with its
``active`` event in the outbox (one transaction) and writes the state store
behind it. :func:`restore_alarms` runs at start, before the alarm system: a
record the outbox holds and the state store lost to a cut is put back, so a
latched panic stays latched whatever moment the power went.
"""

from __future__ import annotations

import structlog

from gateway.delivery.outbox import Outbox
from gateway.runtime.state import ALARM
from gateway.runtime.state_store import StateStore

log = structlog.get_logger(__name__)


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
    """Put back open alarms the outbox kept with their event and the state store lost;
    returns how many.

    Only what is missing is added: an alarm the state store still holds open after
    its ``cleared`` event was stored stays open (a cut between the two commits; the
    safe side: at worst its end is reported again, or a latched one needs a second
    reset).

    Raises:
        OutboxError: a kept record cannot be read.
        StateError: the state store refused the commit.
    """
    missing = [
        ALARM.write(key, record)
        for key, record in outbox.kept(ALARM).items()
        if key not in store.alarms
    ]
    if missing:
        await store.apply(missing)
        log.warning("state.alarms_restored", keys=[w.key for w in missing])
    return len(missing)
