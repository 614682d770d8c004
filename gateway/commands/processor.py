"""Commands from the center: check, dispatch, answer, and keep an audit trail.

A command arrives on ``<prefix>/cmd/<name>`` with the JSON payload
``{correlation_id, issued_at, expires_at, operator, params[, signature]}``
(DESIGN.md "MQTT topics"). It is refused, in this order, when it:

1. came as a retained message (``retained``: a command must never act again
   because a broker replays it to a new subscription);
2. is not a JSON object of at most 16 KiB, nested at most 16 deep (objects and
   arrays), with a non-empty ``correlation_id``, naming no member twice
   (``invalid``; the depth is checked on the bytes before decoding, so a hostile
   payload can never overflow the decoder's or the event writer's stack);
3. has no valid HMAC-SHA256 ``signature`` (``bad_signature``;
   :mod:`gateway.commands.signing`; not checked only when the config says
   ``[commands] allow_unsigned = true``, a bench);
4. has bad times: not RFC 3339 with a zone (``T``/``Z`` in either case), ``issued_at`` later than
   ``clock_skew_s`` ahead, ``expires_at`` not after ``issued_at`` or more than
   ``max_ttl_s`` after it (``invalid``), or ``expires_at`` already past (``expired``);
5. repeats a ``correlation_id`` seen before it expired (``duplicate``: a replay), or
   was issued no later than a command already expired and forgotten (``duplicate``:
   an id is forgotten once its command has expired, and the latest ``issued_at``
   forgotten is kept instead, so a wall clock stepped back never makes a captured
   command valid again), or,
   while the replay guard of the runs before is unknown (the state file unread at
   start, or its guard value unreadable), was issued before this start, timed on
   the monotonic clock (``guard_unknown``: nothing was carried out);
6. names no command this gateway has (``unknown_command``), or its handler
   refuses it (``rejected`` …).

The answer for ``<prefix>/cmd/<name>/result`` is ``{correlation_id, status: "ok",
data}`` or ``{correlation_id, status: "error", error, data: {reason}}``. Every
command, accepted or refused, is also a ``command.result`` event (the audit
trail: who, what, when, outcome; never the signature), stored before the answer
goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from gateway.commands.signing import SIGNATURE_FIELD, loads, verify
from gateway.config.alarm import CommandsConfig
from gateway.errors import CommandRefused, GatewayError
from gateway.events.model import Emit, EventFactory, parse_rfc3339, rfc3339
from gateway.runtime.state import META
from gateway.runtime.state_store import StateStore
from gateway.runtime.timebase import Clock

log = structlog.get_logger(__name__)

MAX_PAYLOAD = 16 * 1024
MAX_DEPTH = 16
"""Deepest nesting of objects/arrays a command may have (the real ones use 3)."""


@dataclass(frozen=True, slots=True)
class Command:
    """A command that passed every check.

    Attributes:
        name: the command (``arm``), from the topic.
        correlation_id: the center's id, echoed in the result.
        issued_at, expires_at: as the center stated them (UTC).
        operator: who sent it (a duty officer's id).
        params: the command's own arguments.
    """

    name: str
    correlation_id: str
    issued_at: datetime
    expires_at: datetime
    operator: str
    params: Mapping[str, Any]


Handler = Callable[[Command], Awaitable[dict[str, Any]]]
"""Carries out a command and returns the result's ``data``; raises CommandRefused."""


class CommandProcessor:
    """Checks and dispatches commands; :meth:`handle` is the uplink's ``on_command``.

    Args:
        prefix: the topic prefix ``campus/v1/<site>/<gateway>`` (signatures cover the topic).
        cfg: ``[commands]``.
        key: the HMAC key, or None when commands are not signed (``allow_unsigned``).
        handlers: command name → handler.
        factory, emit: make and store the ``command.result`` audit events.
        clock: the rules' time.
    """

    def __init__(
        self,
        *,
        prefix: str,
        cfg: CommandsConfig,
        key: bytes | None,
        handlers: Mapping[str, Handler],
        factory: EventFactory,
        emit: Emit,
        clock: Clock,
        store: StateStore | None = None,
    ) -> None:
        self._prefix = prefix
        self._cfg = cfg
        self._key = key
        self._handlers = dict(handlers)
        self._factory = factory
        self._emit = emit
        self._clock = clock
        self._store = store
        # correlation_id -> (expires_at, issued_at) of every command accepted and not
        # yet expired, kept in the state file (the expiry only: an id read from it
        # counts its expiry as when it was issued) so a captured command cannot be
        # replayed after a restart. ``_forgotten``: the latest ``issued_at`` among the
        # ids dropped once expired. A wall clock stepped back makes an expired command
        # look valid again while its id is gone, so a command issued no later than
        # this is a replay (review of 2026-12-04: a captured reset, replayed after a
        # step back, cleared a latched panic); the center's later commands are issued
        # later.
        self._seen, self._forgotten = _load_guard(store)
        # When the guard of the runs before is unknown, a command issued before this
        # start may have been carried out already: such commands are refused. The
        # start is kept on the monotonic clock, so a wall-clock step never moves it.
        self._guard_unknown = _guard_unknown(store)
        self._started = clock.monotonic()
        self._one_at_a_time = asyncio.Lock()  # the uplink runs each command in a task

    async def handle(self, name: str, payload: bytes, retained: bool) -> dict[str, Any]:
        """Check and carry out one command; never raises (but for cancellation).

        Commands are carried out one at a time, in the order they passed their checks.

        Returns:
            The result body for ``<prefix>/cmd/<name>/result``.
        """
        body: dict[str, Any] = {}
        try:
            body = _decode(payload)
            command = self._check(name, body, retained)
            async with self._one_at_a_time:
                await self._remember()
                data = await self._handlers[name](command)
            result: dict[str, Any] = {
                "correlation_id": command.correlation_id,
                "status": "ok",
                "data": data,
            }
        except CommandRefused as exc:
            result = self._error(body, str(exc), exc.reason)
        except GatewayError as exc:  # a device or the state store failed while acting
            result = self._error(body, str(exc), "failed")
        await self._audit(name, body, retained, result)
        return result

    async def _remember(self) -> None:
        """Persist the accepted correlation ids before acting (commit before acting).

        Raises:
            StateError: the state file cannot be written (the command is not carried out).
        """
        if self._store is not None:
            seen: dict[str, Any] = {
                c: [rfc3339(expires), rfc3339(issued)]
                for c, (expires, issued) in self._seen.items()
            }
            if self._forgotten is not None:
                seen[_FORGOTTEN] = rfc3339(self._forgotten)
            await self._store.put_meta(_SEEN_KEY, seen)

    def _check(self, name: str, body: dict[str, Any], retained: bool) -> Command:
        if retained:
            raise CommandRefused("retained commands are refused", command=name, reason="retained")
        correlation_id = body.get("correlation_id")
        if not isinstance(correlation_id, str) or not correlation_id.strip():
            raise CommandRefused("correlation_id missing", command=name, reason="invalid")
        if self._key is not None and not verify(self._key, f"{self._prefix}/cmd/{name}", body):
            raise CommandRefused("bad or missing signature", command=name, reason="bad_signature")
        now = self._clock.now()
        issued_at = _time(body, "issued_at", name)
        expires_at = _time(body, "expires_at", name)
        if issued_at - now > timedelta(seconds=self._cfg.clock_skew_s):
            raise CommandRefused("issued_at is in the future", command=name, reason="invalid")
        ttl = (expires_at - issued_at).total_seconds()
        if not 0 < ttl <= self._cfg.max_ttl_s:
            raise CommandRefused(
                f"expires_at must be 0..{self._cfg.max_ttl_s:g} s after issued_at",
                command=name,
                reason="invalid",
            )
        if expires_at <= now:
            raise CommandRefused(
                f"expired at {rfc3339(expires_at)}", command=name, reason="expired"
            )
        for expires, issued in self._seen.values():  # forgotten now: kept as a floor
            if expires <= now and (self._forgotten is None or issued > self._forgotten):
                self._forgotten = issued
        self._seen = {c: times for c, times in self._seen.items() if times[0] > now}
        if self._forgotten is not None and issued_at <= self._forgotten:
            raise CommandRefused(
                f"issued at {rfc3339(issued_at)}, no later than a command already expired "
                "and forgotten here: a replay (the clock was stepped back since)",
                command=name,
                reason="duplicate",
            )
        started = now - timedelta(seconds=self._clock.monotonic() - self._started)
        if self._guard_unknown and issued_at < started - timedelta(seconds=self._cfg.clock_skew_s):
            raise CommandRefused(
                "issued before this start, and the replay guard of the runs before could "
                "not be read: nothing was carried out, send it again with a new "
                "correlation_id",
                command=name,
                reason="guard_unknown",
            )
        if correlation_id in self._seen:
            raise CommandRefused(
                f"correlation_id {correlation_id!r} was already used",
                command=name,
                reason="duplicate",
            )
        self._seen[correlation_id] = (expires_at, issued_at)
        operator, params = body.get("operator", ""), body.get("params", {})
        if not isinstance(operator, str) or not isinstance(params, dict):
            raise CommandRefused(
                "operator must be a string and params an object", command=name, reason="invalid"
            )
        if name not in self._handlers:
            raise CommandRefused(
                f"unknown command {name!r}; known: {', '.join(sorted(self._handlers))}",
                command=name,
                reason="unknown_command",
            )
        return Command(name, correlation_id, issued_at, expires_at, operator, params)

    @staticmethod
    def _error(body: dict[str, Any], message: str, reason: str) -> dict[str, Any]:
        correlation_id = body.get("correlation_id")
        return {
            "correlation_id": correlation_id if isinstance(correlation_id, str) else None,
            "status": "error",
            "error": message,
            "data": {"reason": reason},
        }

    async def _audit(
        self, name: str, body: dict[str, Any], retained: bool, result: dict[str, Any]
    ) -> None:
        data: dict[str, Any] = {
            "command": name,
            "correlation_id": result["correlation_id"],
            "operator": body.get("operator") if isinstance(body.get("operator"), str) else None,
            "params": body.get("params") if isinstance(body.get("params"), dict) else None,
            "issued_at": body.get("issued_at") if isinstance(body.get("issued_at"), str) else None,
            "expires_at": body.get("expires_at")
            if isinstance(body.get("expires_at"), str)
            else None,
            "retained": retained,
            "signed": SIGNATURE_FIELD in body,
            "status": result["status"],
        }
        if result["status"] == "error":
            data["error"] = result["error"]
            data["reason"] = result["data"]["reason"]
        event = self._factory.make(
            "command.result",
            device="gateway",
            subject=name[:64] or "-",
            state="instant",
            data=data,
            received_at=self._clock.now(),
        )
        await self._emit(event)
        log.info(
            "command.handled",
            command=name,
            correlation_id=data["correlation_id"],
            operator=data["operator"],
            status=result["status"],
            reason=data.get("reason"),
        )


def _decode(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise CommandRefused(f"payload over {MAX_PAYLOAD} bytes", reason="invalid")
    depth = _nesting(payload)
    if depth > MAX_DEPTH:
        raise CommandRefused(
            f"payload nested {depth} deep, more than {MAX_DEPTH}", reason="invalid"
        )
    try:
        body = loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:  # DuplicateKeyError too
        raise CommandRefused(f"payload is not JSON: {exc}", reason="invalid") from exc
    if not isinstance(body, dict):
        raise CommandRefused("payload is not a JSON object", reason="invalid")
    return body


def _nesting(payload: bytes) -> int:
    """The deepest nesting of ``{``/``[`` in ``payload`` outside JSON strings (bytes, so
    before any decoding; an unbalanced payload is left for the decoder to refuse)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


def _time(body: Mapping[str, Any], field: str, name: str) -> datetime:
    text = body.get(field)
    try:
        if not isinstance(text, str):
            raise ValueError(field)
        return parse_rfc3339(text)
    except ValueError as exc:
        raise CommandRefused(
            f"{field} must be an RFC 3339 time with a zone", command=name, reason="invalid"
        ) from exc


_SEEN_KEY = "commands_seen"


def _guard_unknown(store: StateStore | None) -> bool:
    """Whether the replay guard of the runs before could not be read: the state file
    unread, or its ``commands_seen`` value left out or not an object (review of
    2026-12-03: a torn value let a replay through)."""
    if store is None:
        return False
    if store.unread is not None or (META.name, _SEEN_KEY) in store.left_out:
        return True
    raw = store.meta(_SEEN_KEY)
    return raw is not None and not isinstance(raw, dict)


_FORGOTTEN = ""
"""The key of the guard's floor (``CommandProcessor._forgotten``) in the persisted
``commands_seen`` object: never a correlation id, which must not be empty."""


def _load_guard(
    store: StateStore | None,
) -> tuple[dict[str, tuple[datetime, datetime]], datetime | None]:
    """The persisted replay guard: each correlation id's ``[expiry, issue time]``, and
    the floor under :data:`_FORGOTTEN`. A file written before issue times were kept
    holds the expiry alone, taken as the issue time too (the safe side: the floor
    it makes is later than the real one). The issue time is what the floor becomes
    once the id is forgotten: the expiry there refused, as a replay, every command
    issued before it (a review of 2026-12-05, after a restart)."""
    raw = store.meta(_SEEN_KEY) if store is not None else None
    if not isinstance(raw, dict):
        return {}, None
    seen: dict[str, tuple[datetime, datetime]] = {}
    forgotten: datetime | None = None
    for correlation_id, value in raw.items():
        with contextlib.suppress(TypeError, ValueError):
            texts = value if isinstance(value, list) and len(value) == 2 else [value, value]
            expires, issued = (datetime.fromisoformat(str(t).replace("Z", "+00:00")) for t in texts)
            if correlation_id == _FORGOTTEN:
                forgotten = expires
            else:
                seen[str(correlation_id)] = (expires, issued)
    return seen, forgotten
