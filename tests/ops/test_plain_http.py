"""The local endpoint's framework-free HTTP answers like a framework would, over real sockets.

Requests are written byte for byte on a real TCP connection, so malformed ones can be sent
too; well-formed ones also go through urllib, a real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.ops import host_check, plain_http
from gateway.ops.host_check import host_allowed
from gateway.ops.plain_http import HEAD_LIMIT, Reply, serve
from gateway.runtime.descriptors import ConnectionCap
from tests.fault_support import wait_until

pytestmark = pytest.mark.timeout(30)


async def _hello() -> Reply:
    return Reply(200, "你好\n".encode(), "text/plain; charset=utf-8")


async def _broken() -> Reply:
    raise RuntimeError("a bug in a route")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await serve("127.0.0.1", 0, {"/hello": _hello, "/broken": _broken})
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


async def test_a_get_is_answered_with_length_and_the_connection_closed(port: int) -> None:
    def get() -> tuple[int, str | None, bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?x=1", timeout=5) as r:
            return int(r.status), r.headers["Content-Type"], r.read()

    status, content_type, body = await asyncio.to_thread(get)
    assert (status, content_type, body) == (200, "text/plain; charset=utf-8", "你好\n".encode())
    answer = await _exchange(port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and f"Content-Length: {len(rest)}".encode() in head


async def test_head_gets_the_head_only(port: int) -> None:
    answer = await _exchange(port, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.1 200 OK"
    assert b"Content-Length: 7" in head and rest == b""


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /nothing HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found"),
        (b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed"),
        (b"GET /hello\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /hello SPDY/3\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /broken HTTP/1.1\r\n\r\n", b"HTTP/1.1 500 Internal Server Error"),
        (
            b"GET /hello HTTP/1.1\r\nX-Big: " + b"a" * HEAD_LIMIT + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
    ids=["unknown-path", "other-method", "no-version", "not-http", "route-fails", "head-too-big"],
)
async def test_what_else_a_client_sends_gets_a_framework_s_answer(
    port: int, request_bytes: bytes, status_line: bytes
) -> None:
    answer = await _exchange(port, request_bytes)
    assert _status_line(answer) == status_line
    if status_line.startswith(b"HTTP/1.1 405"):
        assert b"Allow: GET, HEAD" in answer


async def test_a_client_that_sends_no_whole_head_is_disconnected(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain_http, "READ_S", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /hello HTTP/1.1\r\n")  # and never the blank line
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing answered
        assert time.monotonic() - started < 5
    finally:
        writer.close()


async def test_the_server_stays_up_after_a_client_vanishes(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    answer = await _exchange(port, b"GET /hello HTTP/1.1\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.1 200 OK"


async def test_idle_connections_beyond_the_cap_are_closed_and_the_held_ones_still_served() -> None:
    """Idle connections cannot take the descriptors the outbox needs (review of
    2026-12-05: 1,100 of them stopped its commits): one past the cap is closed at
    once, and the port answers again as soon as one goes."""
    cap = ConnectionCap("test", 4)
    server = await serve("127.0.0.1", 0, {"/hello": _hello}, cap=cap)
    port = int(server.sockets[0].getsockname()[1])
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap.limit)]
    try:
        await wait_until(lambda: cap.active == cap.limit, 5, "the server holds them all")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, unanswered
        finally:
            writer.close()
        assert cap.refused == 1 and cap.active == cap.limit
        first_reader, first_writer = held.pop(0)
        first_writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(first_reader.read(), 10)
        assert _status_line(answer) == b"HTTP/1.1 200 OK"
        first_writer.close()
        await wait_until(lambda: cap.active < cap.limit, 5, "the answered one gone")
        assert _status_line(await _exchange(port, b"GET /hello HTTP/1.1\r\n\r\n")) == (
            b"HTTP/1.1 200 OK"
        )
        assert cap.refused == 1
    finally:
        for _, w in held:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("127.0.0.1:9735", True),
        ("localhost:9735", True),
        ("[::1]:9735", True),
        ("10.0.0.7", True),
        (None, True),
        ("", True),
        ("evil.example:9735", False),  # DNS rebinding: a foreign name resolved to us
        ("localhost.evil.example", False),
    ],
)
async def test_only_requests_addressed_to_this_box_are_answered(
    port: int, host: str | None, answered: bool
) -> None:
    """Review of 2026-12-05: ``Host: evil.example`` read /status without a password."""
    header = b"" if host is None else f"Host: {host}\r\n".encode()
    answer = await _exchange(port, b"GET /hello HTTP/1.1\r\n" + header + b"\r\n")
    expected = b"HTTP/1.1 200 OK" if answered else b"HTTP/1.1 421 Misdirected Request"
    assert _status_line(answer) == expected, answer


def test_the_boxs_own_names_from_etc_hosts_and_a_bound_name_are_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A technician typing the box's DNS name is not refused (a fresh review of the
    check): names /etc/hosts gives it, and the name the port is bound to, trailing
    dot or not; another dotted name still is."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.1.1 gw1.school.lan gw1  # Debian\n")
    monkeypatch.setattr(host_check, "HOSTS", hosts)
    host_check._own_names.cache_clear()
    try:
        assert host_allowed("gw1.school.lan:15088", "127.0.0.1")
        assert host_allowed("GW1.school.lan.", "127.0.0.1")
        assert host_allowed("gw1.local", "127.0.0.1")
        assert host_allowed("bench.school.lan", "bench.school.lan.")
        assert not host_allowed("gw1.school.lan.evil.example", "127.0.0.1")
        assert not host_allowed("evil.example", "bench.school.lan")
    finally:
        host_check._own_names.cache_clear()
