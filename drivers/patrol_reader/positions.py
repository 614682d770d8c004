"""Where each checkpoint station's record log was read up to, kept across restarts.

Kept in the gateway's state store (kind ``patrol.position``, key the reader id,
value the next record index to read), committed after every batch of records the
engine has taken. Without it a restarted gateway would either re-read a
station's whole ring (the engine drops reads it already judged, but the work is
wasted) or skip what was written while it was down.
"""

from __future__ import annotations

from gateway.runtime.state import Kind
from gateway.runtime.state_store import StateStore

POSITION: Kind[int] = Kind("patrol.position", int, int)


class PositionStore:
    """Next record index per station; in memory only when ``store`` is None.

    Args:
        store: the gateway's state store.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        self._store = store
        self._next: dict[str, int] = dict(store.values(POSITION)) if store is not None else {}

    def get(self, reader_id: str) -> int | None:
        """The next record index to read from ``reader_id``, or None if never read."""
        return self._next.get(reader_id)

    async def save(self, reader_id: str, next_index: int) -> None:
        """Remember ``next_index`` for ``reader_id`` (on disk when this returns, with a store).

        Raises:
            StateError: the state store cannot be written (the caller logs it and
                goes on: the position is still kept in memory).
        """
        self._next[reader_id] = next_index
        if self._store is not None:
            await self._store.put(POSITION, reader_id, next_index)
