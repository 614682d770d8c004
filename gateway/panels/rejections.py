"""Refused frames → ``fault.panel_rejected`` (priority 3), at most one per sender and
reason every ``[dc09] reject_report_s``.

A panel whose frames are all refused (a wrong key, a clock far off, an account
nobody configured, a CRC setting the receiver does not know) is a panel whose
alarms do not arrive: the center must hear of it at once, not only when the
panel's supervision runs out. One event per sender and reason, then at most one
per period with the count refused in between (``refused_since``), so a flood of
bad frames cannot flood the outbox; and at most :data:`MAX_REPORTS` a period in all,
so neither can bad frames from thousands of addresses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from gateway.events.model import Emit, Event, EventFactory
from gateway.events.panel_observation import PanelRejected
from gateway.events.throttle import ReportThrottle

log = structlog.get_logger(__name__)

RECEIVER_DEVICE = "dc09"
"""The device of events about senders no ``[[panels]]`` knows: the receiver itself."""
MAX_REPORTS = 20
"""At most this many ``fault.panel_rejected`` per period, whatever the senders: junk
from 3,000 addresses made 353 events in a review of 2026-12-06. Beyond it refusals
are counted, logged once (``dc09.rejections_capped``), and the next report says how
many went unreported (``unreported``)."""


class Rejections:
    """Reports refused frames, rate-limited per (sender, reason).

    Args:
        factory: makes events.
        emit: stores an event.
        every_s: the shortest time between two reports of one sender and reason.
        clock: monotonic seconds.

    Attributes:
        refused: frames refused, all counted.
    """

    def __init__(
        self,
        factory: EventFactory,
        emit: Emit,
        every_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._emit = emit
        self._every = every_s
        self._throttle: ReportThrottle[tuple[str, str]] = ReportThrottle(
            every_s, cap=MAX_REPORTS, clock=clock
        )
        # Datagrams lost before they were read (reason ``dropped``, one key per
        # listener): outside the cap, which the flood that drops them fills with its
        # own refusals (a review of 2026-12-06).
        self._lost: ReportThrottle[tuple[str, str]] = ReportThrottle(every_s, clock=clock)
        self.refused = 0

    async def rejected(self, obs: PanelRejected) -> Event | None:
        """Count ``obs``; store a ``fault.panel_rejected`` unless one was stored lately."""
        self.refused += 1
        sender = obs.panel_id or obs.peer.split(" ")[-1].rsplit(":", 1)[0]
        throttle = self._lost if obs.reason == "dropped" else self._throttle
        capped = self._throttle.capped
        admitted = throttle.admit((sender, obs.reason))
        if admitted is None:
            if self._throttle.capped and not capped:
                log.warning("dc09.rejections_capped", reports=MAX_REPORTS, period_s=self._every)
            return None
        event = self._factory.make(
            "fault.panel_rejected",
            device=obs.panel_id or RECEIVER_DEVICE,
            subject=sender,
            state="instant",
            received_at=obs.received_at,
            data={
                "name": obs.panel_id or sender,
                "reason": obs.reason,
                "detail": obs.detail,
                "answer": obs.answer,
                "peer": obs.peer,
                "account": obs.account,
                "raw": obs.raw,
                "refused_since": admitted.refused_since,
                "unreported": admitted.unreported,
            },
        )
        return await self._emit(event)
