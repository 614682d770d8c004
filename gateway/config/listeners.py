"""Every TCP port the daemon listens on is its own: two listeners never share one.

The gateway listens on ``[metrics]`` (status and metrics), ``[bench]`` (the bench
page), each network or handheld ``[[patrol.readers]]`` and each TCP ``[dc09]
listen`` address. Two of them on one port bind only if their hosts are distinct
addresses; otherwise the second one's task fails and is retried for ever
(``campus-gateway status`` then reads the bench page's 404 as the daemon's
answer: a review of 2026-12-06). ``check-config`` refuses it instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::", "*"})
_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}


@dataclass(frozen=True, slots=True)
class Listener:
    """One TCP listener of a config: its field (``bench.port``), what it is (for the
    message), its host and port."""

    field: str
    name: str
    host: str
    port: int


def check_listeners(listeners: Iterable[Listener]) -> list[tuple[str, str]]:
    """(field, message) for each listener whose TCP port another one already takes.

    Port 0 (any free port) never clashes. Hosts clash when they are equal or either
    is every interface (``0.0.0.0``, ``::``, empty); ``localhost`` is ``127.0.0.1``;
    other names are compared as written.
    """
    problems: list[tuple[str, str]] = []
    seen: list[Listener] = []
    for listener in listeners:
        if listener.port == 0:
            continue
        for other in seen:
            if other.port == listener.port and _overlap(other.host, listener.host):
                problems.append(
                    (
                        listener.field,
                        f"port {listener.port} is already taken by {other.name} "
                        f"({other.field}); give each listener a port of its own",
                    )
                )
                break
        seen.append(listener)
    return problems


def _overlap(a: str, b: str) -> bool:
    a, b = _LOOPBACK_NAMES.get(a, a), _LOOPBACK_NAMES.get(b, b)
    return a == b or a in _EVERY_INTERFACE or b in _EVERY_INTERFACE
