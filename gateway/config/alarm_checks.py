"""Cross-checks of the alarm system's configuration, and what the drivers need of it.

:func:`check_alarm` and :func:`check_lines` run in the root model's validator
(:mod:`gateway.config.root`): references between zones, modules, areas, schedules and
outputs; inputs and outputs that exist on their module's profile and serve one
zone or output each; modules sharing a physical line that agree on how it is
opened. Each returns ``(dotted field, message)`` problems, in file order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.config.alarm import (
    AreaConfig,
    EolLine,
    OutputConfig,
    PairedLine,
    ScheduleConfig,
    ZoneConfig,
    ZoneType,
    ZoneTypeDefaults,
    zone_rule,
)
from gateway.config.modbus_profiles import PROFILES


def input_debounce(
    zones: Sequence[ZoneConfig], defaults: Mapping[ZoneType, ZoneTypeDefaults], module_id: str
) -> dict[int, int]:
    """Digital input channel → debounce (ms) for the zones of ``module_id`` that set one
    (their own ``debounce_ms``, else their type's); a paired tamper input takes its zone's."""
    out: dict[int, int] = {}
    for zone in zones:
        debounce = zone_rule(zone, defaults).debounce_ms
        if zone.module != module_id or debounce is None or isinstance(zone.line, EolLine):
            continue
        out[zone.input] = debounce
        if isinstance(zone.line, PairedLine):
            out[zone.line.tamper_input] = debounce
    return out


def analog_inputs(zones: Sequence[ZoneConfig], module_id: str) -> list[int]:
    """The analog channels of ``module_id`` that ``eol`` zones read."""
    return sorted(z.input for z in zones if z.module == module_id and isinstance(z.line, EolLine))


Problems = list[tuple[str, str]]


class _ModuleLike(Protocol):
    """What the checks read of a ``[[modules]]`` entry (structural: avoids an import cycle)."""

    @property
    def id(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def transport(self) -> object: ...
    @property
    def timeout_ms(self) -> int: ...
    @property
    def converter_timeout_ms(self) -> int: ...
    @property
    def unit(self) -> int: ...


def check_alarm(
    zones: Sequence[ZoneConfig],
    modules: Sequence[_ModuleLike],
    areas: Sequence[AreaConfig],
    schedules: Sequence[ScheduleConfig],
    outputs: Sequence[OutputConfig],
) -> Problems:
    """Cross-checks of zones, areas, schedules and outputs.

    Returns:
        Every problem as ``(dotted field, message)``, in file order; empty when fine.
    """
    problems: Problems = []
    problems += _duplicates("zones", [z.id for z in zones])
    problems += _duplicates("areas", [a.id for a in areas])
    problems += _duplicates("schedules", [s.id for s in schedules])
    problems += _duplicates("outputs", [o.id for o in outputs])
    by_id = {m.id: m for m in modules}
    problems += _zone_inputs(zones, by_id)
    area_ids, schedule_ids = {a.id for a in areas}, {s.id for s in schedules}
    for i, zone in enumerate(zones):
        if zone.area is not None and zone.area not in area_ids:
            problems.append((f"zones.{i}.area", f"no area with id {zone.area!r}"))
    for i, area in enumerate(areas):
        if area.schedule is not None and area.schedule not in schedule_ids:
            problems.append((f"areas.{i}.schedule", f"no schedule with id {area.schedule!r}"))
    problems += _outputs(outputs, by_id, {z.id for z in zones}, area_ids)
    return problems


def check_lines(modules: Sequence[_ModuleLike]) -> Problems:
    """Modules on one physical line (same serial port, same TCP-to-RTU converter) share
    one connection: they must agree on how it is opened and timed.

    Returns:
        ``(dotted field, message)`` problems, empty when fine.
    """
    problems: Problems = []
    first: dict[tuple[str, ...], tuple[int, _ModuleLike]] = {}
    units: dict[tuple[tuple[str, ...], int], str] = {}
    for i, module in enumerate(modules):
        key = line_key(module.transport)
        if (key, module.unit) in units:
            other_id = units[key, module.unit]
            problems.append((f"modules.{i}.unit", f"unit used on this line by {other_id!r}"))
        units[key, module.unit] = module.id
        if key not in first:
            first[key] = (i, module)
            continue
        j, other = first[key]
        if module.transport != other.transport:
            problems.append(
                (f"modules.{i}.transport", f"same line as modules.{j} but other serial settings")
            )
        for name in ("timeout_ms", "converter_timeout_ms"):
            value = getattr(other, name)
            if getattr(module, name) != value:
                problems.append((f"modules.{i}.{name}", f"same line as modules.{j}: use {value}"))
    return problems


def line_key(transport: object) -> tuple[str, ...]:
    """The physical line a transport reaches: ``("tcp", host, port)`` or ``("rtu", port)``."""
    kind = getattr(transport, "type", "")
    if kind == "rtu":
        return ("rtu", str(getattr(transport, "port", "")))
    return ("tcp", str(getattr(transport, "host", "")), str(getattr(transport, "port", "")))


def _duplicates(section: str, ids: list[str]) -> Problems:
    seen: set[str] = set()
    problems: Problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append((f"{section}.{i}.id", f"duplicate id {ident!r}"))
        seen.add(ident)
    return problems


def _zone_inputs(zones: Sequence[ZoneConfig], modules: dict[str, _ModuleLike]) -> Problems:
    """Every zone's inputs exist on its module and no input serves two zones."""
    problems: Problems = []
    used: dict[tuple[str, str, int], str] = {}
    for i, zone in enumerate(zones):
        module = modules.get(zone.module)
        if module is None:
            problems.append((f"zones.{i}.module", f"no module with id {zone.module!r}"))
            continue
        profile = PROFILES[module.profile]
        wanted: list[tuple[str, str, int, int]] = []  # (field, kind, channel, count)
        if isinstance(zone.line, EolLine):
            wanted.append((f"zones.{i}.input", "analog input", zone.input, profile.ai_count))
        else:
            wanted.append((f"zones.{i}.input", "input", zone.input, profile.di_count))
        if isinstance(zone.line, PairedLine):
            wanted.append(
                (f"zones.{i}.line.tamper_input", "input", zone.line.tamper_input, profile.di_count)
            )
        for field, kind, channel, count in wanted:
            if channel >= count:
                have = f"{kind}s 0..{count - 1}" if count else f"no {kind}s"
                problems.append(
                    (field, f"module {module.id!r} ({module.profile}) has {have}, not {channel}")
                )
                continue
            key = (zone.module, kind, channel)
            if key in used:
                owner = used[key]
                message = f"{kind} {channel} of {zone.module!r} is already used by zone {owner!r}"
                problems.append((field, message))
            used[key] = zone.id
    return problems


def _outputs(
    outputs: Sequence[OutputConfig],
    modules: dict[str, _ModuleLike],
    zone_ids: set[str],
    area_ids: set[str],
) -> Problems:
    problems: Problems = []
    used: dict[tuple[str, int], str] = {}
    for i, output in enumerate(outputs):
        module = modules.get(output.module)
        if module is None:
            problems.append((f"outputs.{i}.module", f"no module with id {output.module!r}"))
            continue
        count = PROFILES[module.profile].do_count
        if output.channel >= count:
            have = f"outputs 0..{count - 1}" if count else "no outputs"
            problems.append(
                (f"outputs.{i}.channel", f"module {module.id!r} ({module.profile}) has {have}")
            )
        key = (output.module, output.channel)
        if key in used:
            problems.append((f"outputs.{i}.channel", f"already driven by output {used[key]!r}"))
        used[key] = output.id
        for zone_id in output.zones:
            if zone_id not in zone_ids:
                problems.append((f"outputs.{i}.zones", f"no zone with id {zone_id!r}"))
        for area_id in output.areas:
            if area_id not in area_ids:
                problems.append((f"outputs.{i}.areas", f"no area with id {area_id!r}"))
    return problems
