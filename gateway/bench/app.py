"""The bench page's routes (aiohttp).

==================================  ==========================================================
``GET /``                           the page (``static/index.html``; it loads the rest)
``GET /static/…``                   ``bench.css``, ``bench.js``
``GET /api/session``                ``{"password": bool, "logged_in": bool}``
``POST /api/login``                 ``{"password"}`` → session cookie; 401 wrong, 429 locked
``POST /api/logout``                ends the session
``GET /api/state``                  the page document (:mod:`gateway.bench.model`)
``GET /api/stream``                 server-sent events: ``state`` with the document on change
``GET /camera/<id>/latest.jpg``     the camera's last evidence picture (404 when none)
``GET /api/walk-test``              the running walk test and the stored reports
``POST /api/walk-test``             ``{"technician", "duration_s", "area"|"zones"}`` starts one
``POST /api/walk-test/stop``        ``{"technician"}`` ends the running one
==================================  ==========================================================

With a password every route but ``/``, ``/static/…`` and the session routes
needs a session (401 otherwise); the walk-test routes always do (403 when no
password is set: the page is then read-only). A POST from another origin is
refused (403), and POST bodies must be JSON. Responses carry a strict
Content-Security-Policy: the page loads nothing from anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from gateway.bench.auth import COOKIE, SESSION_S, LockedOut
from gateway.bench.context import BenchContext
from gateway.errors import CommandRefused
from gateway.ops import host_check
from gateway.ops.host_check import host_allowed

STATIC = Path(str(resources.files("gateway.bench").joinpath("static")))
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STREAM_WAIT_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(ctx: BenchContext, bound_host: str) -> web.Application:
    """The aiohttp application of the bench page, its port bound to ``bound_host``."""
    app = web.Application(
        middlewares=[_headers, _this_box(bound_host), _same_origin], client_max_size=64 * 1024
    )
    routes = BenchRoutes(ctx)
    app.router.add_get("/", routes.index)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/api/session", routes.session)
    app.router.add_post("/api/login", routes.login)
    app.router.add_post("/api/logout", routes.logout)
    app.router.add_get("/api/state", routes.viewer(routes.state))
    app.router.add_get("/api/stream", routes.viewer(routes.stream))
    app.router.add_get("/camera/{camera}/latest.jpg", routes.viewer(routes.picture))
    app.router.add_get("/api/walk-test", routes.viewer(routes.walk_tests))
    app.router.add_post("/api/walk-test", routes.technician(routes.walk_start))
    app.router.add_post("/api/walk-test/stop", routes.technician(routes.walk_stop))
    return app


class BenchRoutes:
    """The handlers, bound to one :class:`BenchContext`."""

    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx

    # -- guards ----------------------------------------------------------------------------

    def viewer(self, handler: Handler) -> Handler:
        """``handler`` for whoever may look at the page."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.ctx.auth.may_view(request.cookies.get(COOKIE)):
                return _error(401, "log in with the bench password")
            return await handler(request)

        return guarded

    def technician(self, handler: Handler) -> Handler:
        """``handler`` for a logged-in technician only."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.ctx.auth.enabled:
                return _error(403, "walk tests from the page need [bench] password_file")
            if not self.ctx.auth.valid(request.cookies.get(COOKIE)):
                return _error(401, "log in with the bench password")
            return await handler(request)

        return guarded

    # -- page and session ------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def session(self, request: web.Request) -> web.StreamResponse:
        auth = self.ctx.auth
        return web.json_response(
            {"password": auth.enabled, "logged_in": auth.valid(request.cookies.get(COOKIE))}
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        attempt = body.get("password")
        if not isinstance(attempt, str):
            return _error(400, "password missing")
        try:
            token = self.ctx.auth.login(attempt, request.remote or "?")
        except LockedOut as exc:
            return _error(429, str(exc), headers={"Retry-After": f"{exc.retry_after:.0f}"})
        if token is None:
            return _error(401, "wrong password" if self.ctx.auth.enabled else "no password is set")
        response = web.json_response({"logged_in": True})
        response.set_cookie(
            COOKIE, token, max_age=int(SESSION_S), httponly=True, samesite="Strict", path="/"
        )
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.ctx.auth.logout(request.cookies.get(COOKIE))
        response = web.json_response({"logged_in": False})
        response.del_cookie(COOKIE, path="/")
        return response

    # -- what the page shows ---------------------------------------------------------------

    async def state(self, request: web.Request) -> web.StreamResponse:
        live = self.ctx.live
        await live.refresh()  # built on demand: nothing is kept current unwatched
        return _json_response(live.document)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        live, token = self.ctx.live, request.cookies.get(COOKIE)
        async with sse_response(request) as response:
            with live.watching():
                version = 0  # nothing built yet: the first document is version 1
                # The session is checked at every turn: a logout or an expired session
                # ends the stream within _STREAM_WAIT_S (a review of 2026-12-06: an
                # open stream went on sending the state after the logout).
                while response.is_connected() and self.ctx.auth.may_view(token):
                    newer = await live.newer_than(version, _STREAM_WAIT_S)
                    if newer is None:
                        continue  # quiet: aiohttp-sse's own pings keep the line checked
                    version, document = newer
                    await response.send(json.dumps(document, ensure_ascii=False), event="state")
        return response

    async def picture(self, request: web.Request) -> web.StreamResponse:
        picture = self.ctx.feed.pictures.get(request.match_info["camera"])
        if picture is None:
            return _error(404, "no picture from this camera since the gateway started")
        return web.Response(
            body=picture.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )

    async def walk_tests(self, request: web.Request) -> web.StreamResponse:
        walk = self.ctx.walk
        return _json_response({**walk.snapshot(), "reports": walk.reports()})

    async def walk_start(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        who = _technician(body)
        try:
            duration = float(body.get("duration_s", 0))
            area = body.get("area") or None
            zones = body.get("zones") or []
            if not isinstance(zones, list) or (area is not None and not isinstance(area, str)):
                raise CommandRefused("area must be an id and zones a list of ids", reason="invalid")
            test = await self.ctx.walk.start(
                by=who, source="bench", duration_s=duration, area=area, zones=zones
            )
        except (CommandRefused, TypeError, ValueError) as exc:
            return _error(409, str(exc))
        await self.ctx.live.refresh()
        return _json_response(test.summary())

    async def walk_stop(self, request: web.Request) -> web.StreamResponse:
        who = _technician(await _json(request))
        try:
            report = await self.ctx.walk.stop(by=who)
        except CommandRefused as exc:
            return _error(409, str(exc))
        await self.ctx.live.refresh()
        return _json_response(report)


def _technician(body: dict[str, Any]) -> str:
    name = body.get("technician")
    name = name.strip()[:64] if isinstance(name, str) else ""
    return f"bench:{name or 'technician'}"


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON")
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="send a JSON object")
    return body


def _json_response(body: Any) -> web.Response:
    return web.json_response(
        body,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:  # a finished event stream has sent its headers already
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _this_box(bound: str) -> Any:
    """Requests whose ``Host`` names another box are refused (no DNS rebinding:
    ``gateway/ops/host_check.py``)."""

    @web.middleware
    async def this_box(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), bound):
            return _error(host_check.STATUS, host_check.REASON)
        return await handler(request)

    return this_box


@web.middleware
async def _same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if (
        request.method == "POST"
        and origin is not None
        and origin.split("://", 1)[-1] != request.host
    ):
        return _error(403, "cross-origin request refused")
    return await handler(request)
