"""A lazy port: bound and listening at once, served at the first connection, refused when taken.

Real sockets on the loopback; the served application is a real aiohttp one.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import TYPE_CHECKING

import pytest

from gateway.ops.lazy_port import LazyPort

if TYPE_CHECKING:
    from aiohttp import web

pytestmark = pytest.mark.timeout(30)


async def _hello() -> web.AppRunner:
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    return runner


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return str(response.read().decode())


async def test_the_connection_that_wakes_the_server_is_answered() -> None:
    async with LazyPort("127.0.0.1", 0) as port:
        [(host, number)] = port.addresses
        assert host == "127.0.0.1" and number > 0
        serving = asyncio.create_task(port.serve("aiohttp.web", _hello))
        try:
            assert await asyncio.to_thread(_get, number) == "hello"
            assert await asyncio.to_thread(_get, number) == "hello"
        finally:
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving


async def test_a_taken_port_raises_oserror_and_a_left_port_is_free_again() -> None:
    async with LazyPort("127.0.0.1", 0) as port:
        number = port.addresses[0][1]
        with pytest.raises(OSError):
            async with LazyPort("127.0.0.1", number):
                pass
    with socket.create_server(("127.0.0.1", number)):  # closed on leaving, never served
        pass


async def test_a_host_name_binds_every_address_it_resolves_to() -> None:
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    try:
        async with LazyPort("localhost", 0) as port:
            bound = {host for host, _ in port.addresses}
    except OSError as exc:  # e.g. ::1 listed but IPv6 off in this container
        pytest.skip(f"localhost cannot be bound here: {exc}")
    assert bound == resolved
