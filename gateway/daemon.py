"""The daemon: wires outbox → uplink → devices and runs them for the life of the process.

Stages start in order with a readiness handshake (STYLE.md rule 5): the outbox
opens (a second daemon on it is refused; a file that cannot be read or written is
not: events are held in memory, sent, and stored once the disk mends, issue 11),
the uplink task starts (it connects on its
own and never gives up, so a broker that is down does not stop alarms from being
recorded), the rules, then the device stages — Modbus I/O modules, cameras,
patrol readers, DC-09 alarm panels — each a :class:`~gateway.runtime.stage.Stage` whose tasks run
under the supervisor. systemd is told ``READY=1`` after all of them are started.

Beside them run the local status and metrics endpoint (:mod:`gateway.ops`) and,
under systemd, the watchdog (:mod:`gateway.runtime.watchdog`): ``WATCHDOG=1``
only while the loop turns and the critical tasks (:mod:`gateway.ops.watches`)
make progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drivers.modbus_io.poller import ModulePoller
from gateway.alarm.commands import command_handlers
from gateway.alarm.modules import ModuleStage
from gateway.alarm.system import AlarmSystem
from gateway.alarm.zones import ZoneEngine
from gateway.bench.feed import EventFeed
from gateway.bench.model import BenchSources
from gateway.bench.server import BenchServer, bench_server
from gateway.camera.commands import camera_handlers
from gateway.commands.processor import CommandProcessor
from gateway.config.root import GatewayConfig, OutboxConfig
from gateway.dashboard.publisher import DashboardPublisher
from gateway.delivery.ack_auth import AckGate
from gateway.delivery.ack_refusals import AckRefusalReporter
from gateway.delivery.acks import parse_ack, parse_stream_ack
from gateway.delivery.escalation import Escalation
from gateway.delivery.housekeeping import Housekeeping
from gateway.delivery.outbox import Outbox
from gateway.delivery.refusals import UplinkFaultReporter
from gateway.delivery.replay import replay_handlers
from gateway.delivery.reports import append_unreported, latches_in_spill, restore_alarms
from gateway.delivery.uplink import Uplink
from gateway.errors import ConfigError, OutboxError, StateError
from gateway.events.model import Emit, Event, EventFactory, rfc3339
from gateway.events.observation import Observation, utcnow
from gateway.ops.server import OpsServer
from gateway.ops.status import StatusSources
from gateway.ops.watches import watch_critical
from gateway.patrol.service import PatrolStage
from gateway.runtime import descriptors, heap
from gateway.runtime.clock import ClockSync
from gateway.runtime.clock_step import ClockStepWatch
from gateway.runtime.device_health import kept_outages
from gateway.runtime.metrics import GatewayMetrics
from gateway.runtime.notifier import Notifier
from gateway.runtime.progress import Progress
from gateway.runtime.stage import Stage, start_stages
from gateway.runtime.state import Recall, StateWrite, StoreWith
from gateway.runtime.state_store import StateStore, state_path
from gateway.runtime.supervisor import Supervisor
from gateway.runtime.systemd import notify
from gateway.runtime.version import gateway_version
from gateway.runtime.watchdog import Watchdog, watchdog_period

if TYPE_CHECKING:  # imported when configured: see camera_stage(), panel_stage()
    from gateway.camera.evidence import Keep
    from gateway.camera.rules import StatePublisher
    from gateway.camera.stage import CameraStage
    from gateway.panels.stage import PanelStage


log = structlog.get_logger(__name__)

RELEASE_OUTPUTS_S = 3.0
"""How long a clean stop waits for the modules to switch its outputs off (seconds;
the unit's ``TimeoutStopSec=15`` leaves the rest to the outbox and the uplink)."""

_RETRY_START_S = 1.0  # seconds between tries of a start step the disk refused


@dataclass(slots=True)
class Gateway:
    """One running gateway. ``await gateway.run()``; cancel the task to stop it.

    Args:
        cfg: validated configuration.
        outbox_path: overrides ``[outbox] path`` (tests, the demo).

    Attributes:
        ready: set once every stage is started.
        outbox, uplink, engine, modules, cameras, patrol, panels: the stages, available
            once ``ready``; ``pollers`` are the modules' pollers by module id.
        alarm: zones, areas, schedules and outputs (``engine`` is its zones).
        commands: the center's commands, checked and dispatched.
        ack_gate: admits only signed acks (counts and logs the others).
        ack_refusals: reports the refused ones to the center (``fault.ack_refused``).
        metrics: this gateway's Prometheus registry and live counters.
        progress: the critical tasks the watchdog watches.
        ops: the local status and metrics endpoint (None with ``[metrics] enabled = false``).
        watchdog: pings systemd (None when systemd asked for no watchdog).
        notifier: poked after every stored event, applied reading and handled
            command; the local views (dashboard topics, bench page) listen to it.
        dashboard: publishes the retained zone and area states.
        feed: recent events, pictures and the center's last ack, for the bench page.
        bench: the bench page (None when ``[bench] enabled = false``).
        escalation: alarms the center has not acked in time (``alarm.unacknowledged``,
            the ``escalate_output``).
    """

    cfg: GatewayConfig
    outbox_path: Path | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: Outbox | None = None
    uplink: Uplink | None = None
    engine: ZoneEngine | None = None
    alarm: AlarmSystem | None = None
    commands: CommandProcessor | None = None
    ack_gate: AckGate | None = None
    ack_refusals: AckRefusalReporter | None = None
    modules: ModuleStage | None = None
    cameras: CameraStage | None = None
    patrol: PatrolStage | None = None
    panels: PanelStage | None = None
    dashboard: DashboardPublisher | None = None
    bench: BenchServer | None = None
    feed: EventFeed = field(default_factory=EventFeed)
    notifier: Notifier = field(default_factory=Notifier)
    supervisor: Supervisor = field(default_factory=Supervisor)
    # Driver observations wait here for the rules, so a slow disk commit never stalls
    # a poller (a stalled poller would miss contact changes altogether).
    observations: asyncio.Queue[Observation] = field(default_factory=asyncio.Queue)
    dropped_observations: int = 0
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    progress: Progress | None = None
    ops: OpsServer | None = None
    escalation: Escalation | None = None
    watchdog: Watchdog | None = None
    rules_done: int = 0
    _rules_idle: bool = True
    _rules_on_disk: int = 0
    _rules_task: asyncio.Task[None] | None = None
    # What each module's retained ``state/<device>`` last said: it is published on change only.
    _published_states: dict[str, tuple[str, tuple[bool | None, ...]]] = field(
        default_factory=dict, init=False
    )

    async def run(self) -> None:
        """Run until cancelled.

        Raises:
            OutboxError: the outbox cannot be opened (locked, unreadable).
            ConfigError: the center's key cannot be read, or there is none and the
                config does not say ``allow_unsigned`` (a config built in code).
        """
        cfg = self.cfg
        path = self.outbox_path or cfg.outbox.path
        factory = EventFactory(cfg.source_prefix, ClockSync().synced)
        async with (
            open_outbox(path, cfg.outbox) as outbox,
            StateStore(state_path(Path(path))) as store,
        ):
            self.outbox = outbox
            outbox.on_stored.append(self.metrics.event_stored)
            outbox.on_stored.append(store.stored)  # reports forgotten once committed
            outbox.on_kept.append(store.outbox_kept)  # open alarms follow the outbox
            if outbox.writable:
                await append_unreported(store, outbox)
            try:
                await restore_alarms(store, outbox)
                await latches_in_spill(store, outbox)
            except StateError as exc:  # kept in the outbox: restored at a later start
                log.error("state.alarms_not_restored", error=str(exc))
            self.feed = EventFeed(cfg.bench.events)
            # Alarms, faults and the rest are accepted into the outbox at once and sent
            # from memory if the disk stalls; the DC-09 ACK and the guard tour's reports
            # wait for the commit (what they acknowledge or forget must be on disk).
            emit = self._tap(_holding(outbox))
            durable = self._tap(outbox.append)
            self.escalation = Escalation(
                outbox, factory, emit, cfg.site.gateway, cfg.outbox.escalate_after_s,
                switch=self._escalation_switch if cfg.outbox.escalate_output else None,
            )  # fmt: skip
            outbox.on_held.append(self.escalation.accepted)
            # Acks at once, not at their commit: a review of 2026-12-05 heard the buzzer
            # for a panic the center had acked while commits failed.
            outbox.on_acked.append(self.escalation.acked)
            try:
                await self.escalation.load()
            except OutboxError as exc:  # an unreadable file must not stop the start
                log.error("escalation.not_loaded", error=str(exc))
            self.modules = ModuleStage(cfg, self._observe)
            self.patrol = PatrolStage(cfg, factory, durable, store=store)
            stages: list[Stage] = [self.modules, self.patrol]
            if cfg.panels or cfg.dc09.listen:
                self.panels = panel_stage(cfg, factory, emit, durable, outbox.kept)
                stages.append(self.panels)
            alarm_emit: StoreWith = emit
            if cfg.cameras:
                self.cameras = camera_stage(
                    cfg,
                    factory,
                    emit,
                    outbox.keep,
                    outbox.kept,
                    publish_state=self._set_state,
                    armed=self._area_armed,
                )
                stages.insert(1, self.cameras)
                alarm_emit = self.cameras.linkage.wrap(emit)
            self.alarm = AlarmSystem(
                cfg,
                factory,
                self._rules_emit(alarm_emit),
                store=store,
                writer=self.modules.write_output,
                outages=kept_outages(outbox.kept, (m.id for m in cfg.modules)),
            )
            self.engine = self.alarm.zones
            outbox.on_kept_loaded.append(self._kept_loaded)
            key = cfg.commands.key()
            if key is None and not cfg.commands.allow_unsigned:  # never unsigned by accident
                raise ConfigError(
                    "no key: commands and acks must be signed",
                    file="(config)",
                    field="commands.hmac_key_file",
                )
            if key is None:
                log.warning(
                    "commands.unsigned_allowed",
                    insecure=cfg.commands.insecure,
                    hint="[commands] allow_unsigned = true: anyone on the broker can send "
                    "commands and acks; a bench only",
                )
            self.ack_gate = AckGate(
                key,
                f"{cfg.topic_prefix}/ack",
                lambda reason: self.metrics.acks_refused.labels(reason).inc(),
            )
            self.ack_refusals = AckRefusalReporter(factory, emit, cfg.site.gateway)
            self.commands = CommandProcessor(
                prefix=cfg.topic_prefix,
                cfg=cfg.commands,
                key=key,
                handlers={
                    **command_handlers(self.alarm),
                    **(camera_handlers(self.cameras) if self.cameras is not None else {}),
                    **replay_handlers(outbox),
                },
                factory=factory,
                emit=emit,
                clock=self.alarm.clock,
                store=store,
            )
            keeper = Housekeeping(
                outbox, factory, cfg.outbox, cfg.site.gateway, emit=emit, state=store
            )
            client_id = cfg.broker.client_id or f"campus-gw-{cfg.site.id}-{cfg.site.gateway}"
            self.uplink = Uplink(
                cfg.broker,
                cfg.topic_prefix,
                outbox,
                client_id=client_id,
                on_ack=self._acked,
                heartbeat=keeper.heartbeat,
                on_command=self.commands.handle,
                on_puback=self.metrics.puback_seconds.observe,
            )
            keeper.figures.append(self.uplink.figures)
            if cfg.commands.insecure:
                keeper.figures.append(lambda: {"insecure": cfg.commands.insecure})
            keeper.figures.append(self.escalation.figures)
            refusals = UplinkFaultReporter(self.uplink.refusals, factory, emit, cfg.site.gateway)
            self.progress = Progress(cfg.watchdog.stall_s)
            watch_critical(
                self.progress,
                rules_done=lambda: self.rules_done,
                rules_waiting=lambda: self._rules_idle or self._rules_on_disk > 0,
                outbox=outbox,
                uplink=self.uplink,
                lines=self.modules.lines,
            )
            if cfg.metrics.enabled:
                self.ops = self._ops_server(outbox, store, stages)
            self.dashboard = DashboardPublisher(
                cfg, self.alarm.status, self.uplink.retain, self.notifier.listen()
            )
            sources = BenchSources(
                cfg, self.alarm, stages, self.uplink, outbox, self.patrol.engine, self.feed
            )
            self.bench = bench_server(sources, self.notifier)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    self.supervisor.run_forever("uplink", self.uplink.run), name="uplink"
                )
                tg.create_task(
                    self.supervisor.run_forever("uplink-faults", refusals.run), name="uplink-faults"
                )
                if not outbox.writable:
                    tg.create_task(_append_unreported_later(store, outbox), name="unreported")
                await self._started(factory, outbox, emit)
                await keeper.report_start()
                tg.create_task(
                    self.supervisor.run_forever("housekeeping", keeper.run), name="housekeeping"
                )
                steps = ClockStepWatch(factory, emit, cfg.site.gateway)
                tg.create_task(
                    self.supervisor.run_forever("clock-step", steps.run), name="clock-step"
                )
                if not await self._start_alarm():
                    tg.create_task(self._start_alarm_later(), name="alarm-start")
                tg.create_task(self.supervisor.run_forever("alarm", self.alarm.run), name="alarm")
                tg.create_task(
                    self.supervisor.run_forever("escalation", self.escalation.run),
                    name="escalation",
                )
                tg.create_task(
                    self.supervisor.run_forever("dashboard", self.dashboard.run), name="dashboard"
                )
                if self.bench is not None:
                    tg.create_task(
                        self.supervisor.run_forever("bench", self.bench.run), name="bench"
                    )
                tg.create_task(
                    self.supervisor.run_forever("rules", self._apply_observations), name="rules"
                )
                start_stages(stages, tg, self.supervisor)
                if self.ops is not None:
                    tg.create_task(self.supervisor.run_forever("ops", self.ops.run), name="ops")
                period = watchdog_period()
                if period is not None:
                    self.watchdog = Watchdog(self.progress, period)
                    tg.create_task(
                        self.supervisor.run_forever("watchdog", self.watchdog.run), name="watchdog"
                    )
                self.ready.set()
                notify("READY=1")
                log.info(
                    "gateway.ready",
                    version=gateway_version(),
                    site=cfg.site.id,
                    gateway=cfg.site.gateway,
                    modules=len(cfg.modules),
                    zones=len(cfg.zones),
                    stream=outbox.stream,
                )

    async def release_outputs(self, within_s: float = RELEASE_OUTPUTS_S) -> None:
        """Switch off every output that is on, before a clean stop; at most ``within_s``.

        A coil keeps its state when its controller goes, and nothing would end a
        siren's ``duration_s`` once the process is gone: a stopped gateway must not
        leave a siren sounding that only a power cycle of the module can stop (the
        next start writes every output off anyway, ``gateway/alarm/outputs.py``).
        Each is reported ``output.switched`` ``cleared`` (reason ``gateway
        stopping``) and stored before the outbox closes; an output whose module
        does not answer within ``within_s`` is logged (``gateway.outputs_left_on``).
        The alarms themselves stay latched and open at the center.
        """
        if self.alarm is None:
            return
        outputs = self.alarm.outputs
        try:
            async with asyncio.timeout(within_s):
                await outputs.release("gateway stopping")
        except TimeoutError:
            pass
        left = [o for o, state in outputs.states.items() if state.confirmed]
        if left:
            log.warning("gateway.outputs_left_on", outputs=left, within_s=within_s)

    async def _start_alarm(self) -> bool:
        """The alarm system's start (it persists first-start area states and the
        schedule's check time); False when the state file refuses the write — the
        zones and sirens run regardless, and the start is tried again."""
        assert self.alarm is not None
        try:
            await self.alarm.start()
        except StateError as exc:
            log.error("alarm.start_not_persisted", error=str(exc), retry_in_s=_RETRY_START_S)
            return False
        return True

    async def _start_alarm_later(self) -> None:
        while True:
            await asyncio.sleep(_RETRY_START_S)
            if await self._start_alarm():
                log.warning("alarm.start_persisted")
                return

    def _ops_server(self, outbox: Outbox, store: StateStore, stages: list[Stage]) -> OpsServer:
        assert self.uplink is not None and self.progress is not None and self.alarm is not None
        sources = StatusSources(
            self.cfg,
            outbox,
            self.uplink,
            store,
            stages,
            self.progress,
            self.supervisor,
            panels=self.panels,
            dropped_observations=lambda: self.dropped_observations,
            walk_test=self.alarm.walk.snapshot,
        )
        return OpsServer(self.cfg.metrics, sources, self.metrics)

    def _kept_loaded(self) -> None:
        """The outbox read its kept state late (it could not be read at start): the
        outages and panel incidents open at the last stop are learnt now."""
        assert self.outbox is not None and self.engine is not None
        module_ids = [m.id for m in self.cfg.modules]
        self.engine.learn_outages(kept_outages(self.outbox.kept, module_ids))
        for stage in (self.panels, self.cameras):
            if stage is not None:
                stage.kept_loaded()

    def _tap(self, append: StoreWith) -> StoreWith:
        """``append`` that shows the event (and a picture stored with it) on the bench
        page at once (even while the disk is slow) and pokes the local views once it
        is stored."""

        async def emit(
            event: Event,
            *,
            keep: Sequence[StateWrite] = (),
            blob: tuple[str, bytes] | None = None,
        ) -> Event:
            if blob is not None:
                self.feed.add_blob(*blob)
            self.feed.add(event)
            try:
                return await append(event, keep=keep, blob=blob)
            finally:
                self.notifier.poke()

        return emit

    async def _started(self, factory: EventFactory, outbox: Outbox, emit: Emit) -> Event:
        """``gateway.started``: the stream new events join and, when this start began a
        new one, the stream before it and why (``Outbox.stream_change``)."""
        data: dict[str, Any] = {
            "name": self.cfg.site.name,
            "stream": outbox.stream,
            "version": gateway_version(),
        }
        if outbox.stream_change is not None:
            data["previous_stream"], data["new_stream_reason"] = outbox.stream_change
        if insecure := self.cfg.commands.insecure:
            data["insecure"] = insecure
        return await emit(
            factory.make(
                "gateway.started",
                device="gateway",
                subject=self.cfg.site.gateway,
                state="instant",
                data=data,
            )
        )

    async def _observe(self, obs: Observation) -> None:
        """Driver sink: queue the observation for the rules; never blocks a poller."""
        self.observations.put_nowait(obs)

    async def _apply_observations(self) -> None:
        """The rules, in arrival order: alarms first, then the device's retained state.

        An observation whose rules fail is tried three times, then logged and
        counted as dropped, so one bad reading cannot hold up every alarm after it.
        """
        assert self.alarm is not None
        self._rules_task = asyncio.current_task()
        while True:
            self._rules_idle = True
            try:
                obs = await self.observations.get()
            finally:
                self._rules_idle = False
            for attempt in range(1, 4):
                try:
                    await self.alarm.observe(obs)
                    break
                except Exception:
                    log.exception("rules.failed", device=obs.device_id, attempt=attempt)
                    await asyncio.sleep(0.2 * attempt)
            else:
                self.dropped_observations += 1
                log.error("rules.observation_dropped", observation=repr(obs))
            self._publish_state(obs.device_id)
            self.notifier.poke()
            self.rules_done += 1

    def _rules_emit(self, emit: StoreWith) -> StoreWith:
        """``emit`` that marks the rules task as waiting on the disk, not stuck, meanwhile.

        The outbox writer is watched itself; a slow or failing disk is a storage
        fault (``fault.storage``), and a watchdog restart would lose the alarms
        the outbox still holds in memory for its next commit.
        """

        async def emit_durably(
            event: Event,
            *,
            keep: Sequence[StateWrite] = (),
            blob: tuple[str, bytes] | None = None,
        ) -> Event:
            mine = asyncio.current_task() is self._rules_task
            self._rules_on_disk += mine
            try:
                return await emit(event, keep=keep, blob=blob)
            finally:
                self._rules_on_disk -= mine

        return emit_durably

    @property
    def pollers(self) -> dict[str, ModulePoller]:
        """The Modbus modules' pollers by module id (empty before the run starts)."""
        return self.modules.pollers if self.modules is not None else {}

    def _publish_state(self, device_id: str) -> None:
        """Hand a module's retained state to the uplink when its health or an input changed.

        An analog reading or an observation that changed neither publishes nothing;
        ``time`` is when the state last changed. (The uplink publishes every state
        again after a reconnect.)
        """
        poller = self.pollers.get(device_id)
        if poller is None or self.uplink is None:
            return
        inputs = poller.inputs
        state = (poller.health, tuple(inputs))
        if self._published_states.get(device_id) == state:
            return
        self._published_states[device_id] = state
        self.uplink.set_state(
            device_id, {"health": poller.health, "inputs": inputs, "time": rfc3339(utcnow())}
        )

    def _area_armed(self, area_id: str) -> bool:
        """Is ``area_id`` armed (for cameras bound to an area)? Unknown before the alarm
        system exists, which is before any camera runs."""
        return self.alarm is not None and self.alarm.areas.armed(area_id)

    def _set_state(self, device_id: str, state: dict[str, Any]) -> None:
        """A device's retained ``…/state/<device>`` (kept by the uplink until it connects)."""
        if self.uplink is not None:
            self.uplink.set_state(device_id, state)

    async def _acked(self, payload: bytes) -> None:
        """The center's ack (``gateway/delivery/acks.py``): by ids, by stream up to a seq.

        Only a signed ack counts (``gateway/delivery/ack_auth.py``): an unsigned or
        forged one is ignored, so its events stay open and are re-sent, and reported
        (``fault.ack_refused``, ``gateway/delivery/ack_refusals.py``)."""
        if self.ack_gate is None:
            return
        refusal = self.ack_gate.check(payload)
        if refusal is not None:
            if self.ack_refusals is not None:
                await self.ack_refusals.refused(refusal)
            return
        ids = parse_ack(payload)
        through = parse_stream_ack(payload)
        if self.outbox is None or (not ids and through is None):
            return
        arrived = time.time()  # the mark may wait for a commit (``mark_linger``)
        # Both marks at once: each takes its events off the resend schedule, and tells
        # the escalation (``outbox.on_acked``), before it waits for its commit.
        writes = [self.outbox.mark_acked(ids)] if ids else []
        if through is not None:
            writes.append(self.outbox.mark_acked_through(through.stream, through.up_to_seq))
        done = await asyncio.gather(*writes)
        acked = [entry for entries in done for entry in entries]
        if through is not None:
            ids = [*ids, *(event_id for event_id, _ in done[-1])]
        for _, stored_at in acked:
            self.metrics.center_ack_seconds.observe(max(0.0, arrived - stored_at))
        if ids:
            self.feed.note_ack(ids)
            self.notifier.poke()
            if self.escalation is not None:
                self.escalation.acked(ids)

    async def _escalation_switch(self, on: bool, reason: str) -> None:
        """Switch ``[outbox] escalate_output`` (a write that fails is retried by the outputs)."""
        output = self.cfg.outbox.escalate_output
        if output is not None and self.alarm is not None:
            await self.alarm.outputs.switch(output, on, reason=reason)


