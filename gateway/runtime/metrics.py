"""The gateway's live metrics: one Prometheus registry per gateway (no global state).

Counted as things happen (here): events stored by type and priority, commands
accepted and refused by reason (from their ``command.result`` audit events),
PUBACK latency and center-ack latency. Levels that are read when someone looks
(outbox depth, uplink state, device health...) are added to the same registry by
:mod:`gateway.ops.status`, from one snapshot, so ``/metrics`` and
``campus-gateway status`` always agree. Metric names follow the Prometheus
naming guide (https://prometheus.io/docs/practices/naming/): base units
(seconds), ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from gateway.events.model import Event
from gateway.runtime.version import gateway_version

PREFIX = "campus_gateway"

# A PUBACK on a LAN broker takes milliseconds; over a 4G path, up to seconds.
_PUBACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
# The center acks an alarm within seconds when it is reachable; an outage stretches it.
_ACK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

# Command refusal reasons the processor knows (gateway.commands.processor); anything
# else is counted as "other", so a hostile center cannot grow the label set.
COMMAND_REASONS = frozenset(
    {
        "retained", "invalid", "bad_signature", "expired", "duplicate",
        "unknown_command", "rejected", "failed", "not_ready", "guard_unknown",
    }
)  # fmt: skip


class GatewayMetrics:
    """The live counters and histograms of one gateway.

    Attributes:
        registry: the gateway's own registry (what ``/metrics`` renders).
        events: ``campus_gateway_events_total{type, priority}``: events stored.
        commands: ``campus_gateway_commands_total{result, reason}``: ``result`` is
            ``accepted`` or ``refused``.
        acks_refused: ``campus_gateway_acks_refused_total{reason}``: acks ignored as
            ``malformed``, ``unsigned`` or ``bad_signature`` (:mod:`gateway.delivery.ack_auth`).
        pictures: ``campus_gateway_pictures_total{camera, outcome}``: evidence
            pictures by their ``camera.snapshot`` event: ``taken``, ``fallback``
            (taken from the stream because the snapshot URI failed: its
            ``snapshot_error`` says why) or ``failed`` (not taken: ``error``).
        puback_seconds: publish → PUBACK, per outbox row.
        center_ack_seconds: alarm stored → the center's ack (end to end, so an
            outage shows as long acks).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.events = Counter(
            f"{PREFIX}_events", "Events stored in the outbox", ["type", "priority"], registry=reg
        )
        self.commands = Counter(
            f"{PREFIX}_commands",
            "Commands from the center, accepted or refused, by reason",
            ["result", "reason"],
            registry=reg,
        )
        self.acks_refused = Counter(
            f"{PREFIX}_acks_refused",
            "Acks from the center ignored: malformed, unsigned or badly signed",
            ["reason"],
            registry=reg,
        )
        self.pictures = Counter(
            f"{PREFIX}_pictures",
            "Evidence pictures by camera: taken, taken from the stream instead, failed",
            ["camera", "outcome"],
            registry=reg,
        )
        self.puback_seconds = Histogram(
            f"{PREFIX}_puback_seconds",
            "Seconds from publish to the broker's PUBACK",
            buckets=_PUBACK_BUCKETS,
            registry=reg,
        )
        self.center_ack_seconds = Histogram(
            f"{PREFIX}_center_ack_seconds",
            "Seconds from storing an alarm to the center's ack",
            buckets=_ACK_BUCKETS,
            registry=reg,
        )
        Info(f"{PREFIX}_build", "The gateway's version", registry=reg).info(
            {"version": gateway_version()}
        )

    def event_stored(self, event: Event) -> None:
        """Count one stored event (the outbox calls this after its commit)."""
        self.events.labels(event.type, str(event.priority)).inc()
        if event.type == "camera.snapshot":
            if "sha256" not in event.data:
                outcome = "failed"
            else:
                outcome = "fallback" if "snapshot_error" in event.data else "taken"
            self.pictures.labels(event.subject, outcome).inc()
        if event.type == "command.result":
            status = event.data.get("status")
            reason = str(event.data.get("reason") or "")
            if status == "ok":
                self.commands.labels("accepted", "").inc()
            else:
                self.commands.labels(
                    "refused", reason if reason in COMMAND_REASONS else "other"
                ).inc()
