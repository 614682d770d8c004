"""What the simulated center makes of the events it receives: seq tracking, console lines."""

from __future__ import annotations

from typing import Any


def _seq_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


class SeqTracker:
    """The ``seq`` numbers seen per ``stream``: holes, late fills, reused numbers.

    Every stream starts at ``seq`` 1 (DESIGN.md: a new stream means seq
    restarted), so a first event with ``seq`` 5 leaves 1-4 missing. Events may
    arrive out of ``seq`` order (priority lanes), so a hole is filled when its
    event arrives late.
    """

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._missing: dict[str, set[int]] = {}
        self._ids: dict[tuple[str, int], str] = {}

    def add(self, stream: str, seq: int, event_id: str) -> list[str]:
        """Record one first delivery; return the report lines it causes (may be none)."""
        notes: list[str] = []
        known = self._ids.setdefault((stream, seq), event_id)
        if known != event_id:
            notes.append(f"SEQ REUSED stream={stream} seq={seq} by id {event_id} (was {known})")
            return notes
        highest = self._highest.get(stream, 0)
        missing = self._missing.setdefault(stream, set())
        if seq > highest + 1:
            missing.update(range(highest + 1, seq))
            notes.append(f"GAP stream={stream} missing seq {_seq_range(highest + 1, seq - 1)}")
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
