"""Every TCP port the daemon listens on is its own: two listeners never share one.

The gateway listens on ``[metrics]`` (status and metrics), ``[bench]`` (the bench
page), each network or handheld ``[[patrol.readers]]`` and each TCP ``[dc09]
listen`` address. Two of them on one port bind only if their hosts are distinct
addresses; otherwise the second one's task fails and is retried for ever
(``campus-gateway status`` then reads the bench page's 404 as the daemon's
answer: a review of 2026-12-06). ``check-config`` refuses it instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.root import GatewayConfig

_EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::", "*"})


@dataclass(frozen=True, slots=True)
class _Listener:
    field: str
    name: str
    host: str
    port: int


def check_listeners(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(field, message) for each listener whose TCP port another one already takes.

    Port 0 (any free port) never clashes. Hosts clash when they are equal or either
    is every interface (``0.0.0.0``, ``::``, empty); names are compared as written.
    """
    problems: list[tuple[str, str]] = []
    seen: list[_Listener] = []
    for listener in _listeners(cfg):
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


def _listeners(cfg: GatewayConfig) -> Iterator[_Listener]:
    if cfg.metrics.enabled:
        yield _Listener("metrics.port", "[metrics]", cfg.metrics.host, cfg.metrics.port)
    if cfg.bench.enabled:
        yield _Listener("bench.port", "the bench page", cfg.bench.host, cfg.bench.port)
    for i, reader in enumerate(cfg.patrol.readers):
        listen = getattr(reader, "listen", None)
        if listen is not None:
            name = f"patrol reader {reader.id!r}"
            yield _Listener(f"patrol.readers.{i}.listen", name, listen.host, listen.port)
    for i, address in enumerate(cfg.dc09.listen):
        if address.protocol == "tcp":
            name = "the DC-09 receiver"
            yield _Listener(f"dc09.listen.{i}", name, address.host, address.port)


def _overlap(a: str, b: str) -> bool:
    return a == b or a in _EVERY_INTERFACE or b in _EVERY_INTERFACE
