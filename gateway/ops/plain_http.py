"""The local endpoint's HTTP without a web framework: ``GET``/``HEAD`` of fixed paths.

``/metrics`` is scraped every 15-60 s for the life of a box, so whatever serves
it stays loaded: aiohttp and its companions would be about 10 MiB of a gateway
with one Modbus module (issue 14: peak <= 60 MiB without cameras). The endpoint
needs little of HTTP/1.1 (RFC 9112): read-only, loopback by default, a few fixed
paths, no request bodies. :func:`serve` reads one request head (at most
:data:`HEAD_LIMIT` bytes, within :data:`READ_S`), answers it with a
``Content-Length`` and ``Connection: close`` and closes the connection; at most
:data:`MAX_CONNECTIONS` at once (one more is closed unread). What
else a client may send gets the code a framework gives: 400 (a request line
that is not ``METHOD TARGET HTTP/1.x``), 404 (another path), 405 with ``Allow``
(another method), 421 (a ``Host`` that is not this box: ``host_check.py``), 431 (a
head over the limit), 500 (a route failed: logged as
``ops.request_failed``); a client that sends no whole head within :data:`READ_S`
is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import structlog

from gateway.ops import host_check
from gateway.ops.host_check import host_allowed
from gateway.runtime.descriptors import ConnectionCap

log = structlog.get_logger(__name__)

HEAD_LIMIT = 8192  # bytes of request line and headers
READ_S = 10.0  # seconds a client has to send its request head
MAX_CONNECTIONS = 64
"""Connections answered at once (a scraper and a technician need a few); more are
closed unread, so idle ones cannot take the descriptors the outbox needs
(``gateway/runtime/descriptors.py``)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: ``status`` code, ``body`` bytes, their ``content_type``."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Awaitable[Reply]]


async def serve(
    host: str, port: int, routes: Mapping[str, Route], *, cap: ConnectionCap | None = None
) -> asyncio.Server:
    """Bind ``host``/``port`` (port 0: any free one) and answer ``routes`` by path
    (the query string is ignored), at most ``cap.limit`` connections at once
    (:data:`MAX_CONNECTIONS` without one). Close the returned server to stop.

    Raises:
        OSError: the address cannot be bound (in use, not on this host).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, writer, routes, host)
        except ConnectionError:  # the client left; nothing to answer
            pass
        except Exception:
            log.exception("ops.request_failed")
            with contextlib.suppress(OSError):
                await _send(writer, _error(HTTPStatus.INTERNAL_SERVER_ERROR))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    capped = (cap or ConnectionCap(f"http:{port}", MAX_CONNECTIONS)).wrap(handle)
    return await asyncio.start_server(capped, host, port, limit=HEAD_LIMIT, reuse_address=True)


async def _answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    routes: Mapping[str, Route],
    bound: str,
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_S)
    except asyncio.LimitOverrunError:
        await _send(writer, _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE))
        return
    except (asyncio.IncompleteReadError, TimeoutError):  # left, or sent no whole head
        return
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        await _send(writer, _error(HTTPStatus.BAD_REQUEST))
        return
    method, target = parts[0], parts[1]
    route = routes.get(target.split(b"?", 1)[0].decode("latin-1"))
    if not host_allowed(_header(head, b"host"), bound):
        await _send(writer, Reply(host_check.STATUS, f"{host_check.REASON}\n".encode()))
    elif route is None:
        await _send(writer, _error(HTTPStatus.NOT_FOUND))
    elif method not in (b"GET", b"HEAD"):
        await _send(writer, _error(HTTPStatus.METHOD_NOT_ALLOWED), allow="GET, HEAD")
    else:
        await _send(writer, await route(), body=method == b"GET")


def _header(head: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in a request head; None when absent."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


def _error(status: HTTPStatus) -> Reply:
    return Reply(status, f"{status.value}: {status.phrase}\n".encode())


async def _send(
    writer: asyncio.StreamWriter, reply: Reply, *, body: bool = True, allow: str | None = None
) -> None:
    phrase = HTTPStatus(reply.status).phrase
    head = [
        f"HTTP/1.1 {reply.status} {phrase}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Connection: close",
    ]
    if allow is not None:
        head.append(f"Allow: {allow}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if body:
        writer.write(reply.body)
    await writer.drain()
