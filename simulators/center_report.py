"""What the simulated center makes of the events it receives: seq tracking, console lines."""

from __future__ import annotations

from typing import Any


def _seq_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


class SeqTracker:
    """The ``seq`` numbers seen per ``stream``: holes, late fills, reused numbers.

    A console may join a stream late (it started after the gateway, or was away):
    it tracks a stream from the first thing it hears of it, never from ``seq`` 1
    (issue 10 item 12: no false gaps). That is the first event's ``seq`` (what is
    before it is before our time), or, when a heartbeat comes first, its
    ``acked_up_to`` (everything up to it was acked by some center; what is after
    it is expected here). Events may arrive out of ``seq`` order (priority lanes),
    so a hole is filled when its event arrives late. A heartbeat's ``last_seq``
    beyond the highest seq received, twice running, is a gap at the tail.
    """

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._missing: dict[str, set[int]] = {}
        self._ids: dict[tuple[str, int], str] = {}
        self._tail: dict[str, int] = {}
        self._told: dict[str, int] = {}

    def heartbeat(self, stream: str, last_seq: int, acked_up_to: int) -> list[str]:
        """Record a heartbeat's figures; return the report lines it causes (may be none)."""
        if stream not in self._highest:
            self._highest[stream] = self._floor[stream] = acked_up_to
            self._tail[stream] = last_seq
            return [f"JOIN stream={stream} after seq {acked_up_to} (acked up to there)"]
        highest, before = self._highest[stream], self._tail.get(stream, 0)
        self._tail[stream] = last_seq
        if before > highest and self._told.get(stream) != before:
            self._told[stream] = before
            return [f"TAIL stream={stream} missing seq {_seq_range(highest + 1, before)}"]
        return []

    def add(self, stream: str, seq: int, event_id: str) -> list[str]:
        """Record one first delivery; return the report lines it causes (may be none)."""
        notes: list[str] = []
        known = self._ids.setdefault((stream, seq), event_id)
        if known != event_id:
            notes.append(f"SEQ REUSED stream={stream} seq={seq} by id {event_id} (was {known})")
            return notes
        if stream not in self._highest:
            self._highest[stream] = self._floor[stream] = seq - 1
            if seq > 1:
                notes.append(f"JOIN stream={stream} at seq {seq}")
        if seq <= self._floor[stream]:
            return notes  # before this console joined the stream: not tracked
        highest = self._highest[stream]
        missing = self._missing.setdefault(stream, set())
        if seq > highest + 1:
            missing.update(range(highest + 1, seq))
            notes.append(
                f"GAP stream={stream} missing seq {_seq_range(highest + 1, seq - 1)}"
                " (not here yet: overtaken by a higher priority, or lost; LATE if it comes)"
            )
        elif seq in missing:
            missing.discard(seq)
            notes.append(f"LATE stream={stream} seq {seq} filled a gap")
        self._highest[stream] = max(highest, seq)
        return notes

    def gaps(self) -> dict[str, list[int]]:
        """The ``seq`` numbers still missing, per stream with any missing."""
        return {stream: sorted(seqs) for stream, seqs in self._missing.items() if seqs}


_DETAILS: dict[str, tuple[str, ...]] = {
    "camera.snapshot": ("for_type", "bytes", "error"),
    "patrol.checkpoint": ("verdict", "guard_name"),
    "patrol.late": ("late_by_s", "guard_name"),
}
"""Event type → ``data`` fields worth a glance on its console line (when present)."""


def format_event(event: dict[str, Any]) -> str:
    """One readable console line for an event (names kept as they are, e.g. Chinese)."""
    data = event.get("data") or {}
    source = str(event.get("source", ""))
    site_gateway = "/".join(source.split("/")[1:3])
    fields = [
        str(event.get("time", "?")),
        site_gateway,
        f"P{event.get('priority', '?')}",
        str(event.get("type", "?")),
        f"subject={event.get('subject', '?')}",
        f"state={data.get('state', '?')}",
    ]
    if "name" in data:
        fields.append(f"name={data['name']}")
    if event.get("type") == "command.result":
        outcome = data.get("status", "?")
        if data.get("reason"):
            outcome += f" ({data['reason']})"
        fields.append(f"result={outcome}")
    fields += [
        f"{key}={data[key]}"
        for key in _DETAILS.get(str(event.get("type")), ())
        if data.get(key) is not None
    ]
    if "siacode" in event or "cidcode" in event:
        fields.append(f"SIA={event.get('siacode', '-')} CID={event.get('cidcode', '-')}")
    fields.append(f"seq={event.get('seq', '?')}")
    return " ".join(fields)
