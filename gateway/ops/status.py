"""The gateway's status: one snapshot of uplink, outbox, devices, alarms and recent events.

Collected on demand from the running parts (:class:`StatusSources`), never
stored: what ``/status`` returns, what ``campus-gateway status`` prints and what
the Prometheus levels in ``/metrics`` are made from. Everything here is local, so
it works with the uplink down. Times are UNIX seconds; ages are seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.config.root import GatewayConfig
from gateway.delivery.outbox import Outbox, StoredEvent
from gateway.delivery.uplink import Uplink
from gateway.errors import OutboxError
from gateway.runtime.durable import not_durable_files
from gateway.runtime.progress import Progress
from gateway.runtime.stage import Counted, Stage
from gateway.runtime.state_store import StateStore
from gateway.runtime.supervisor import Supervisor
from gateway.runtime.version import gateway_version

if TYPE_CHECKING:  # the DC-09 stage (and its AES library) only where panels are configured
    from gateway.panels.stage import PanelStage

RECENT = 10
READ_S = 1.0
"""The longest a snapshot waits for one read of the outbox file (seconds)."""
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """The MQTT path: ``state`` is ``connected`` or ``disconnected``.

    ``reconnects`` counts connections after the first; ``attempts`` every try.
    """

    state: str
    broker: str
    connects: int
    reconnects: int
    attempts: int
    inflight: int
    window: int
    published: int
    publish_failures: int
    republished_alarms: int
    heartbeats: int
    commands_dropped: int = 0
    publish_refused: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """The durable store: ``depth`` rows wait for a PUBACK, the oldest for
    ``oldest_pending_s``; ``waiting_to_commit`` writes wait for the disk;
    ``unacked_alarms`` wait for the center, ``overdue_alarms`` past ``ack_timeout_s``.
    ``commit_failures``/``disk_full``/``quarantined``/``spill_failures`` (held rows
    that could not be written to the spill, ``gateway.delivery.outbox.spill``) are the
    storage faults, with the
    state store's ``state_commit_failures``, ``state_quarantined`` (where a corrupt
    state file was moved at start) and ``state_unread`` (why its file could
    not be read at start: changes then act in memory only, ``state_unsaved`` of
    them so far, and nothing is saved there in this run), and
    ``not_durable`` (a file left in WAL mode, ``gateway.runtime.durable``).
    ``storage_error``: why the outbox could not be read for this snapshot (locked
    by another process, a frozen or failing disk): ``depth``, ``unacked_alarms``
    and ``overdue_alarms`` are then None and ``recent`` empty, and the rest is
    still shown (a review of 2026-12-06: ``/metrics`` answered 503 for the whole
    of a lock, so the storage fault counters could not be scraped during it)."""

    path: str
    stream: str
    depth: int | None
    oldest_pending_s: float | None
    waiting_to_commit: int
    unacked_alarms: int | None
    overdue_alarms: int | None
    shed_total: int
    stored_rows: int
    stored_bytes: int
    commit_failures: int
    spill_failures: int
    disk_full: int
    disk_pressure: bool
    quarantined: str | None
    state_commit_failures: int
    state_quarantined: str | None
    state_unread: str | None
    state_unsaved: int
    not_durable: str | None
    storage_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device: ``family`` (``modbus_io``, ``onvif_camera``, ``patrol``) and health;
    ``protocol_errors``: malformed or refused frames it sent since start (each logged
    once, counted, skipped)."""

    family: str
    id: str
    health: str
    protocol_errors: int = 0


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """The SIA DC-09 receiver (:mod:`drivers.dc09`): what its panels sent and got back.

    ``counts`` are frames by outcome since start (the receiver's ``counts``:
    ``frames``, ``accepted``, ``null``, ``duplicates``, ``ack``, ``nak``, ``duh``,
    ``unanswered``, ``answers_ignored``, ``junk``, ``sink_failed``, ``errors``,
    ``refused.<reason>``); ``connections`` are TCP connections open now,
    ``refused_connections`` those closed for ``max_connections``,
    ``evicted_connections`` those closed for a newer one of the same address
    (``max_connections_per_host``), ``udp_dropped``
    datagrams dropped while too many were being taken.
    """

    counts: dict[str, int]
    connections: int
    refused_connections: int
    evicted_connections: int
    udp_dropped: int


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """A condition in alarm now: ``zone``, its event ``type``, since when (UNIX s).

    ``condition`` is the gateway zone's (the part of its alarm key after ``/``), or ``panel``
    for what a DC-09 panel reports active (``detail`` names the panel).
    """

    zone: str
    condition: str
    type: str
    since: float
    incident: str
    detail: str


