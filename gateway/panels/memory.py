"""What the panels' reports keep across a restart: the incidents panels report open.

A panel reports an alarm or fault once (``active``) and its restore once
(``cleared``); it does not report again what is still open after the gateway
restarts. So each open incident is kept in the outbox database, written in the
same transaction as the ``active`` event that opens it and deleted with the
``cleared`` event that closes it (``append(event, keep=[...])``,
:mod:`gateway.runtime.state`): a restore after a restart carries the incident it
closes, and ``campus-gateway status`` lists what the panels report active from the
start (a review of 2026-12-06: a restore after a restart came with no
``incident``, and the center's open one was never closed).

Kind ``panel.incident``, key ``["<panel>", "<type>", "<subject>"]`` (JSON), value
the opening event (its CloudEvents object).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.events.model import Event
from gateway.runtime.state import Kind, StateWrite, Triple, by_triple, triple_key

IncidentKey = Triple
"""``(panel id, event type, subject)``."""

INCIDENT: Kind[Event] = Kind("panel.incident", Event.to_dict, Event.from_dict)
"""``panel.incident``/``["<panel>", "<type>", "<subject>"]``: the event that opened it."""


def incident_write(key: IncidentKey, opened: Event | None) -> StateWrite:
    """The write that keeps (or, with None, forgets) the incident under ``key``."""
    return INCIDENT.write(triple_key(key), opened)


def open_incidents(kept: Mapping[str, Event]) -> dict[IncidentKey, Event]:
    """Kept incidents by their key.

    Raises:
        ValueError: a key that is not ``[panel, type, subject]``.
    """
    return by_triple(kept)
