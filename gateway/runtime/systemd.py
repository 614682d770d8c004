"""sd_notify(3) over ``$NOTIFY_SOCKET``: READY, STOPPING, WATCHDOG, STATUS.

A no-op when the daemon is not started by systemd (no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``STATUS=…``) to systemd; True when sent.

    Never blocks: a socket whose queue is full (systemd busy) drops this message
    (False) rather than stall the event loop, and the next one is tried afresh.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
        except OSError:
            return False
    return True