@dataclass(frozen=True, slots=True)
class Status:
    """The whole snapshot (JSON via :meth:`to_dict`).

    ``walk_test`` is ``{"active", "last_report", "names"}``: the running walk test
    (or None) and the last finished one's report as the alarm system keeps them
    (:mod:`gateway.alarm.walk_record`, RFC 3339 UTC times), and the name of each
    zone they list. ``dc09`` is None without a DC-09 receiver. ``timezone`` is the
    site's (``[site] timezone``), which ``campus-gateway status`` prints times in.
    """

    version: str
    site: str
    gateway: str
    timezone: str
    time: float
    uptime_s: float
    stalled: list[str]
    task_crashes: dict[str, int]
    dropped_observations: int
    uplink: UplinkStatus
    outbox: OutboxStatus
    devices: list[DeviceStatus]
    alarms: list[ActiveAlarm]
    recent: list[StoredEvent]
    walk_test: dict[str, Any]
    dc09: ReceiverStatus | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


@dataclass(slots=True)
class StatusSources:
    """The running parts a snapshot is read from (the daemon fills this in).

    Attributes:
        panels: the DC-09 receiver's stage, or None when no panel is configured.
        dropped_observations: how many observations the rules gave up on.
        walk_test: the running walk test and the last report
            (``WalkTests.snapshot``: ``{"active", "last_report"}``).
    """

    cfg: GatewayConfig
    outbox: Outbox
    uplink: Uplink
    store: StateStore
    stages: Sequence[Stage]
    progress: Progress
    supervisor: Supervisor
    panels: PanelStage | None = None
    started: float = field(default_factory=time.monotonic)
    dropped_observations: Callable[[], int] = lambda: 0
    walk_test: Callable[[], dict[str, Any]] = lambda: {"active": None, "last_report": None}


async def collect(src: StatusSources) -> Status:
    """One snapshot of the gateway, read now (a few small SQLite reads; when they
    fail, the rest with ``outbox.storage_error``)."""
    cfg, outbox, stats = src.cfg, src.outbox, src.uplink.stats
    reads = _Reads()
    oldest = await reads.take(outbox.oldest_pending_age())
    depth = await reads.take(outbox.pending_count())
    unacked = await reads.take(outbox.unacked_count())
    overdue = await reads.take(outbox.overdue_count())
    recent = await reads.take(outbox.recent(RECENT))
    return Status(
        version=gateway_version(),
        site=cfg.site.id,
        gateway=cfg.site.gateway,
        timezone=cfg.site.timezone,
        time=time.time(),
        uptime_s=round(time.monotonic() - src.started, 1),
        stalled=src.progress.stalled(),
        task_crashes=dict(src.supervisor.crashes),
        dropped_observations=src.dropped_observations(),
        uplink=UplinkStatus(
            state="connected" if stats.connected.is_set() else "disconnected",
            broker=f"{cfg.broker.host}:{cfg.broker.port}",
            connects=stats.connects,
            reconnects=max(0, stats.connects - 1),
            attempts=stats.attempts,
            inflight=stats.inflight,
            window=stats.window,
            published=stats.published,
            publish_failures=stats.publish_failures,
            republished_alarms=stats.republished_alarms,
            heartbeats=stats.heartbeats,
            commands_dropped=stats.commands_dropped,
            publish_refused=src.uplink.refusals.figures(),
        ),
        outbox=OutboxStatus(
            path=str(outbox.path),
            stream=outbox.stream,
            depth=depth,
            oldest_pending_s=None if oldest is None else round(oldest, 3),
            waiting_to_commit=outbox.waiting,
            unacked_alarms=unacked,
            overdue_alarms=overdue,
            shed_total=outbox.stats.shed_total,
            stored_rows=outbox.stats.rows,
            stored_bytes=outbox.stats.bytes,
            commit_failures=outbox.stats.commit_failures,
            spill_failures=outbox.stats.spill_failures,
            disk_full=outbox.stats.disk_full,
            disk_pressure=outbox.disk_pressure,
            quarantined=None if outbox.quarantined is None else str(outbox.quarantined),
            state_commit_failures=src.store.commit_failures,
            state_quarantined=None if src.store.quarantined is None else str(src.store.quarantined),
            state_unread=src.store.unread,
            state_unsaved=src.store.unsaved,
            not_durable=not_durable_files(
                [(outbox.path, outbox.not_durable), (src.store.path, src.store.not_durable)]
            )
            or None,
            storage_error=reads.error,
        ),
        devices=_devices(src.stages),
        alarms=_alarms(src.store) + _panel_alarms(src.panels),
        recent=recent or [],
        walk_test=_walk_test(cfg, src.walk_test()),
        dc09=_receiver(src.panels),
    )


