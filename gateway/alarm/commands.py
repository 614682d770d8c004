"""What each command from the center does (checked first by :mod:`gateway.commands.processor`).

=========  =========================================  ==========================================
command    params                                     data of an ``ok`` result
=========  =========================================  ==========================================
arm        ``area``, ``force`` (bool, default false)  ``area``, ``armed``, ``changed``, ``bypassed``
disarm     ``area``                                   ``area``, ``armed``, ``changed``, ``silenced``
bypass     ``zone``, ``duration_s`` (none: until the  ``zone``, ``until``
           area is disarmed)
unbypass   ``zone``                                   ``zone``, ``changed``
reset      ``zone`` or ``area`` (none: every zone)    ``cleared``, ``still_violated``
ack        ``zone`` or ``area`` (none: every zone)    ``acknowledged``, ``silenced``
output     ``output``, ``on`` (bool), ``duration_s``  ``output``, ``on``
walk_test  ``area`` and/or ``zones`` (list),          ``id``, ``zones``, ``panic_zones``,
           ``duration_s``; ``panic_duration_s`` when  ``kept_live``, ``until``, ``panic_until``
           ``zones`` names panic zones; or ``stop``   (with ``stop``: the report)
           (true) to end the running one
get_state  —                                          ``areas``, ``zones``, ``outputs``,
                                                      ``walk_test``, ``time``
ping       —                                          ``pong``, ``time``
=========  =========================================  ==========================================

A ``reset`` or ``ack`` naming one zone that has nothing to reset or acknowledge
is refused (``rejected``); with no zone named, zones without alarms are skipped.
A reset clears latched panic alarms (GB 50394 §5.2.3) only once the button is
released. ``ack`` silences the outputs linked to the acknowledged zones. An
``output`` write the module does not confirm is refused with reason ``failed``;
the output keeps trying. A ``walk_test`` is described in :mod:`gateway.alarm.walk_test`;
only this signed command may put a panic zone in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from gateway.commands.processor import Command, Handler
from gateway.errors import CommandRefused
from gateway.events.model import rfc3339

if TYPE_CHECKING:
    from gateway.alarm.system import AlarmSystem


def command_handlers(system: AlarmSystem) -> dict[str, Handler]:
    """The handler of every command, bound to ``system``."""

    async def arm(command: Command) -> dict[str, Any]:
        area = _text(command, "area")
        force = _flag(command, "force")
        was = system.areas.armed(area) if area in system.areas.config else None
        bypassed = await system.arm(area, by=command.operator or "center", force=force)
        return {"area": area, "armed": True, "changed": was is False, "bypassed": bypassed}

    async def disarm(command: Command) -> dict[str, Any]:
        area = _text(command, "area")
        was = system.areas.armed(area) if area in system.areas.config else None
        silenced = await system.disarm(area, by=command.operator or "center")
        return {"area": area, "armed": False, "changed": was is True, "silenced": silenced}

    async def bypass(command: Command) -> dict[str, Any]:
        zone = _text(command, "zone")
        duration = _number(command, "duration_s", required=False)
        until = None if duration is None else system.clock.now() + timedelta(seconds=duration)
        await system.zones.bypasses.bypass(
            zone, until=until, by=command.operator or "center", reason="command"
        )
        return {"zone": zone, "until": rfc3339(until) if until else "disarm"}

    async def unbypass(command: Command) -> dict[str, Any]:
        zone = _text(command, "zone")
        changed = await system.zones.bypasses.unbypass(zone, by=command.operator or "center")
        return {"zone": zone, "changed": changed}

    async def reset(command: Command) -> dict[str, Any]:
        zone_ids = _targets(system, command)
        cleared = [z for z in zone_ids if await system.zones.reset(z)]
        still = [z for z in zone_ids if system.zones.zones[z].alarm.active]
        if "zone" in command.params and not cleared:
            raise CommandRefused(
                f"zone {zone_ids[0]} has no alarm to reset, or it is still violated",
                command="reset",
            )
        return {"cleared": cleared, "still_violated": still}

    async def ack(command: Command) -> dict[str, Any]:
        zone_ids = _targets(system, command)
        acknowledged = [z for z in zone_ids if system.zones.acknowledge(z)]
        if "zone" in command.params and not acknowledged:
            raise CommandRefused(f"zone {zone_ids[0]} has no active alarm", command="ack")
        linked = {o for z in acknowledged for o in system.outputs.linked(system.zones.config[z])}
        silenced = await system.outputs.silence(sorted(linked), "acknowledged")
        return {"acknowledged": acknowledged, "silenced": silenced}

    async def output(command: Command) -> dict[str, Any]:
        output_id = _text(command, "output")
        on = _flag(command, "on", required=True)
        duration = _number(command, "duration_s", required=False)
        reason = f"command by {command.operator or 'center'}"
        if not await system.outputs.switch(output_id, on, duration_s=duration, reason=reason):
            raise CommandRefused(
                f"output {output_id}: the module did not confirm; retrying",
                command="output",
                reason="failed",
            )
        return {"output": output_id, "on": on}

    async def walk_test(command: Command) -> dict[str, Any]:
        who = command.operator or "center"
        if _flag(command, "stop"):
            return await system.walk.stop(by=who)
        area = _text(command, "area") if "area" in command.params else None
        duration = _seconds(command, "duration_s", required=True)
        assert duration is not None
        test = await system.walk.start(
            by=who,
            source="command",
            duration_s=duration,
            area=area,
            zones=_texts(command, "zones"),
            panic_duration_s=_seconds(command, "panic_duration_s", required=False),
            allow_panic=True,
        )
        summary = test.summary()
        return {k: summary[k] for k in ("id", "zones", "panic_zones", "kept_live", "until",
                                        "panic_until")}  # fmt: skip

    async def get_state(command: Command) -> dict[str, Any]:
        return {
            "areas": system.areas.snapshot(),
            "zones": system.zones.snapshot(),
            "outputs": system.outputs.snapshot(),
            "walk_test": system.walk.snapshot(),
            "time": rfc3339(system.clock.now()),
        }

    async def ping(command: Command) -> dict[str, Any]:
        return {"pong": True, "time": rfc3339(system.clock.now())}

    return {
        "arm": arm,
        "disarm": disarm,
        "bypass": bypass,
        "unbypass": unbypass,
        "reset": reset,
        "ack": ack,
        "output": output,
        "walk_test": walk_test,
        "get_state": get_state,
        "ping": ping,
    }


def _targets(system: AlarmSystem, command: Command) -> list[str]:
    """The zones a ``reset``/``ack`` is about: one zone, one area's zones, or all."""
    params: Mapping[str, Any] = command.params
    if "zone" in params:
        zone = _text(command, "zone")
        if zone not in system.zones.config:
            raise CommandRefused(f"no zone {zone!r}", command=command.name, reason="invalid")
        return [zone]
    if "area" in params:
        area = _text(command, "area")
        if area not in system.areas.members:
            raise CommandRefused(f"no area {area!r}", command=command.name, reason="invalid")
        return list(system.areas.members[area])
    return list(system.zones.config)


def _text(command: Command, name: str) -> str:
    value = command.params.get(name)
    if not isinstance(value, str) or not value:
        raise CommandRefused(f"params.{name} must be a non-empty string", reason="invalid")
    return value


def _flag(command: Command, name: str, *, required: bool = False) -> bool:
    value = command.params.get(name, None if required else False)
    if not isinstance(value, bool):
        raise CommandRefused(f"params.{name} must be true or false", reason="invalid")
    return value


def _texts(command: Command, name: str) -> list[str]:
    """A list of non-empty strings (empty when the param is absent)."""
    value = command.params.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CommandRefused(f"params.{name} must be a list of ids", reason="invalid")
    return list(value)


def _seconds(command: Command, name: str, *, required: bool) -> float | None:
    """A positive number of seconds (its upper limit is checked by whoever uses it)."""
    value = command.params.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise CommandRefused(
            f"params.{name} must be a positive number of seconds", reason="invalid"
        )
    return float(value)


def _number(command: Command, name: str, *, required: bool) -> float | None:
    value = command.params.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
        raise CommandRefused(
            f"params.{name} must be a number of seconds 0..86400", reason="invalid"
        )
    return float(value)
