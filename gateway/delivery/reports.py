"""Events committed in the state store with the change they report, not yet in the outbox.

A rule that commits state before reporting it (the guard tour) commits the
events with the state, in one transaction of the state store
(:meth:`~gateway.runtime.state_store.StateStore.apply`), then appends them to the
outbox and forgets them. A power cut between those two commits leaves events
in the state store only: :func:`append_unreported` runs at start, before any
rule, and appends those the outbox does not hold yet (by id), so the change and
its report are never separated, and nothing is reported twice.
"""

from __future__ import annotations

import structlog

from gateway.delivery.outbox import Outbox
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
