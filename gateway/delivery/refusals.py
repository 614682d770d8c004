"""What the broker refused: a back-off per topic, counts per reason, ``fault.uplink``.

A PUBACK with a failure reason (MQTT 5.0 §3.4.2.1, >= 0x80; mosquitto answers
0x87 Not authorized when an ACL denies a topic) is not delivery: the row stays
pending. Its topic then backs off — the outbox skips every row of that topic until
the back-off ends (``reconnect_min`` doubling up to ``reconnect_max``, with
jitter) — so a denied topic is retried without flooding the broker and without
holding up the rows of any other topic (a panic is never stuck behind a refused
fault). Quota exceeded (0x97) concerns the whole connection: every topic backs off.
Snapshot topics (one per picture) back off together.

Each reason is counted (the heartbeat shows ``puback_failures``) and raises one
``fault.uplink`` ``active`` when it first refuses a topic; the incident is
``cleared`` once no topic stands refused for that reason any more, i.e. once its
publishes are accepted again.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import structlog

from gateway.delivery.mqtt_client import reason_text
from gateway.events.model import Emit, EventFactory

log = structlog.get_logger(__name__)

QUOTA_EXCEEDED = 0x97
EVERY_TOPIC = ""
"""The back-off key of a refusal that concerns the connection, not one topic."""


def backoff_key(topic: str, reason_code: int) -> str:
    """The topic key a refusal backs off: ``""`` (every topic) for a quota, ``snapshots/``
    for any picture, else the topic itself. Keys ending in ``/`` are prefixes."""
    if reason_code == QUOTA_EXCEEDED:
        return EVERY_TOPIC
    if topic.startswith("snapshots/"):
        return "snapshots/"
    return topic


@dataclass(slots=True)
class _Refused:
    reason_code: int
    failures: int
    retry_at: float


@dataclass(frozen=True, slots=True)
class ReasonChange:
    """A reason started refusing (``active``) or stopped (not ``active``)."""

    reason_code: int
    active: bool
    topics: tuple[str, ...]


@dataclass(slots=True)
class Refusals:
    """Back-off and counts of refused publishes (topics are suffixes under the prefix).

    Args:
        backoff_min, backoff_max: seconds; the first wait, and the longest.

    Attributes:
        counts: reason code -> refused publishes, since start.
        changes: reasons that became active or ended, for the ``fault.uplink`` reporter.
    """

    backoff_min: float
    backoff_max: float
    counts: dict[int, int] = field(default_factory=dict)
    changes: asyncio.Queue[ReasonChange] = field(default_factory=asyncio.Queue)
    _refused: dict[str, _Refused] = field(default_factory=dict)
    _active: set[int] = field(default_factory=set)

    def refused(self, topic: str, reason_code: int) -> None:
        """The broker refused a publish on ``topic``: count it and back the topic off."""
        self.counts[reason_code] = self.counts.get(reason_code, 0) + 1
        key = backoff_key(topic, reason_code)
        entry = self._refused.get(key)
        failures = 1 if entry is None else entry.failures + 1
        wait = min(self.backoff_max, self.backoff_min * 2 ** (failures - 1))
        self._refused[key] = _Refused(
            reason_code, failures, time.monotonic() + wait * random.uniform(0.8, 1.2)
        )
        if entry is None or entry.reason_code != reason_code:
            log.error("uplink.publish_refused", topic=topic, reason=reason_text(reason_code))
        if reason_code not in self._active:
            self._active.add(reason_code)
            self.changes.put_nowait(ReasonChange(reason_code, True, self._topics(reason_code)))

    def accepted(self, topic: str) -> None:
        """A publish on ``topic`` was accepted: its back-off ends; a reason that no
        longer refuses anything ends too."""
        if not self._refused:
            return
        for key in (topic, "snapshots/" if topic.startswith("snapshots/") else None, EVERY_TOPIC):
            entry = self._refused.pop(key, None) if key is not None else None
            if entry is not None:
                log.warning("uplink.publish_accepted_again", topic=topic)
                self._settle(entry.reason_code)

    def _settle(self, reason_code: int) -> None:
        if reason_code in self._active and not self._topics(reason_code):
            self._active.discard(reason_code)
            self.changes.put_nowait(ReasonChange(reason_code, False, ()))

    def _topics(self, reason_code: int) -> tuple[str, ...]:
        return tuple(sorted(k for k, v in self._refused.items() if v.reason_code == reason_code))

    def backing_off(self) -> list[str]:
        """Topic keys whose rows must wait now (keys ending in ``/`` are prefixes)."""
        now = time.monotonic()
        return [key for key, entry in self._refused.items() if entry.retry_at > now]

    def next_retry_in(self) -> float | None:
        """Seconds until the next back-off ends, or None when none is running.

        A back-off that has ended is not counted: its entry stays (its failures set
        the next wait, and its reason stays active) until a publish on the topic is
        accepted, and counting it made the send loop wait 0 s again and again while
        the row was not yet due (review of CI on 2026-12-06).
        """
        now = time.monotonic()
        ends = [e.retry_at for e in self._refused.values() if e.retry_at > now]
        return min(ends) - now if ends else None

    def figures(self) -> dict[str, int]:
        """``{"0x87": 3}``: refused publishes per reason code, for the heartbeat."""
        return {f"0x{code:02X}": n for code, n in sorted(self.counts.items())}


@dataclass(slots=True)
class UplinkFaultReporter:
    """Turns :class:`ReasonChange` into ``fault.uplink`` events. ``await reporter.run()``.

    Args:
        refusals: the uplink's refusals.
        factory, emit: make and store the events.
        subject: the gateway id.
    """

    refusals: Refusals
    factory: EventFactory
    emit: Emit
    subject: str
    _incidents: dict[int, str] = field(default_factory=dict)

    async def run(self) -> None:
        """Report every change, forever."""
        while True:
            change = await self.refusals.changes.get()
            await self._report(change)

    async def _report(self, change: ReasonChange) -> None:
        reason = f"the broker refuses publishes: PUBACK {reason_text(change.reason_code)}"
        data = {"reason": reason, "reason_code": change.reason_code, "topics": list(change.topics)}
        if change.active:
            event = await self.emit(
                self.factory.make(
                    "fault.uplink", device="gateway", subject=self.subject, state="active",
                    data=data, opens_incident=True,
                )
            )  # fmt: skip
            self._incidents[change.reason_code] = event.id
            return
        incident = self._incidents.pop(change.reason_code, None)
        await self.emit(
            self.factory.make(
                "fault.uplink", device="gateway", subject=self.subject, state="cleared",
                data={**data, "reason": "publishes accepted again"}, incident=incident,
            )
        )  # fmt: skip
