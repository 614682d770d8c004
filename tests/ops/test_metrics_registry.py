"""The live counters of one gateway: per-instance registries, events and commands counted
from what the outbox stored, a hostile reason never grows the label set."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from gateway.events.model import Event, EventFactory
from gateway.runtime.metrics import GatewayMetrics

FACTORY = EventFactory("campus/s/g", lambda: True)


def _command(status: str, reason: str | None = None) -> Event:
    data: dict[str, Any] = {"command": "arm", "status": status}
    if reason is not None:
        data["reason"] = reason
    return FACTORY.make("command.result", device="gateway", subject="arm", state="instant",
                        data=data)  # fmt: skip


def _value(m: GatewayMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_each_gateway_counts_its_own_events_and_commands() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()
    one.event_stored(FACTORY.make("alarm.panic", device="io", subject="Z01", state="active"))
    one.event_stored(_command("ok"))
    one.event_stored(_command("error", "bad_signature"))
    one.event_stored(_command("error", "bad_signature"))
    one.event_stored(_command("error", "x" * 500))  # a reason no processor gives
    events = "campus_gateway_events_total"
    assert _value(one, events, type="alarm.panic", priority="1") == 1
    priority = str(_command("ok").priority)  # the audit's priority (gateway/events/codes.py)
    assert _value(one, events, type="command.result", priority=priority) == 4
    commands = "campus_gateway_commands_total"
    assert _value(one, commands, result="accepted", reason="") == 1
    assert _value(one, commands, result="refused", reason="bad_signature") == 2
    assert _value(one, commands, result="refused", reason="other") == 1
    assert "x" * 500 not in generate_latest(one.registry).decode()
    assert _value(two, events, type="alarm.panic", priority="1") == 0  # no shared state


def _picture(camera: str, **data: Any) -> Event:
    return FACTORY.make("camera.snapshot", device=camera, subject=camera, state="instant",
                        data=data)  # fmt: skip


def test_pictures_are_counted_by_camera_and_outcome() -> None:
    """A picture that failed (a frozen or crashed picture process among the causes)
    shows in /metrics, not only on its event."""
    m = GatewayMetrics()
    m.event_stored(_picture("cam-1", sha256="ab", bytes=10))
    m.event_stored(_picture("cam-1", sha256="cd", bytes=10, snapshot_error="HTTP 503"))
    m.event_stored(_picture("cam-1", error="cam-1: picture not made within 7 s", not_taken=True))
    m.event_stored(_picture("cam-2", error="cam-2: no media URIs known yet"))
    pictures = "campus_gateway_pictures_total"
    assert _value(m, pictures, camera="cam-1", outcome="taken") == 1
    assert _value(m, pictures, camera="cam-1", outcome="fallback") == 1
    assert _value(m, pictures, camera="cam-1", outcome="failed") == 1
    assert _value(m, pictures, camera="cam-2", outcome="failed") == 1
    assert _value(m, pictures, camera="cam-2", outcome="taken") == 0
