"""A row due for publishing, as the uplink gets it from the file or from memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ALARM_PRIORITY = 2
"""Priorities 1 to this one are alarms (a panic, an intrusion): they commit alone, go at
the next free slot of the window and never wait on a read of the file (issue 14)."""


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A stored message due for publishing.

    Attributes:
        n: row key (send order within a priority).
        seq: event sequence number, None for non-event messages (snapshots).
        id: event id (ULID).
        priority: 1..5.
        topic: topic suffix under the gateway prefix (``events/alarm/panic``).
        payload: the exact bytes to publish.
        attempts: PUBACKs seen before; > 0 means this is a re-publish.
        track_ack: the center must ack it (priority 1-3 events).
        stream: the stream its ``seq`` belongs to (a stream ack names it), None for
            non-event messages.
    """

    n: int
    seq: int | None
    id: str
    priority: int
    topic: str
    payload: bytes
    attempts: int = 0
    track_ack: bool = False
    stream: str | None = None

    @classmethod
    def of_columns(cls, r: Sequence[Any], *, resend: bool = False) -> PendingRow:
        """The row a ``sql.COLUMNS`` select read (``track_ack``: still waiting for the
        center). ``resend``: it goes as a re-send whatever the file counts of its
        attempts (its first PUBACK's mark may not have committed)."""
        attempts = max(1, r[6]) if resend else r[6]
        return cls(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), attempts, bool(r[7]), r[8])


def topic_waits(topic: str, skips: list[str]) -> bool:
    """Does ``topic`` wait: is it one of ``skips``, or does it begin with one ending in
    ``/`` (``""`` stands for every topic)? (``skip_topics`` of ``Outbox.pending``.)"""
    for skip in skips:
        if not skip or (skip.endswith("/") and topic.startswith(skip)) or topic == skip:
            return True
    return False
