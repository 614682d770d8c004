"""A tiny local HTTP/1.1 JSON endpoint to drive simulated Modbus modules from outside.

Routes (JSON in and out; one request per connection, ``Connection: close``):

======  ======================================  =======================  ==============
method  path                                    body                     answer
======  ======================================  =======================  ==============
GET     ``/modules``                            —                        200 every module
GET     ``/modules/<id>``                       —                        200 one module
POST    ``/modules/<id>/inputs/<channel>``      ``{"closed": true}``     200 the module
POST    ``/modules/<id>/press/<channel>``       —                        200 the module
POST    ``/modules/<id>/release/<channel>``     —                        200 the module
POST    ``/modules/<id>/analog/<channel>``      ``{"value": 65000}``     200 the module
POST    ``/modules/<id>/power-cycle``           ``{"off_seconds": 3}``   202 at once
======  ======================================  =======================  ==============

A module's state is ``{"id", "profile", "transport", "address", "running",
"inputs": [closed...], "analog": [raw...], "outputs": [on...], "faults": {"delay_s", "silent",
"short_reply"}}``. Errors answer ``{"error": text}`` with 400, 404, 405 or 409.
The power cycle runs in a task the server owns (cancelled by :meth:`ControlServer.stop`).

Standard library only (asyncio streams); binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine, Mapping
from http import HTTPStatus
from typing import Any

from simulators.lifetime import StartStop
from simulators.modbus_module import SimulatedModule

_MAX_BODY = 64 * 1024
_READ_TIMEOUT_S = 10.0

JsonObject = dict[str, Any]


class ControlError(Exception):
    """The control endpoint refused a request, or could not be reached.

    Attributes:
        status: HTTP status code (0 when no answer was received).
        body: the decoded JSON answer, if any.
    """

    def __init__(self, message: str, *, status: int = 0, body: JsonObject | None = None) -> None:
        self.status = status
        self.body = body or {}
        super().__init__(message)


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        self.status = status
        super().__init__(message)


class ControlServer(StartStop):
    """Serves the routes above for a fixed set of modules.

    Args:
        modules: the simulated modules by module id (the ids the gateway config uses).
        host: address to bind; keep the default (local only) outside a lab.
        port: TCP port; 0 picks a free one, readable from :attr:`port` after start.
    """

    def __init__(
        self, modules: Mapping[str, SimulatedModule], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.modules = dict(modules)
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The TCP port served."""
        return self._port

    async def start(self) -> None:
        """Start listening.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cancel power cycles under way. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- HTTP ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, path, body = await asyncio.wait_for(_read_request(reader), _READ_TIMEOUT_S)
                status, answer = self._route(method, path, body)
            except _HttpError as exc:
                status, answer = exc.status, {"error": str(exc)}
            except (
                TimeoutError,
                ConnectionError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                return  # the peer went away or never sent a whole request
            except Exception as exc:  # a bug here must not kill the endpoint
                status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(exc)}
            payload = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
                + payload
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, method: str, path: str, body: JsonObject) -> tuple[HTTPStatus, JsonObject]:
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if not parts or parts[0] != "modules":
            raise _HttpError(HTTPStatus.NOT_FOUND, f"no route {path}")
        if len(parts) == 1:
            _require(method, "GET")
            return HTTPStatus.OK, {"modules": {i: _state(i, m) for i, m in self.modules.items()}}
        module_id = parts[1]
        module = self.modules.get(module_id)
        if module is None:
            raise _HttpError(HTTPStatus.NOT_FOUND, f"no module {module_id!r}")
        action = parts[2:]
        if not action:
            _require(method, "GET")
            return HTTPStatus.OK, _state(module_id, module)
        _require(method, "POST")
        if action == ["power-cycle"]:
            off = body.get("off_seconds", 3)
            if not isinstance(off, int | float) or isinstance(off, bool) or not 0 <= off <= 3600:
                raise _HttpError(HTTPStatus.BAD_REQUEST, "off_seconds must be a number 0..3600")
            if not module.running:
                raise _HttpError(HTTPStatus.CONFLICT, f"module {module_id!r} is not running")
            self._spawn(module.power_cycle(float(off)))
            return HTTPStatus.ACCEPTED, {"module": module_id, "power_cycle": {"off_seconds": off}}
        if len(action) == 2 and action[0] == "analog":
            value = body.get("value")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise _HttpError(HTTPStatus.BAD_REQUEST, 'body must be {"value": 0..65535}')
            try:
                module.set_analog(_channel(action[1]), value)
            except IndexError as exc:
                raise _HttpError(HTTPStatus.NOT_FOUND, str(exc)) from exc
            return HTTPStatus.OK, _state(module_id, module)
        if len(action) == 2 and action[0] in ("inputs", "press", "release"):
            channel = _channel(action[1])
            if action[0] == "inputs":
                closed = body.get("closed")
                if not isinstance(closed, bool):
                    raise _HttpError(HTTPStatus.BAD_REQUEST, 'body must be {"closed": true|false}')
            else:
                closed = action[0] == "press"
            try:
                module.set_input(channel, closed)
            except IndexError as exc:
                raise _HttpError(HTTPStatus.NOT_FOUND, str(exc)) from exc
            return HTTPStatus.OK, _state(module_id, module)
        raise _HttpError(HTTPStatus.NOT_FOUND, f"no route {path}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _require(method: str, allowed: str) -> None:
    if method != allowed:
        raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allowed}")


def _channel(text: str) -> int:
    if not text.isdigit():
        raise _HttpError(HTTPStatus.BAD_REQUEST, f"channel must be a number, not {text!r}")
    return int(text)


def _state(module_id: str, module: SimulatedModule) -> JsonObject:
    if module.serial_port is not None:
        transport, address = "rtu", module.serial_port
    else:
        transport, address = "tcp", f"{module.host}:{module.port}"
    return {
        "id": module_id,
        "profile": module.profile.name,
        "transport": transport,
        "address": address,
        "running": module.running,
        "inputs": module.inputs,
        "analog": module.analog,
        "outputs": module.outputs,
        "faults": {
            "delay_s": module.delay_s,
            "silent": module.silent,
            "short_reply": module.short_reply,
        },
    }


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, JsonObject]:
    """Read one HTTP/1.1 request: method, path and the JSON body ({} when empty)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, path, _version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "bad request line") from exc
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or int(length_text) > _MAX_BODY:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    raw = await reader.readexactly(int(length_text))
    return method.upper(), path, _decode_object(raw)


