"""The status snapshot as Prometheus metrics (levels and the counters kept by the parts).

Registered on the gateway's own registry (:class:`~gateway.runtime.metrics.GatewayMetrics`)
beside the live counters and histograms. :meth:`StatusCollector.collect` reports
the snapshot last handed to :meth:`StatusCollector.update`; the endpoint updates
it just before each scrape, so every figure of one scrape comes from one moment.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.ops.status import ReceiverStatus, Status
from gateway.runtime.metrics import PREFIX


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class StatusCollector(Collector):
    """Yields the levels of the last :class:`Status` (nothing before the first update)."""

    def __init__(self) -> None:
        self.latest: Status | None = None

    def update(self, status: Status) -> None:
        """Use ``status`` for the next collection."""
        self.latest = status

    def describe(self) -> list[Metric]:
        """Nothing to describe ahead of time (the device set comes from the config)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every level and part counter of the last snapshot."""
        s = self.latest
        if s is None:
            return
        ob, up = s.outbox, s.uplink
        if ob.depth is not None:  # None: the file could not be read (``storage_error``)
            yield _gauge("outbox_depth", "Rows not yet confirmed by the broker", ob.depth)
        yield _gauge(
            "outbox_oldest_pending_seconds",
            "Age of the oldest row not yet confirmed by the broker (0 when none)",
            ob.oldest_pending_s or 0.0,
        )
        yield _gauge(
            "outbox_waiting_to_commit", "Writes queued for the outbox writer", ob.waiting_to_commit
        )
        if ob.unacked_alarms is not None:
            yield _gauge(
                "outbox_unacked_alarms", "Alarms delivered and not yet acked by the center",
                ob.unacked_alarms,
            )  # fmt: skip
        if ob.overdue_alarms is not None:
            yield _gauge(
                "outbox_overdue_alarms",
                "Alarms whose center ack is overdue (ack_timeout_s after the PUBACK)",
                ob.overdue_alarms,
            )
        yield _gauge(
            "outbox_readable",
            "1 when the last snapshot could read the outbox file (0: storage_error in /status)",
            0 if ob.storage_error else 1,
        )
        yield _gauge("outbox_stored_rows", "Rows held in the outbox", ob.stored_rows)
        yield _gauge("outbox_stored_bytes", "Payload bytes held in the outbox", ob.stored_bytes)
        yield _gauge("outbox_disk_pressure", "1 while the outbox disk is full", ob.disk_pressure)
        yield _counter("outbox_shed", "Rows shed for capacity (priority 4-5)", ob.shed_total)
        storage = CounterMetricFamily(
            f"{PREFIX}_storage_faults", "Outbox and state store faults by kind", labels=["kind"]
        )
        storage.add_metric(["commit_failed"], ob.commit_failures)
        storage.add_metric(["spill_failed"], ob.spill_failures)
        storage.add_metric(["disk_full"], ob.disk_full)
        storage.add_metric(["quarantined"], 1 if ob.quarantined else 0)
        storage.add_metric(["state_commit_failed"], ob.state_commit_failures)
        storage.add_metric(["state_quarantined"], 1 if ob.state_quarantined else 0)
        storage.add_metric(["state_unread"], 1 if ob.state_unread else 0)
        storage.add_metric(["state_unsaved"], ob.state_unsaved)
        storage.add_metric(["not_durable"], 1 if ob.not_durable else 0)
        yield storage
        yield _gauge("uplink_connected", "1 while the MQTT uplink is connected", _up(up.state))
        yield _counter("uplink_reconnects", "Connections to the broker after the first",
                       up.reconnects)  # fmt: skip
        yield _counter("uplink_connect_attempts", "Connection attempts", up.attempts)
        yield _gauge("uplink_inflight", "Publishes awaiting their PUBACK", up.inflight)
        yield _counter("uplink_published", "Outbox rows confirmed by PUBACK", up.published)
        yield _counter("uplink_publish_failures", "Publishes whose outcome became unknown",
                       up.publish_failures)  # fmt: skip
        yield _counter("uplink_republished_alarms", "Alarms published again for want of an ack",
                       up.republished_alarms)  # fmt: skip
        yield _counter("uplink_commands_dropped",
                       "Commands dropped unread: too many were being handled at once",
                       up.commands_dropped)  # fmt: skip
        refused = CounterMetricFamily(
            f"{PREFIX}_uplink_publish_refused",
            "Publishes the broker refused, by PUBACK reason code (retried with back-off)",
            labels=["reason"],
        )
        for reason, n in sorted(up.publish_refused.items()):
            refused.add_metric([reason], n)
        yield refused
        devices = GaugeMetricFamily(
            f"{PREFIX}_device_up", "1 when the device is online", labels=["family", "device"]
        )
        health = GaugeMetricFamily(
            f"{PREFIX}_device_health",
            "1 for the device's current health state",
            labels=["family", "device", "state"],
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_device_protocol_errors",
            "Malformed or refused frames a device sent (each logged once, counted, skipped)",
            labels=["family", "device"],
        )
        for d in s.devices:
            devices.add_metric([d.family, d.id], 1 if d.health == "online" else 0)
            health.add_metric([d.family, d.id, d.health], 1)
            errors.add_metric([d.family, d.id], d.protocol_errors)
        yield devices
        yield health
        yield errors
        yield _gauge(
            "zones_in_alarm",
            "Conditions in alarm now (alarm, tamper, line fault; what panels report active)",
            len(s.alarms),
        )
        yield _gauge("tasks_stalled", "Critical tasks stalled (the watchdog is withheld)",
                     len(s.stalled))  # fmt: skip
        crashes = CounterMetricFamily(
            f"{PREFIX}_task_crashes", "Supervised task crashes", labels=["task"]
        )
        for task, n in sorted(s.task_crashes.items()):
            crashes.add_metric([task], n)
        yield crashes
        yield _counter("observations_dropped", "Observations the rules gave up on",
                       s.dropped_observations)  # fmt: skip
        yield _gauge("uptime_seconds", "Seconds since the gateway started", s.uptime_s)
        if s.dc09 is not None:
            yield from _receiver(s.dc09)


ANSWERS = ("ack", "nak", "duh", "unanswered")
"""What the DC-09 receiver answered a frame (``unanswered``: nothing, as for a bad CRC)."""


def _receiver(r: ReceiverStatus) -> Iterator[Metric]:
    """The DC-09 receiver's counters: frames, answers, outcomes, refusals, connections."""
    yield _counter("dc09_frames", "DC-09 frames received from panels", r.counts.get("frames", 0))
    answers = CounterMetricFamily(
        f"{PREFIX}_dc09_answers", "DC-09 frames by the answer sent", labels=["answer"]
    )
    for answer in ANSWERS:
        answers.add_metric([answer], r.counts.get(answer, 0))
    yield answers
    outcomes = CounterMetricFamily(
        f"{PREFIX}_dc09_outcomes",
        "DC-09 frames by what became of them (accepted, null, duplicates, junk, ...)",
        labels=["outcome"],
    )
    refused = CounterMetricFamily(
        f"{PREFIX}_dc09_refused", "DC-09 frames refused, by reason", labels=["reason"]
    )
    for key, n in r.counts.items():
        if key.startswith("refused."):
            refused.add_metric([key.removeprefix("refused.")], n)
        elif key != "frames" and key not in ANSWERS:
            outcomes.add_metric([key], n)
    for outcome in ("accepted", "null", "duplicates"):
        if outcome not in r.counts:
            outcomes.add_metric([outcome], 0)
    yield outcomes
    yield refused
    yield _gauge("dc09_connections", "Panel TCP connections open now", r.connections)
    yield _counter("dc09_connections_refused", "Panel TCP connections closed for max_connections",
                   r.refused_connections)  # fmt: skip
    yield _counter("dc09_connections_evicted",
                   "Panel TCP connections closed for a newer one of the same address",
                   r.evicted_connections)  # fmt: skip
    yield _counter("dc09_udp_dropped",
                   "Panel UDP datagrams lost before they were taken (a full socket buffer, "
                   "or too many being taken)", r.udp_dropped)  # fmt: skip


def _up(state: str) -> float:
    return 1.0 if state == "connected" else 0.0
