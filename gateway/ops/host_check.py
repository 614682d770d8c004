"""The local ports answer only requests addressed to this box: no DNS rebinding.

A web page a technician opens elsewhere can make their browser resolve its own
domain name to 127.0.0.1 and then read ``http://that-name:9735/status`` as if it
were its own origin: zones in alarm and recent events, without the bench page's
password (review of 2026-12-05). The browser still sends that name in ``Host``.
So a request is answered only when ``Host`` (without its port) is an IP address,
a name without a dot (``localhost``, this machine's name, an alias in
``/etc/hosts``: a page elsewhere cannot make a browser resolve such a name), the
address the port was bound to, this machine's own names (``hostname``, the names
``/etc/hosts`` gives it, and each under ``.local``); anything else gets 421 Misdirected
Request (RFC 9110 §15.5.20). A request without ``Host``, or with an empty one, is
answered. A technician who reaches the box by another DNS name binds the port to
that name, or browses by address.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from pathlib import Path

HOSTS = Path("/etc/hosts")
STATUS = 421
REASON = "misdirected request: this port answers requests for this box only"


def host_allowed(host: str | None, bound: str) -> bool:
    """True when a request with ``Host: host`` is for this box (``bound``: the
    address or name the port listens on, as configured)."""
    if host is None or not host.strip():
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
    if "." not in name:
        return True
    return name in _own_names() | {bound.lower().rstrip(".")}


@functools.cache
def _own_names() -> frozenset[str]:
    """This machine's names, read once without asking a resolver (the event loop
    must not wait on DNS): its host name, every name ``/etc/hosts`` lists (where
    Debian puts the fully qualified one: ``127.0.1.1 gw1.school.lan gw1``; only an
    administrator writes that file), and each under ``.local`` (mDNS)."""
    names = {socket.gethostname()}
    with contextlib.suppress(OSError):
        for line in HOSTS.read_text(encoding="utf-8", errors="replace").splitlines():
            names.update(line.split("#", 1)[0].split()[1:])
    names = {n.lower().rstrip(".") for n in names if n}
    return frozenset(names | {f"{n.split('.')[0]}.local" for n in names})
