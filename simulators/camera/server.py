"""A simulated ONVIF camera on a real HTTP port (aiohttp): device, media and events services.

=========================================  ===============================================
path                                       serves
=========================================  ===============================================
``POST /onvif/device_service``             GetSystemDateAndTime (no auth), GetServices,
                                           GetDeviceInformation
``POST /onvif/media_service``              GetProfiles, GetSnapshotUri, GetStreamUri
``POST /onvif/event_service``              GetEventProperties, CreatePullPointSubscription
``POST /onvif/subscription/<id>``          PullMessages, Renew, Unsubscribe
``GET /onvif/snapshot.jpg``                a generated JPEG (HTTP Digest, Basic or none),
                                           or the failure ``snapshot_fault`` says
``GET /stream.mjpg``                       the same pictures as MJPEG over HTTP (the
                                           stream URI; OpenCV reads it like RTSP)
=========================================  ===============================================

Every SOAP operation but GetSystemDateAndTime needs a WS-UsernameToken digest
that is fresh by the camera's own clock (``clock_offset_s`` makes it lie). Faults
are first-class inputs (STYLE.md rule 12): :meth:`SimulatedCamera.fail_next`
(HTTP 500, SOAP Fault, HTML page), :meth:`SimulatedCamera.reboot` (port closed,
subscriptions gone), a camera without a snapshot URI, a camera without an events
service (``events_service=False``: not in GetServices, every events operation a
``ter:ActionNotSupported`` Fault, as IPyCam lists only device and media), a
snapshot URI that fails (``snapshot_fault``: ``http401`` whatever the
credentials, ``http500``, ``hang``, ``empty``), and the Reolink ``GetServices`` with an
undeclared ``tad:`` prefix (quirk ``undeclared_prefix``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from simulators.broker import pick_free_port
from simulators.camera.httpauth import HttpAuth
from simulators.camera.picture import test_card
from simulators.camera.pullpoint import EventSource
from simulators.camera.soap import (
    SoapRequest,
    envelope,
    fault,
    parse_request,
    parse_termination,
    token_valid,
    xml_time,
)
from simulators.lifetime import StartStop

_SOAP = "application/soap+xml; charset=utf-8"
_HTML_404 = b"<html><head><title>404 File Not Found</title></head><body>Not Found</body></html>"
SNAPSHOT_FAULTS = (None, "http401", "http500", "hang", "empty")
"""What ``snapshot_fault`` may be (None: the snapshot URI works)."""
_SERVICES = (
    ("http://www.onvif.org/ver10/device/wsdl", "device_service"),
    ("http://www.onvif.org/ver10/media/wsdl", "media_service"),
    ("http://www.onvif.org/ver10/events/wsdl", "event_service"),
)


@dataclass(slots=True)
class CameraOptions:
    """How one simulated camera behaves.

    Attributes:
        camera_id: shown on its pictures.
        username, password: the ONVIF (and snapshot) user.
        host, port: where it listens; port 0 picks a free one, kept across reboots.
        clock_offset_s: how far the camera's clock is ahead of the true UTC time.
        auth_window_s: how far a UsernameToken's ``Created`` may be from the camera clock.
        snapshot_uri: the media service gives a snapshot URI (else only a stream URI).
        snapshot_auth: ``digest``, ``basic`` or ``none`` on the snapshot URI.
        snapshot_fault: None (pictures), or how the snapshot URI fails: ``http401``
            (refuses every credential), ``http500``, ``hang`` (answers nothing),
            ``empty`` (200 with no body, as busy firmware does).
        events_service: it has an events service (PullPoint); False: a camera
            that gives pictures only.
        width, height: picture size in pixels.
        max_subscription_s: the longest subscription it grants (cameras often
            grant less than asked, e.g. two minutes in the hikcompat capture).
        quirks: ``undeclared_prefix`` (GetServices as the Reolink capture has it).
    """

    camera_id: str = "cam"
    username: str = "admin"
    password: str = "admin"
    host: str = "127.0.0.1"
    port: int = 0
    clock_offset_s: float = 0.0
    auth_window_s: float = 10.0
    snapshot_uri: bool = True
    snapshot_auth: str = "digest"
    snapshot_fault: str | None = None
    events_service: bool = True
    width: int = 640
    height: int = 360
    max_subscription_s: float = 3600.0
    quirks: frozenset[str] = field(default_factory=frozenset)


class SimulatedCamera(StartStop):
    """One simulated camera. ``async with SimulatedCamera(CameraOptions(...)) as cam:``.

    Attributes:
        requests: SOAP operations received (also refused ones), by name.
        snapshots: pictures served on the snapshot URI.
        snapshot_requests: requests on the snapshot URI (also refused or left hanging).
        snapshot_refusals: snapshot requests answered 401 (a challenge, or refused).
        boots: how many times it (re)started.
        events: the event source (subscriptions, properties).
    """

    def __init__(self, options: CameraOptions | None = None) -> None:
        self.options = options or CameraOptions()
        if self.options.port == 0:
            self.options.port = pick_free_port(self.options.host)
        self.events = EventSource()
        self.requests: Counter[str] = Counter()
        self.snapshots = 0
        self.snapshot_requests = 0
        self.snapshot_refusals = 0
        self.boots = 0
        self._frame = 0
        self._faults: dict[str, deque[str]] = {}
        self._auth = HttpAuth(self.options.snapshot_auth, self.options.username,
                              self.options.password)  # fmt: skip
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The HTTP port (the same across reboots)."""
        return self.options.port

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.options.host}:{self.options.port}"

    @property
    def running(self) -> bool:
        """True while the port accepts connections."""
        return self._runner is not None

    def now(self) -> datetime:
        """The camera's clock (true UTC plus ``clock_offset_s``)."""
        return datetime.now(UTC) + timedelta(seconds=self.options.clock_offset_s)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/onvif/subscription/{sid}", self._soap)
        app.router.add_post("/onvif/{service}", self._soap)
        app.router.add_get("/onvif/snapshot.jpg", self._snapshot)
        app.router.add_get("/stream.mjpg", self._stream)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        await site.start()
        self._runner = runner
        self.boots += 1

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- inputs a test or the control endpoint drives --------------------------------------

    def trigger(self, kind: str, active: bool = True, source: str | None = None) -> None:
        """Raise or end ``motion``/``tamper``/``field``/``input``, or pulse ``line``.

        Raises:
            KeyError: an unknown kind.
        """
        self.events.trigger(kind, active, self.now(), source)

    def replay(self, messages: list[str]) -> None:
        """Send recorded ``wsnt:NotificationMessage`` XML (``pullpoint.load_capture``) as is."""
        for message in messages:
            self.events.publish(message)

    def fail_next(self, operation: str, mode: str, count: int = 1) -> None:
        """Answer the next ``count`` requests for ``operation`` with a failure.

        Args:
            operation: SOAP operation (``Renew``, ``PullMessages`` …).
            mode: ``http500`` (empty 500), ``fault`` (SOAP Fault ``ter:InvalidArgVal``),
                ``unsupported`` (SOAP Fault ``ter:ActionNotSupported``), ``html``
                (HTTP 200 with an HTML 404 page).
        """
        self._faults.setdefault(operation, deque()).extend([mode] * count)

    async def reboot(self, off_seconds: float) -> None:
        """Power-cycle: the port closes, every subscription and state is lost, then it is back."""
        await self.stop()
        self.events.reset()
        await asyncio.sleep(off_seconds)
        await self.start()

    # -- HTTP handlers ----------------------------------------------------------------------

    async def _soap(self, request: web.Request) -> web.StreamResponse:
        try:
            soap = parse_request(await request.read())
        except ValueError:
            return _answer(fault("ter:WellFormed", "not a SOAP request"), 400)
        self.requests[soap.operation] += 1
        injected = self._faults.get(soap.operation)
        if injected:
            return _injected(injected.popleft())
        if soap.operation != "GetSystemDateAndTime" and not token_valid(
            soap, self.options.username, self.options.password, self.now(),
            self.options.auth_window_s,
        ):  # fmt: skip
            return _answer(fault("ter:NotAuthorized", "Sender not authorized"), 400)
        handler = getattr(self, f"_op_{soap.operation}", None)
        no_events = not self.options.events_service and (
            request.match_info.get("service") == "event_service" or "sid" in request.match_info
        )
        if handler is None or no_events:
            return _answer(fault("ter:ActionNotSupported", soap.operation, receiver=True), 400)
        result: web.StreamResponse = await handler(soap, request)
        return result

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        self.snapshot_requests += 1
        fault = self.options.snapshot_fault
        if fault == "hang":
            await asyncio.Event().wait()
        if fault == "http500":
            return web.Response(status=500)
        if fault == "empty":
            return web.Response(body=b"", content_type="image/jpeg")
        accepted = self._auth.accepts(request.method, request.headers.get("Authorization"))
        if fault == "http401" or not accepted:
            self.snapshot_refusals += 1
            return web.Response(status=401, headers={"WWW-Authenticate": self._auth.challenge()})
        self.snapshots += 1
        return web.Response(body=self._picture(), content_type="image/jpeg")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                jpeg = self._picture()
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                await response.write(head.encode() + jpeg + b"\r\n")
                await asyncio.sleep(0.1)
        return response

    def _picture(self) -> bytes:
        self._frame += 1
        o = self.options
        return test_card(o.camera_id, self._frame, self.now(), width=o.width, height=o.height)

    # -- device service ---------------------------------------------------------------------

    async def _op_GetSystemDateAndTime(self, _: SoapRequest, __: web.Request) -> web.Response:
        t = self.now()
        return _answer(
            envelope(
                "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
                "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false"
                "</tt:DaylightSavings><tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>"
                f"<tt:UTCDateTime><tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}"
                f"</tt:Minute><tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>"
                f"{t.year}</tt:Year><tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day>"
                "</tt:Date></tt:UTCDateTime></tds:SystemDateAndTime>"
                "</tds:GetSystemDateAndTimeResponse>"
            )
        )

    async def _op_GetServices(self, _: SoapRequest, __: web.Request) -> web.Response:
        broken = "undeclared_prefix" in self.options.quirks
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{self.base_url}/onvif/"
            f"{path}</tds:XAddr>"
            + ("<tds:Capabilities><tad:Capabilities/></tds:Capabilities>" if broken else "")
            + "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
            "</tds:Service>"
            for ns, path in _SERVICES
            if self.options.events_service or path != "event_service"
        )
        return _answer(envelope(f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"))

    async def _op_GetDeviceInformation(self, _: SoapRequest, __: web.Request) -> web.Response:
        return _answer(
            envelope(
                "<tds:GetDeviceInformationResponse><tds:Manufacturer>campus-sim</tds:Manufacturer>"
                f"<tds:Model>SimCam</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>"
                f"<tds:SerialNumber>{self.options.camera_id}</tds:SerialNumber>"
                "<tds:HardwareId>1</tds:HardwareId></tds:GetDeviceInformationResponse>"
            )
        )

    # -- media service ----------------------------------------------------------------------

    async def _op_GetProfiles(self, _: SoapRequest, __: web.Request) -> web.Response:
        o = self.options
        return _answer(
            envelope(
                '<trt:GetProfilesResponse><trt:Profiles token="Profile_1" fixed="true">'
                "<tt:Name>MainStream</tt:Name>"
                '<tt:VideoSourceConfiguration token="VideoSourceConfig_1"><tt:Name>VSC</tt:Name>'
                "<tt:UseCount>1</tt:UseCount><tt:SourceToken>VideoSource_1</tt:SourceToken>"
                f'<tt:Bounds x="0" y="0" width="{o.width}" height="{o.height}"/>'
                "</tt:VideoSourceConfiguration></trt:Profiles></trt:GetProfilesResponse>"
            )
        )

    async def _op_GetSnapshotUri(self, _: SoapRequest, __: web.Request) -> web.Response:
        if not self.options.snapshot_uri:
            return _answer(fault("ter:ActionNotSupported", "no snapshot", receiver=True), 400)
        return _media_uri("GetSnapshotUriResponse", f"{self.base_url}/onvif/snapshot.jpg")

    async def _op_GetStreamUri(self, _: SoapRequest, __: web.Request) -> web.Response:
        return _media_uri("GetStreamUriResponse", f"{self.base_url}/stream.mjpg")

    # -- event service ----------------------------------------------------------------------

    async def _op_GetEventProperties(self, _: SoapRequest, __: web.Request) -> web.Response:
        return _answer(
            envelope(
                "<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>"
                "http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
                "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet>"
                '<tns1:RuleEngine wstop:topic="true"/><tns1:Device wstop:topic="true"/>'
                "</wstop:TopicSet><wsnt:TopicExpressionDialect>"
                "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
                "</wsnt:TopicExpressionDialect><tev:MessageContentFilterDialect>"
                "http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
                "</tev:MessageContentFilterDialect><tev:MessageContentSchemaLocation>"
                "http://www.onvif.org/onvif/ver10/schema/onvif.xsd"
                "</tev:MessageContentSchemaLocation></tev:GetEventPropertiesResponse>"
            )
        )

    async def _op_CreatePullPointSubscription(
        self, soap: SoapRequest, _: web.Request
    ) -> web.Response:
        now = self.now()
        until = self._grant(soap.text("InitialTerminationTime"), now)
        sub = self.events.subscribe(now, until)
        return _answer(
            envelope(
                "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
                f"<wsa5:Address>{self.base_url}/onvif/subscription/{sub.id}</wsa5:Address>"
                f"</tev:SubscriptionReference><wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime>"
                f"<wsnt:TerminationTime>{xml_time(until)}</wsnt:TerminationTime>"
                "</tev:CreatePullPointSubscriptionResponse>"
            )
        )

    async def _op_PullMessages(self, soap: SoapRequest, request: web.Request) -> web.Response:
        sub = self.events.live(request.match_info.get("sid", ""), self.now())
        if sub is None:
            return _unknown_subscription()
        timeout = parse_termination(soap.text("Timeout"), self.now(), 5) - self.now()
        limit = int(soap.text("MessageLimit") or 100)
        messages = await self.events.pull(sub, max(0.0, timeout.total_seconds()), limit)
        now = self.now()
        return _answer(
            envelope(
                f"<tev:PullMessagesResponse><tev:CurrentTime>{xml_time(now)}</tev:CurrentTime>"
                f"<tev:TerminationTime>{xml_time(sub.expires)}</tev:TerminationTime>"
                + "".join(messages)
                + "</tev:PullMessagesResponse>"
            )
        )

    async def _op_Renew(self, soap: SoapRequest, request: web.Request) -> web.Response:
        now = self.now()
        sub = self.events.live(request.match_info.get("sid", ""), now)
        if sub is None:
            return _unknown_subscription()
        sub.expires = self._grant(soap.text("TerminationTime"), now)
        return _answer(
            envelope(
                f"<wsnt:RenewResponse><wsnt:TerminationTime>{xml_time(sub.expires)}"
                f"</wsnt:TerminationTime><wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime>"
                "</wsnt:RenewResponse>"
            )
        )

    def _grant(self, asked: str | None, now: datetime) -> datetime:
        limit = now + timedelta(seconds=self.options.max_subscription_s)
        return min(parse_termination(asked, now, 60), limit)

    async def _op_Unsubscribe(self, _: SoapRequest, request: web.Request) -> web.Response:
        if self.events.subscriptions.pop(request.match_info.get("sid", ""), None) is None:
            return _unknown_subscription()
        return _answer(envelope("<wsnt:UnsubscribeResponse/>"))


def _answer(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": _SOAP})


def _media_uri(operation: str, uri: str) -> web.Response:
    return _answer(
        envelope(
            f"<trt:{operation}><trt:MediaUri><tt:Uri>{uri}</tt:Uri><tt:InvalidAfterConnect>false"
            "</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            f"<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{operation}>"
        )
    )


def _unknown_subscription() -> web.Response:
    return _answer(fault("wsrf-rw:ResourceUnknownFault", "no such subscription"), 400)


def _injected(mode: str) -> web.Response:
    if mode == "http500":
        return web.Response(status=500)
    if mode == "html":
        return web.Response(body=_HTML_404, content_type="text/html")
    if mode == "unsupported":
        return _answer(fault("ter:ActionNotSupported", "not supported", receiver=True), 400)
    return _answer(fault("ter:InvalidArgVal", f"injected fault ({mode})"), 400)
