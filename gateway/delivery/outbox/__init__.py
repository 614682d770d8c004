"""Store-and-forward outbox: the source of truth for delivery (DESIGN.md "Delivery").

``store`` holds :class:`Outbox` (the one writer), ``reads`` what the uplink reads,
``held`` the rows not yet committed, ``rows`` the shape of a due row,
``capacity`` the caps, shedding and counters, ``backlog`` the pending and unacked
counts kept in memory, ``metrics`` the heartbeat's reads, ``sql`` the schema and statements,
``files`` the lock, the quarantine of a corrupt file and the disk ballast.
"""

from gateway.delivery.outbox.capacity import OutboxStats, ShedReport
from gateway.delivery.outbox.metrics import StoredEvent
from gateway.delivery.outbox.rows import ALARM_PRIORITY, PendingRow
from gateway.delivery.outbox.store import Outbox

__all__ = ["ALARM_PRIORITY", "Outbox", "OutboxStats", "PendingRow", "ShedReport", "StoredEvent"]