class _Reads:
    """The snapshot's reads of the outbox file: each at most :data:`READ_S`, and none
    after one failed (a lock or a frozen disk would hold every one of them)."""

    def __init__(self) -> None:
        self.error: str | None = None

    async def take(self, read: Coroutine[Any, Any, _T]) -> _T | None:
        if self.error is not None:
            read.close()
            return None
        try:
            return await asyncio.wait_for(read, READ_S)
        except TimeoutError:
            self.error = f"the outbox did not answer within {READ_S:g} s"
        except OutboxError as exc:
            self.error = str(exc)
        return None


def _receiver(stage: PanelStage | None) -> ReceiverStatus | None:
    """The DC-09 receiver's counters, or None when the gateway has none."""
    if stage is None:
        return None
    return ReceiverStatus(
        counts=dict(sorted(stage.receiver.counts.items())),
        connections=stage.connections,
        refused_connections=stage.refused_connections,
        evicted_connections=stage.evicted_connections,
        udp_dropped=stage.udp_dropped,
    )


def _walk_test(cfg: GatewayConfig, snap: dict[str, Any]) -> dict[str, Any]:
    """The walk test snapshot with the names of the zones it lists."""
    listed: set[str] = set()
    for record in (snap.get("active"), snap.get("last_report")):
        if record is not None:
            listed.update(record.get("zones", []), record.get("kept_live", []))
    names = {z.id: z.name for z in cfg.zones if z.id in listed}
    return {"active": snap.get("active"), "last_report": snap.get("last_report"), "names": names}


def _devices(stages: Sequence[Stage]) -> list[DeviceStatus]:
    out: list[DeviceStatus] = []
    for stage in stages:
        health: Mapping[str, str] = stage.health()
        errors = stage.protocol_errors() if isinstance(stage, Counted) else {}
        out.extend(
            DeviceStatus(stage.family, d, str(h), errors.get(d, 0))
            for d, h in sorted(health.items())
        )
    return out


def _panel_alarms(stage: PanelStage | None) -> list[ActiveAlarm]:
    """The alarms and faults the DC-09 panels report active and have not restored
    (condition ``panel``; a bypass or other open state is not an alarm)."""
    if stage is None:
        return []
    return [
        ActiveAlarm(
            zone=subject,
            condition="panel",
            type=event.type,
            since=event.time.timestamp(),
            incident=event.id,
            detail=f"panel {panel}",
        )
        for (panel, type_, subject), event in sorted(stage.reports.open.items())
        if type_.startswith(("alarm.", "fault."))
    ]


def _alarms(store: StateStore) -> list[ActiveAlarm]:
    out: list[ActiveAlarm] = []
    for key, record in sorted(store.alarms.items()):
        zone, _, condition = key.partition("/")
        out.append(
            ActiveAlarm(
                zone=zone,
                condition=condition,
                type=record.type,
                since=record.since.timestamp(),
                incident=record.incident,
                detail=record.detail,
            )
        )
    return out
