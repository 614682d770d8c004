"""Refused acks → ``fault.ack_refused`` (priority 3), at most one per reason a minute.

An ack the gateway refuses (:mod:`gateway.delivery.ack_auth`: not JSON, too large,
unsigned, badly signed) is one of two things: a center whose key or signing code is
wrong, whose acks will never count, so every alarm it receives is re-sent and
escalated; or someone on the broker trying to silence alarms. Either way the duty
room must hear of it, not only the gateway's log and a counter. One event per
reason at the first refusal, then at most one per :data:`EVERY_S` with the count
refused in between (``refused_since``), so a flood of forged acks cannot flood the
outbox: three reasons, so at most three events a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.delivery.ack_auth import Refusal, RefusalReason
from gateway.events.model import Emit, Event, EventFactory
from gateway.events.throttle import ReportThrottle

EVERY_S = 60.0
"""The shortest time between two ``fault.ack_refused`` events of one reason (seconds)."""

_TEXT: dict[RefusalReason, str] = {
    "malformed": "an ack that is not a JSON object, or is larger than 1 MiB, was refused",
    "unsigned": "an ack without a signature was refused",
    "bad_signature": "an ack whose signature does not verify under the site key was refused",
}


class AckRefusalReporter:
    """Stores ``fault.ack_refused`` for refused acks, rate-limited per reason.

    Args:
        factory, emit: make and store the events.
        subject: the gateway id (the event's subject; its device is ``gateway``).
        every_s: the shortest time between two events of one reason.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        factory: EventFactory,
        emit: Emit,
        subject: str,
        *,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._emit = emit
        self._subject = subject
        self._throttle: ReportThrottle[RefusalReason] = ReportThrottle(every_s, clock=clock)

    async def refused(self, refusal: Refusal) -> Event | None:
        """Count ``refusal``; store a ``fault.ack_refused`` unless one of its reason was
        stored less than ``every_s`` ago. Returns the stored event, or None."""
        reason = refusal.reason
        admitted = self._throttle.admit(reason)
        if admitted is None:
            return None
        event = self._factory.make(
            "fault.ack_refused",
            device="gateway",
            subject=self._subject,
            state="instant",
            data={
                "reason": _TEXT[reason],
                "refusal": reason,
                "source": refusal.source,
                "bytes": refusal.size,
                "refused_since": admitted.refused_since,
            },
        )
        return await self._emit(event)