def _decode_object(raw: bytes) -> JsonObject:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HttpError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    return body


async def control_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: JsonObject | None = None,
    *,
    timeout_s: float = 10.0,
) -> JsonObject:
    """Send one request to a :class:`ControlServer` and return its JSON answer.

    Args:
        host, port: where the control server listens.
        method: ``GET`` or ``POST``.
        path: e.g. ``/modules/gate-io/press/3``.
        body: JSON object to send, or None.
        timeout_s: for the whole exchange (seconds).

    Raises:
        ControlError: cannot connect, no complete answer in time, an answer that is
            not JSON, or a status other than 2xx (``status`` and ``body`` set).
    """
    payload = json.dumps(body).encode() if body is not None else b""
    request = (
        f"{method.upper()} {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + payload
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"control endpoint {host}:{port}: {exc}") from exc
    head, _, raw = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        status = int(status_line.split(" ", 2)[1])
        decoded = json.loads(raw) if raw else {}
    except (IndexError, ValueError) as exc:
        raise ControlError(f"bad answer from {host}:{port}: {status_line!r}") from exc
    if not isinstance(decoded, dict):
        raise ControlError(f"bad answer from {host}:{port}: not a JSON object", status=status)
    if not 200 <= status < 300:
        message = decoded.get("error", status_line)
        raise ControlError(f"{method} {path}: {status}: {message}", status=status, body=decoded)
    return decoded
