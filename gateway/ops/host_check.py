"""The local ports answer only requests addressed to this box: no DNS rebinding.

A web page a technician opens elsewhere can make their browser resolve its own
domain name to 127.0.0.1 and then read ``http://that-name:9735/status`` as if it
were its own origin: zones in alarm and recent events, without the bench page's
password (review of 2026-12-05). The browser still sends that name in ``Host``.
So a request is answered only when ``Host`` (without its port) is an IP address,
a name without a dot (``localhost``, this machine's name, an alias in
``/etc/hosts``: a page elsewhere cannot make a browser resolve such a name), the
address the port was bound to, or ``<this machine's name>.local``; anything else
gets 421 Misdirected Request (RFC 9110 §15.5.20). A request without ``Host``
(HTTP/1.0) is answered.
"""

from __future__ import annotations

import ipaddress
import socket

STATUS = 421
REASON = "misdirected request: this port answers requests for this box only"


def host_allowed(host: str | None, bound: str) -> bool:
    """True when a request with ``Host: host`` is for this box (``bound``: the
    address or name the port listens on, as configured)."""
    if host is None:
        return True
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return True
    if name and "." not in name:
        return True
    return name in {bound.lower(), f"{socket.gethostname().lower()}.local"} and name != ""
