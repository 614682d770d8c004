"""The gateway's configuration: one TOML file, validated strictly with pydantic.

Nothing is silently dropped or adjusted (STYLE.md rule 10): an unknown key, a
duplicate zone id, an input used twice or out of its module's range is an error
that names the file, the field and, where it can be found, the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from gateway.config.alarm import (
    AreaConfig,
    CommandsConfig,
    OutputConfig,
    ScheduleConfig,
    WalkTestConfig,
    ZoneConfig,
    ZoneType,
    ZoneTypeDefaults,
)
from gateway.config.alarm_checks import check_alarm, check_lines
from gateway.config.base import FilePath, Ident, Strict
from gateway.config.camera import CameraConfig, LinkageConfig, check_cameras
from gateway.config.listeners import Listener, check_listeners
from gateway.config.modbus_profiles import PROFILES
from gateway.config.panels import Dc09Config, PanelConfig, check_panels, panel_context
from gateway.config.patrol import PatrolConfig, StationReaderConfig, check_patrol
from gateway.config.transports import Transport
from gateway.config.views import BenchConfig, DashboardConfig
from gateway.errors import ConfigError


class SiteConfig(Strict):
    """``[site]``: who we are on the center's map.

    ``id`` and ``gateway`` form the topic prefix ``campus/v1/<id>/<gateway>``.
    """

    id: Ident
    gateway: Ident
    name: str = ""
    timezone: str = "Asia/Shanghai"


class TlsConfig(Strict):
    """``[broker.tls]``: server verification and optional client certificate (paths)."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    insecure: bool = False


