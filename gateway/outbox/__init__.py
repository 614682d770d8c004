"""Store-and-forward outbox: the source of truth for delivery (DESIGN.md "Delivery").

``store`` holds :class:`Outbox` (the one writer, reads for the uplink), ``sql``
the schema and statements, ``files`` the lock, the quarantine of a corrupt file
and the disk ballast.
"""

from gateway.outbox.store import Outbox, OutboxStats, PendingRow, ShedReport

__all__ = ["Outbox", "OutboxStats", "PendingRow", "ShedReport"]
