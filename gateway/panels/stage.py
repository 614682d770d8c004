"""The DC-09 receiver as a daemon stage: listeners, supervision, and the panels' events.

A :class:`~gateway.runtime.stage.Stage` of family ``dc09``. Tasks, started by the
daemon after the Modbus pollers: ``driver[dc09:<protocol>:<host>:<port>]`` for each
``[dc09] listen`` address (a port that cannot be bound is retried by the
supervisor) and ``dc09[supervision]`` (panels silent past their ``supervision_s``).

The receiver hands every observation here and waits: a message's events are
committed (``durable`` is the outbox's ``append``) before the panel gets its ACK. What
acknowledges nothing is only held (``emit``, the outbox's ``hold``): a panel's
``device.online`` and ``fault.device_offline``, and ``fault.panel_rejected`` before a
NAK, so neither the panic behind them, nor the NAK, nor another panel's supervision
waits on the disk (a fresh review of 2026-12-05: each waited out a 6-10 s lock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from drivers.dc09.receiver import Receiver
from drivers.dc09.transport import TcpListener, UdpListener
from gateway.config.root import GatewayConfig
from gateway.events.model import Event, EventFactory
from gateway.events.observation import DeviceHealth, HealthState, utcnow
from gateway.events.panel_observation import PanelMessage, PanelObservation, PanelRejected
from gateway.panels.memory import INCIDENT, IncidentKey, open_incidents
from gateway.panels.rejections import Rejections
from gateway.panels.reports import PanelReports
from gateway.runtime.device_health import HealthEvents, kept_outages
from gateway.runtime.stage import StageTask, device_task
from gateway.runtime.state import Recall, StoreWith, read_kept


class PanelStage:
    """Every DC-09 panel of one gateway.

    Args:
        cfg: the gateway config (``[dc09]``, ``[[panels]]``, ``[[areas]]``).
        factory: makes events.
        emit: accepts an event with kept state without waiting for its commit (the
            outbox's ``hold``).
        durable: stores an event with kept state, returning once it is committed
            (``append``).
        recall: reads kept state (the outbox's ``kept``): the incidents the panels
            reported open before this start (:mod:`gateway.panels.memory`) and the
            panels' outages (:mod:`gateway.runtime.device_health`).
        now: the gateway's clock.

    Raises:
        ConfigError: a panel's key file cannot be read or holds no key.

    Attributes:
        receiver: the receiver's rules and counters.
        listeners: one per ``[dc09] listen`` address.
        reports: the panels' messages → events.
        rejections: refused frames → ``fault.panel_rejected``.
    """

    family = "dc09"

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: StoreWith,
        durable: StoreWith,
        recall: Recall | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._panels = {p.id: p for p in cfg.panels}
        self.receiver = Receiver(
            cfg.dc09, [(p, p.key()) for p in cfg.panels], self._observe, now=now
        )
        self.listeners: list[TcpListener | UdpListener] = [
            TcpListener(
                listen,
                self.receiver,
                max_connections=cfg.dc09.max_connections,
                idle_timeout=cfg.dc09.idle_timeout_s,
                max_per_host=cfg.dc09.max_connections_per_host,
            )
            if listen.protocol == "tcp"
            else UdpListener(listen, self.receiver)
            for listen in cfg.dc09.listen
        ]
        self.reports = PanelReports(
            cfg.panels, {a.id: a for a in cfg.areas}, factory, durable, _opened(recall)
        )
        self.rejections = Rejections(factory, emit, cfg.dc09.reject_report_s)
        self._health = HealthEvents(factory, emit, kept_outages(recall, self._panels))
        self._recall = recall

    def kept_loaded(self) -> None:
        """The outbox read its kept state late (unreadable at start): learn the
        incidents and outages the panels had open (the outbox's ``on_kept_loaded``)."""
        self.reports.learn(_opened(self._recall))
        self._health.learn(kept_outages(self._recall, self._panels))

    @property
    def connections(self) -> int:
        """TCP connections open now, over every listener."""
        return sum(x.connections for x in self.listeners if isinstance(x, TcpListener))

    @property
    def refused_connections(self) -> int:
        """TCP connections closed for ``[dc09] max_connections`` since start."""
        return sum(x.refused_connections for x in self.listeners if isinstance(x, TcpListener))

    @property
    def evicted_connections(self) -> int:
        """TCP connections closed for a newer one of the same address since start."""
        return sum(x.evicted_connections for x in self.listeners if isinstance(x, TcpListener))

    @property
    def udp_dropped(self) -> int:
        """UDP datagrams lost before they were taken, since start."""
        return sum(x.dropped for x in self.listeners if isinstance(x, UdpListener))

    def tasks(self) -> Sequence[StageTask]:
        """One task per listen address and the supervision (none when nothing is configured)."""
        found = [
            device_task(self.family, listener.name, listener.run) for listener in self.listeners
        ]
        if self._panels:
            found.append(StageTask("dc09[supervision]", self.receiver.supervision.run))
        return found

    def health(self) -> Mapping[str, HealthState]:
        """Panel id → its link health."""
        return dict(self.receiver.supervision.state)

    def last_seen(self) -> Mapping[str, datetime | None]:
        """Panel id → gateway UTC time of its last accepted message, link tests included
        (None: not since start); the bench page's "last seen"."""
        return dict(self.receiver.supervision.last_heard)

    async def _observe(self, obs: PanelObservation) -> None:
        if isinstance(obs, PanelMessage):
            await self.reports.message(obs)
        elif isinstance(obs, PanelRejected):
            await self.rejections.rejected(obs)
        elif isinstance(obs, DeviceHealth):
            panel = self._panels[obs.device_id]
            await self._health.transition(
                obs, panel.name or panel.id, panel.location, {"account": panel.account}
            )


def _opened(recall: Recall | None) -> dict[IncidentKey, Event]:
    """The incidents kept open at the last stop (none when they cannot be read)."""
    return read_kept(recall, INCIDENT, open_incidents) or {}