class BrokerConfig(Strict):
    """``[broker]``: the MQTT 5 broker (or cluster front) that carries us to the center.

    Units: seconds unless the name says otherwise. ``window`` is the bounded
    in-flight count of every QoS 1 publish; it is further capped by the broker's
    Receive Maximum. ``keepalive`` (6): a broker declares a silent gateway dead —
    and publishes its Last Will ``offline`` — after 1.5 × keepalive (MQTT 5.0
    §3.1.2.10): 9 s by default, 11 s at most with mosquitto's whole-second checks,
    well within the 15 s a duty center expects.
    ``publish_timeout`` bounds a connect, a CONNACK, a SUBACK and each PUBACK.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password_file: FilePath | None = None
    keepalive: int = Field(default=6, ge=2, le=3600)
    tls: TlsConfig | None = None
    window: int = Field(default=20, ge=1, le=65535)
    publish_timeout: float = Field(default=10.0, gt=0)
    reconnect_min: float = Field(default=0.5, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=10.0, gt=0)


class OutboxConfig(Strict):
    """``[outbox]``: the durable SQLite store (path relative to the config file).

    ``ack_timeout_s``: an event (priority 1-3) the center has not acked this long
    after its PUBACK is published again, with the same id, forever.
    ``retention_days``: delivered rows are kept this long as the alarm record
    (GB/T 29315: >= 30 days), then purged. ``max_rows``/``max_bytes``: caps; when
    reached, priority 5 then 4 rows are shed, oldest first; ``alarm_reserve_rows``
    of the cap is kept for priority 1-3, which are never shed.
    ``ballast_mb``: a file of this size beside the database, given up when the
    disk fills so alarms can still be committed.
    ``mark_linger_ms``: how long a PUBACK or center-ack mark waits to ride in the
    next commit of an event before it is committed alone (marks cost no fsync of
    their own; a lost one costs a re-send with the same id, issue 14).
    ``escalate_after_s``: an alarm (priority 1-2) the center has not acked this long
    after it was stored raises ``alarm.unacknowledged`` once and switches on
    ``escalate_output`` (the id of an ``[[outputs]]``, e.g. a buzzer in the guard
    house; none when omitted) until the center acks; it is re-sent as before and
    never expires (issue 10 item 7). Counted on the monotonic clock.
    """

    path: FilePath = Path("var/outbox.sqlite")
    commit_linger_ms: float = Field(default=2.0, ge=0, le=1000)
    mark_linger_ms: float = Field(default=250.0, ge=0, le=10_000)
    ack_timeout_s: float = Field(default=30.0, gt=0)
    retention_days: float = Field(default=30.0, ge=30)
    max_rows: int = Field(default=1_000_000, ge=100)
    max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    alarm_reserve_rows: int = Field(default=10_000, ge=0)
    ballast_mb: float = Field(default=16.0, ge=0)
    escalate_after_s: float = Field(default=60.0, gt=0)
    escalate_output: Ident | None = None


class ModuleConfig(Strict):
    """``[[modules]]``: one digital-I/O module polled over Modbus.

    ``poll_interval_ms``/``timeout_ms``/``debounce_ms`` are milliseconds;
    ``offline_after`` counts consecutive failed polls before ``fault.device_offline``.
    ``converter_timeout_ms``: on a TCP line of several units (a Modbus TCP to RTU
    converter), the converter's own response timeout, as set on the converter
    (Moxa MGate default 1000 ms): after a unit timed out the next request waits for
    the converter to give up on it (:mod:`drivers.modbus_io.client`).
    ``active_low`` inverts inputs on top of the profile's own inversion.
    """

    id: Ident
    name: str = ""
    location: str = ""
    transport: Transport
    unit: int = Field(default=1, ge=0, le=247)
    profile: str = "generic"
    poll_interval_ms: int = Field(default=100, ge=10, le=60_000)
    timeout_ms: int = Field(default=500, ge=20, le=30_000)
    converter_timeout_ms: int = Field(default=1000, ge=0, le=30_000)
    offline_after: int = Field(default=3, ge=1, le=1000)
    debounce_ms: int = Field(default=0, ge=0, le=10_000)
    active_low: bool = False

    @model_validator(mode="after")
    def _known_profile(self) -> ModuleConfig:
        if self.profile not in PROFILES:
            raise ValueError(
                f"unknown profile {self.profile!r}; choose one of {', '.join(sorted(PROFILES))}"
            )
        return self


class LoggingConfig(Strict):
    """``[logging]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(Strict):
    """``[metrics]``: the local, read-only HTTP endpoint of :mod:`gateway.ops`.

    ``/metrics`` (Prometheus text format) and ``/status`` (JSON, what
    ``campus-gateway status`` prints). Bound to the loopback interface unless
    ``host`` says otherwise: it shows zones in alarm and recent events, so open
    it to a network only behind a firewall. ``port = 0`` picks a free port (tests).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9735, ge=0, le=65535)


class WatchdogConfig(Strict):
    """``[watchdog]``: when a critical task counts as stalled (:mod:`gateway.runtime.progress`).

    ``stall_s``: seconds a task may spend inside one unit of work before the
    daemon stops answering systemd's watchdog (the unit's ``WatchdogSec=``).
    It must exceed the longest legitimate step: a Modbus timeout (``timeout_ms``,
    at most 30 s) and the poller's backoff (5 s).
    """

    stall_s: float = Field(default=60.0, ge=0.5, le=3600)


class GatewayConfig(Strict):
    """The whole file. Cross-checks run here (duplicates, references, ranges)."""

    site: SiteConfig
    broker: BrokerConfig = BrokerConfig()
    outbox: OutboxConfig = OutboxConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    modules: list[ModuleConfig] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    zone_types: dict[ZoneType, ZoneTypeDefaults] = Field(default_factory=dict)
    areas: list[AreaConfig] = Field(default_factory=list)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    outputs: list[OutputConfig] = Field(default_factory=list)
    commands: CommandsConfig = CommandsConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)
    linkage: list[LinkageConfig] = Field(default_factory=list)
    patrol: PatrolConfig = Field(default_factory=PatrolConfig)
    dc09: Dc09Config = Dc09Config()
    panels: list[PanelConfig] = Field(default_factory=list)
    walk_test: WalkTestConfig = WalkTestConfig()
    dashboard: DashboardConfig = DashboardConfig()
    bench: BenchConfig = BenchConfig()

    @model_validator(mode="after")
    def _cross_check(self) -> GatewayConfig:
        signing = self.commands.problem()
        if signing is not None:
            raise _FieldError(*signing)
        _unique("modules", [m.id for m in self.modules])
        _unique("zones", [z.id for z in self.zones])
        modules = {m.id: m for m in self.modules}
        alarm = check_alarm(self.zones, self.modules, self.areas, self.schedules, self.outputs)
        for field, message in [*check_lines(self.modules), *alarm][:1]:
            raise _FieldError(field, message)
        escalate = self.outbox.escalate_output
        if escalate is not None and escalate not in {o.id for o in self.outputs}:
            raise _FieldError("outbox.escalate_output", f"no output with id {escalate!r}")
        zone_ids, area_ids = {z.id for z in self.zones}, {a.id for a in self.areas}
        for field, message in check_cameras(self.cameras, self.linkage, zone_ids, area_ids)[:1]:
            raise _FieldError(field, message)
        devices = set(modules) | {c.id for c in self.cameras}
        for field, message in check_patrol(
            self.patrol, device_ids=devices, timezone=self.site.timezone
        )[:1]:
            raise _FieldError(field, message)
        devices |= {r.id for r in self.patrol.readers}
        for field, message in check_panels(
            self.panels,
            self.dc09,
            area_ids={a.id for a in self.areas},
            zone_ids={z.id for z in self.zones},
            device_ids=devices,
        )[:1]:
            raise _FieldError(field, message)
        for field, message in check_listeners(self._listeners())[:1]:
            raise _FieldError(field, message)
        return self

    def _listeners(self) -> Iterator[Listener]:
        """Every TCP port the daemon listens on (:mod:`gateway.config.listeners`)."""
        if self.metrics.enabled:
            yield Listener("metrics.port", "[metrics]", self.metrics.host, self.metrics.port)
        if self.bench.enabled:
            yield Listener("bench.port", "the bench page", self.bench.host, self.bench.port)
        for i, reader in enumerate(self.patrol.readers):
            listen = getattr(reader, "listen", None)
            if listen is not None:
                name = f"patrol reader {reader.id!r}"
                yield Listener(f"patrol.readers.{i}.listen", name, listen.host, listen.port)
        for i, address in enumerate(self.dc09.listen):
            if address.protocol == "tcp":
                name = "the DC-09 receiver"
                yield Listener(f"dc09.listen.{i}", name, address.host, address.port)

    @property
    def topic_prefix(self) -> str:
        """``campus/v1/<site>/<gateway>``."""
        return f"campus/v1/{self.site.id}/{self.site.gateway}"

    @property
    def source_prefix(self) -> str:
        """CloudEvents ``source`` prefix ``campus/<site>/<gateway>``."""
        return f"campus/{self.site.id}/{self.site.gateway}"


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def _unique(section: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise _FieldError(f"{section}.{i}.id", f"duplicate id {ident!r}")
        seen.add(ident)


_BOM = "\ufeff"


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML config file.

    Relative paths in ``[outbox]``, ``[broker]``, ``[commands]``, ``[bench]`` and
    ``[[cameras]]`` are resolved against the file's directory. A UTF-8 byte order
    mark at the start (Windows Notepad saves one) is accepted: it marks the
    encoding and is not part of the TOML (issue 11: it was refused as "Invalid
    statement (line 1, column 1)").

    Raises:
        ConfigError: unreadable file, TOML syntax error, or a field that fails
            validation; the message names the file, the field and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from exc
    text = text.removeprefix(_BOM)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(f"TOML syntax: {exc}", file=str(path), line=line) from exc
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            (f, m if "(account " in m else m + panel_context(raw, f))
            for f, m in map(_describe, exc.errors())
        ]
        field, message = problems[0]
        rest = [
            f"{named_field(f, raw)} (line {locate_line(text, f) or '?'}): {m}"
            for f, m in problems[1:]
        ]
        if rest:
            message += "; also " + "; ".join(rest)
        raise ConfigError(
            message,
            file=str(path),
            field=field,
            line=locate_line(text, field),
            label=named_field(field, raw),
        ) from exc
    return _resolve_paths(cfg, path.parent)


def named_field(field: str, raw: Any) -> str:
    """A dotted field with list entries named by their ``id``, as a technician reads it.

    ``zones.3.input`` -> ``zones[Z04].input`` when the fourth ``[[zones]]`` has
    ``id = "Z04"``; an entry without an id keeps its 0-based index: ``[3]``.
    """
    out: list[str] = []
    node = raw
    for part in field.split("."):
        if part.isdigit() and out and isinstance(node, list):
            index = int(part)
            node = node[index] if index < len(node) else None
            ident = node.get("id") if isinstance(node, dict) else None
            out[-1] += f"[{ident}]" if isinstance(ident, str) and ident else f"[{index}]"
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)


def _describe(err: ErrorDetails) -> tuple[str, str]:
    """(dotted field, message a technician can act on) for one pydantic error."""
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("tcp", "rtu"))]
    ctx_error = err.get("ctx", {}).get("error")
    if isinstance(ctx_error, _FieldError):
        return ctx_error.field, str(ctx_error).split(": ", 1)[1]
    field = ".".join(loc) or "(root)"
    if err["type"] == "extra_forbidden":
        return field, f"unknown key {loc[-1]!r} (misspelt, or not valid in this section)"
    if err["type"] == "missing":
        return field, f"required key {loc[-1]!r} is missing"
    return field, err["msg"]


def _resolve_paths(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    """``cfg`` with every relative file it names resolved against ``base`` (absolute
    ones stay as written: never lose a key file)."""
    broker = cfg.broker.files_resolved(base, "password_file")
    if broker.tls is not None:
        tls = broker.tls.files_resolved(base, "ca_file", "cert_file", "key_file")
        broker = broker.model_copy(update={"tls": tls})
    readers = [
        r if isinstance(r, StationReaderConfig) else r.files_resolved(base, "key_file")
        for r in cfg.patrol.readers
    ]
    return cfg.model_copy(
        update={
            "outbox": cfg.outbox.files_resolved(base, "path"),
            "broker": broker,
            "cameras": [c.files_resolved(base, "password_file") for c in cfg.cameras],
            "commands": cfg.commands.files_resolved(base, "hmac_key_file"),
            "panels": [p.files_resolved(base, "key_file") for p in cfg.panels],
            "bench": cfg.bench.files_resolved(base, "password_file"),
            "patrol": cfg.patrol.model_copy(update={"readers": readers}),
        }
    )


def locate_line(text: str, field: str) -> int | None:
    """Best-effort 1-based line of a dotted field path (``zones.3.input``) in TOML text.

    Follows ``[table]`` and ``[[array]]`` headers; returns the line of the key, or
    of the table header when the key is missing, or None.
    """
    parts = field.split(".")
    if len(parts) > 2 and not parts[1].isdigit() and parts[2].isdigit():
        table = _locate(text, [f"{parts[0]}.{parts[1]}", *parts[2:]])  # [[patrol.routes]]
        return table if table is not None else _locate(text, parts[:2])  # an inline array
    elif len(parts) > 2 and not parts[1].isdigit():
        nested = _locate(text, [f"{parts[0]}.{parts[1]}", *parts[2:]])  # [broker.tls] tables
        if nested is not None:
            return nested
    return _locate(text, parts)


def _locate(text: str, parts: list[str]) -> int | None:
    lines = text.splitlines()
    if not parts or not parts[0]:
        return None
    section, rest = parts[0], parts[1:]
    index = int(rest[0]) if rest and rest[0].isdigit() else None
    if index is not None:
        rest = rest[1:]
    header_re = re.compile(
        r"^\s*\[\[\s*" + re.escape(section) + r"\s*\]\]"
        if index is not None
        else r"^\s*\[\s*" + re.escape(section) + r"\s*\]"
    )
    start = None
    count = -1
    for n, line in enumerate(lines):
        if header_re.match(line):
            count += 1
            if index is None or count == index:
                start = n
                break
    if start is None:
        return _top_level_key(lines, section) if index is None and not rest else None
    if index is not None and len(rest) >= 3 and rest[1].isdigit():
        nested = _nested_table(lines, start, section, rest[0], int(rest[1]))
        if nested is not None:  # [[panels.zones]] inside the index-th [[panels]]
            start, section, rest = nested, f"{section}.{rest[0]}", rest[2:]
    key = rest[0] if rest else None
    if key is None:
        return start + 1
    for n in range(start + 1, len(lines)):
        stripped = lines[n].strip()
        if stripped.startswith("[") and not stripped.startswith(f"[{section}."):
            break
        if re.match(r"^" + re.escape(key) + r"\s*=", stripped):
            return n + 1
    return start + 1


def _top_level_key(lines: list[str], key: str) -> int | None:
    """The line of ``key = …`` before the first table header (a root key), or None."""
    key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for n, line in enumerate(lines):
        if line.strip().startswith("["):
            return None
        if key_re.match(line):
            return n + 1
    return None


def _nested_table(lines: list[str], start: int, section: str, key: str, index: int) -> int | None:
    """The line of the ``index``-th ``[[section.key]]`` after ``start``, before the
    next ``[[section]]``; None when there is none (an inline array, say)."""
    own = re.compile(r"^\s*\[\[\s*" + re.escape(section) + r"\s*\]\]")
    nested = re.compile(r"^\s*\[\[\s*" + re.escape(f"{section}.{key}") + r"\s*\]\]")
    count = -1
    for n in range(start + 1, len(lines)):
        if own.match(lines[n]):
            return None
        if nested.match(lines[n]):
            count += 1
            if count == index:
                return n
    return None
