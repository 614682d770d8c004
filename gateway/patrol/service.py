"""The patrol stage of the daemon: the tour engine's timer and one task per reader.

A :class:`~gateway.runtime.stage.Stage`. Tasks, started in the daemon's task
group after the Modbus pollers:
``patrol[engine]`` (missed stops when their deadlines pass) and
``driver[patrol_station:<id>]`` / ``driver[patrol_network:<id>]`` /
``driver[patrol_handheld:<id>]``, each supervised (restarted with backoff if it
crashes; a reader that cannot bind its port is retried the same way).

Round progress, reads seen, guards signed in, open reader faults and station
read positions are kept in the gateway's state store (:mod:`gateway.patrol.memory`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from drivers.patrol_reader.handheld import HandheldReader
from drivers.patrol_reader.network import NetworkReader
from drivers.patrol_reader.positions import PositionStore
from drivers.patrol_reader.station import StationPoller
from gateway.config.patrol import NetworkReaderConfig, StationReaderConfig
from gateway.config.root import GatewayConfig
from gateway.events.model import Emit, EventFactory
from gateway.events.observation import HealthState, utcnow
from gateway.patrol.engine import TourEngine
from gateway.patrol.plan import Plan
from gateway.runtime.stage import StageTask
from gateway.runtime.state_store import StateStore

PatrolReader = StationPoller | NetworkReader | HandheldReader


class PatrolStage:
    """Everything patrol-related of one gateway.

    Args:
        cfg: the gateway config (``[patrol]``, ``[site] timezone``).
        factory: makes events.
        emit: stores an event (the outbox's ``append``).
        store: the gateway's state store (the tour resumes from it); None keeps
            everything in memory only.
        now: the gateway's clock.

    Raises:
        ConfigError: a reader's ``key_file`` cannot be read or holds no valid key.

    Attributes:
        engine: the tour engine.
        readers: reader id → its driver.
    """

    family = "patrol"

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: Emit,
        *,
        store: StateStore | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        tz = ZoneInfo(cfg.site.timezone)
        plan = Plan(cfg.patrol, cfg.site.timezone)
        self.engine = TourEngine(plan, factory, emit, store=store, now=now)
        positions = PositionStore(store)
        sink = self.engine.observe
        self.readers: dict[str, PatrolReader] = {}
        for r in cfg.patrol.readers:
            if isinstance(r, StationReaderConfig):
                self.readers[r.id] = StationPoller(r, sink, tz, positions=positions, now=now)
            elif isinstance(r, NetworkReaderConfig):
                self.readers[r.id] = NetworkReader(r, sink, tz, now=now, key=r.key())
            else:
                self.readers[r.id] = HandheldReader(r, sink, tz, now=now, key=r.key())
        self._active = bool(cfg.patrol.routes or cfg.patrol.readers)

    def tasks(self) -> Sequence[StageTask]:
        """The engine's timer and one task per reader (none without routes or readers)."""
        if not self._active:
            return []
        found = [StageTask("patrol[engine]", self.engine.run)]
        for reader_id, reader in self.readers.items():
            kind = {StationPoller: "station", NetworkReader: "network"}.get(
                type(reader), "handheld"
            )
            found.append(StageTask(f"driver[patrol_{kind}:{reader_id}]", reader.run))
        return found

    def health(self) -> Mapping[str, HealthState]:
        """Reader id → its health, for the readers that supervise their device."""
        return {
            reader_id: reader.health.state
            for reader_id, reader in self.readers.items()
            if isinstance(reader, StationPoller | NetworkReader)
        }

    def protocol_errors(self) -> Mapping[str, int]:
        """Reader id → bad frames or records (stations); bad lines and connections
        refused for not answering the challenge (the others)."""
        return {
            reader_id: reader.protocol_errors
            if isinstance(reader, StationPoller)
            else reader.bad_lines + reader.rejected
            for reader_id, reader in self.readers.items()
        }

    def last_seen(self) -> Mapping[str, dt.datetime | None]:
        """Reader id → its last successful read or line, for the supervised readers."""
        return {
            reader_id: reader.health.last_seen
            for reader_id, reader in self.readers.items()
            if isinstance(reader, StationPoller | NetworkReader)
        }