def _holding(outbox: Outbox) -> StoreWith:
    """The outbox's :meth:`~Outbox.hold` as a ``StoreWith``: accepted and numbered at
    once, stored (with its kept state and picture) by the next commit, never waiting
    on the disk."""

    async def hold(
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event:
        return outbox.hold(event, keep=keep, blob=blob)

    return hold


async def _append_unreported_later(store: StateStore, outbox: Outbox) -> None:
    """The state store's unreported events, once the outbox can be written (a start on
    an unwritable disk must not wait for it)."""
    await outbox.wait_writable()
    await append_unreported(store, outbox)


def camera_stage(
    cfg: GatewayConfig,
    factory: EventFactory,
    store: StoreWith,
    keep: Keep,
    recall: Recall,
    *,
    publish_state: StatePublisher | None = None,
    armed: Callable[[str], bool] | None = None,
) -> CameraStage:
    """The camera stage, imported only when cameras are configured.

    Its drivers pull in zeep and the ONVIF stack (about 40 MiB with the cameras'
    parsed WSDLs, of a process that is otherwise under 55 MiB); a gateway without
    cameras never loads them (issue 14, ``bench/contact_latency.py`` prints the
    peak). OpenCV and numpy are loaded by the picture processes only
    (``drivers/onvif_camera/picture_process.py``).
    """
    from gateway.camera.stage import CameraStage

    return CameraStage(cfg, factory, store, keep, recall, publish_state=publish_state, armed=armed)


def panel_stage(
    cfg: GatewayConfig, factory: EventFactory, emit: StoreWith, durable: StoreWith, recall: Recall
) -> PanelStage:
    """The DC-09 panels' stage, imported only when ``[dc09]`` or ``[[panels]]`` is
    configured (its AES library stays out of a gateway without panels)."""
    from gateway.panels.stage import PanelStage

    return PanelStage(cfg, factory, emit, durable, recall)


def open_outbox(path: Path, cfg: OutboxConfig) -> Outbox:
    """The outbox as ``[outbox]`` configures it (not yet opened)."""
    return Outbox(
        path,
        commit_linger=cfg.commit_linger_ms / 1000,
        mark_linger=cfg.mark_linger_ms / 1000,
        ack_timeout=cfg.ack_timeout_s,
        max_rows=cfg.max_rows,
        max_bytes=cfg.max_bytes,
        alarm_reserve_rows=cfg.alarm_reserve_rows,
        ballast_bytes=int(cfg.ballast_mb * (1 << 20)),
    )


@contextlib.asynccontextmanager
async def running(
    cfg: GatewayConfig, *, outbox_path: Path | None = None, stop: asyncio.Event | None = None
) -> AsyncIterator[Gateway]:
    """Start a gateway as a task, wait until ready, yield it, cancel it on exit.

    ``stop`` set while it starts ends the wait: the body runs with a gateway not yet
    ready (and should stop it at once).
    """
    gateway = Gateway(cfg, outbox_path=outbox_path)
    task = asyncio.create_task(gateway.run(), name="gateway")
    waits = {task, asyncio.create_task(gateway.ready.wait())}
    if stop is not None:
        waits.add(asyncio.create_task(stop.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _stop(task)
        raise
    finally:
        for waiter in waits - {task}:
            waiter.cancel()
    if task.done():
        task.result()
    try:
        yield gateway
    finally:
        await _stop(task)


async def _stop(task: asyncio.Task[None], grace: float = 10.0) -> None:
    """Cancel the gateway task and wait for it, at most ``grace`` seconds (then say so).

    Cancelled once: a second cancellation would cut its clean stop short (the outbox
    storing what it holds, the SQLite connections closing).
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        log.error("gateway.stop_timeout", grace_s=grace, tasks=_task_names())
        return
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


def _task_names() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if not t.done())


async def serve(cfg: GatewayConfig, *, outbox_path: Path | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT, then stop cleanly.

    The signal handlers are installed before anything starts, so a stop is obeyed
    while starting, while the disk stalls and when ready (issue 11), within
    ``_stop``'s grace time. Once ready, the garbage collector is settled for a long
    run (:mod:`gateway.runtime.heap`).
    """
    loop = asyncio.get_running_loop()
    soft, hard = descriptors.raise_open_files_limit()
    log.info("gateway.open_files_limit", soft=soft, hard=hard)
    descriptors.quiet_loop_errors(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(cfg, outbox_path=outbox_path, stop=stop) as gateway:
        if gateway.ready.is_set():
            # The process's own policy, not a Gateway's: tests run many in one process.
            heap.settle()
            log.info("gateway.heap_settled", gc=heap.describe())
        await stop.wait()
        notify("STOPPING=1")
        log.info("gateway.stopping", ready=gateway.ready.is_set())
        await gateway.release_outputs()
