"""Home Assistant MQTT discovery (gateway/dashboard/discovery.py) checked against the fields
Home Assistant documents, rendered with Jinja as Home Assistant renders it, and read from a
real mosquitto the way Home Assistant reads it (retained, under ``homeassistant/#``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.config.root import GatewayConfig, load_config
from gateway.config.views import DashboardConfig
from gateway.daemon import running
from gateway.dashboard.discovery import DEVICE_CLASS, discovery_messages
from gateway.errors import ConfigError
from simulators.broker import MosquittoBroker
from tests.campus_helpers import DEMO_CONFIG, demo_config_on, simulated_campus
from tests.dashboard_support import read_retained, retained_until
from tests.helpers import broken_copy, line_of

pytestmark = pytest.mark.timeout(90)

# What Home Assistant documents, written down from its documentation sources
# (github.com/home-assistant/home-assistant.io, the `{% configuration %}` blocks):
# source/_integrations/binary_sensor.mqtt.markdown (commit 04987cbb495878815c8c8b0627dbba5f70ba3821)
BINARY_SENSOR_FIELDS = {
    "availability", "availability_mode", "availability_topic", "device", "device_class",
    "enabled_by_default", "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "off_delay", "payload_available", "payload_not_available",
    "payload_off", "payload_on", "qos", "state_topic", "unique_id", "value_template",
}  # fmt: skip
BINARY_SENSOR_DEVICE_FIELDS = {
    "connections", "identifiers", "manufacturer", "model", "name", "suggested_area",
    "sw_version", "via_device",
}  # fmt: skip
# source/_integrations/sensor.mqtt.markdown (commit 035b814cbe5be7ae3bf0ea2147e19f099fd0faec)
SENSOR_FIELDS = {
    "availability_topic", "device", "device_class", "expire_after", "force_update", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "payload_available",
    "payload_not_available", "qos", "state_topic", "unique_id", "unit_of_measurement",
    "value_template",
}  # fmt: skip
SENSOR_DEVICE_FIELDS = {
    "connections",
    "identifiers",
    "manufacturer",
    "model",
    "name",
    "sw_version",
    "via_device",
}
REQUIRED = {"state_topic"}  # `required: true` in both
# source/_integrations/binary_sensor.markdown (commit 00042d88820429fbd0326161cb74067ddb0cc6f1)
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}  # fmt: skip
STRING_FIELDS = {
    "availability_topic", "device_class", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "payload_available", "payload_not_available",
    "payload_off", "payload_on", "state_topic", "unique_id", "unit_of_measurement",
    "value_template",
}  # fmt: skip
# MQTT discovery (source/_integrations/mqtt.markdown, "Discovery topic"):
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids of [a-zA-Z0-9_-].
TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")

PREFIX = "campus/v1/demo-school/gw1"


def documented_problems(topic: str, payload: dict[str, Any]) -> list[str]:
    """What in one discovery message Home Assistant does not document (empty: all good)."""
    match = TOPIC.match(topic)
    if match is None:
        return [f"topic {topic!r} is not <prefix>/<component>/<node_id>/<object_id>/config"]
    binary = match.group(1) == "binary_sensor"
    fields = BINARY_SENSOR_FIELDS if binary else SENSOR_FIELDS
    device_fields = BINARY_SENSOR_DEVICE_FIELDS if binary else SENSOR_DEVICE_FIELDS
    problems = [f"undocumented field {k!r}" for k in sorted(set(payload) - fields)]
    problems += [f"required field {k!r} missing" for k in sorted(REQUIRED - set(payload))]
    problems += [
        f"{k} must be a non-empty string"
        for k in sorted(STRING_FIELDS & set(payload))
        if not isinstance(payload[k], str) or not payload[k]
    ]
    if payload.get("qos", 0) not in (0, 1, 2):
        problems.append(f"qos {payload['qos']!r} is not 0, 1 or 2")
    device = payload.get("device", {})
    problems += [f"undocumented device field {k!r}" for k in sorted(set(device) - device_fields)]
    if not device.get("identifiers") and not device.get("connections"):
        problems.append("device needs identifiers or connections")
    if binary and payload.get("device_class") not in BINARY_SENSOR_CLASSES | {None}:
        problems.append(f"device_class {payload['device_class']!r} is not a binary sensor class")
    problems += [f"{k}: no control from Home Assistant" for k in payload if "command" in k]
    return problems


def _discovering() -> GatewayConfig:
    cfg = load_config(DEMO_CONFIG)
    return cfg.model_copy(update={"dashboard": DashboardConfig(ha_discovery=True)})


def _render(template: str, state: dict[str, Any]) -> str:
    """A value_template as Home Assistant renders it: Jinja, the payload as ``value_json``."""
    env = ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json=state, value=str(state)).strip()


def test_every_discovery_message_uses_only_what_home_assistant_documents() -> None:
    cfg = _discovering()
    messages = discovery_messages(cfg)
    assert len(messages) == len(cfg.zones) + len(cfg.areas)
    for topic, payload in messages:
        assert documented_problems(topic, payload) == [], (topic, payload)
    assert len({p["unique_id"] for _, p in messages}) == len(messages)
    devices = [p["device"] for _, p in messages]
    assert all(d == devices[0] for d in devices)  # one HA device per gateway
    assert devices[0]["identifiers"] == ["campus-gateway_demo-school_gw1"]
    assert {p["availability_topic"] for _, p in messages} == {f"{PREFIX}/status"}


def test_the_checker_itself_refuses_what_home_assistant_does_not_document() -> None:
    topic, good = discovery_messages(_discovering())[0]
    assert documented_problems(topic, good) == []
    bad = {**good, "command_topic": f"{PREFIX}/cmd/reset", "device_class": "burglar"}
    bad["device"] = {**good["device"], "serial": "x"}
    assert documented_problems(topic, bad) == [
        "undocumented field 'command_topic'",
        "undocumented device field 'serial'",
        "device_class 'burglar' is not a binary sensor class",
        "command_topic: no control from Home Assistant",
    ]
    assert documented_problems(topic.replace("/config", "/cfg"), good) != []
    no_topic = {k: v for k, v in good.items() if k != "state_topic"}
    assert documented_problems(topic, no_topic) == ["required field 'state_topic' missing"]


def test_device_class_by_zone_type_and_templates_as_home_assistant_renders_them() -> None:
    cfg = _discovering()
    by_topic = dict(discovery_messages(cfg))
    zones = {z.id: z for z in cfg.zones}
    node = "campus_demo-school_gw1"
    for zone_id, zone in zones.items():
        payload = by_topic[f"homeassistant/binary_sensor/{node}/zone_{zone_id}/config"]
        assert payload["device_class"] == DEVICE_CLASS[zone.type]
        assert payload["state_topic"] == f"{PREFIX}/zone/{zone_id}/state"
    assert DEVICE_CLASS == {
        "panic": "safety", "perimeter": "motion", "intrusion": "motion", "tamper": "tamper",
        "technical": "problem",
    }  # fmt: skip
    panic = by_topic[f"homeassistant/binary_sensor/{node}/zone_Z01/config"]
    template = panic["value_template"]
    assert _render(template, {"state": "alarm", "latched": True}) == panic["payload_on"]
    for other in ("normal", "open", "bypassed", "walk_test", "offline"):
        assert _render(template, {"state": other, "latched": False}) == panic["payload_off"]
    area = by_topic[f"homeassistant/sensor/{node}/area_TEACH/config"]
    assert _render(area["value_template"], {"state": "disarmed"}) == "disarmed"
    assert area["name"] == "教学行政区 布防状态"


def test_a_discovery_prefix_with_wildcards_is_a_config_error(tmp_path: Path) -> None:
    path = broken_copy(DEMO_CONFIG, tmp_path, "ha_discovery = false", 'discovery_prefix = "home/#"')
    with pytest.raises(ConfigError, match=r"dashboard\.discovery_prefix.*'home/#'") as error:
        load_config(path)
    assert error.value.line == line_of(path, "discovery_prefix")


async def test_home_assistant_reads_retained_configs_and_states_from_the_broker(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    host, port = mosquitto.host, mosquitto.port
    async with simulated_campus() as modules:
        cfg = demo_config_on(port, modules)
        on = cfg.model_copy(update={"dashboard": DashboardConfig(ha_discovery=True)})
        async with running(on, outbox_path=tmp_path / "o.sqlite"):
            found = await retained_until(
                host, port, "homeassistant/#", lambda f: len(f) == 16, 10, "16 discovery configs"
            )
            for topic, payload in found.items():
                assert documented_problems(topic, payload) == [], topic
            modules["gate-io"].press(0)
            panic = found["homeassistant/binary_sensor/campus_demo-school_gw1/zone_Z01/config"]
            state_topic = panic["state_topic"]
            states = await retained_until(
                host, port, state_topic,
                lambda f: _render(panic["value_template"], f.get(state_topic, {})) == "ON",
                5, "Z01 ON for Home Assistant",
            )  # fmt: skip
            assert states[state_topic]["latched"] is True
            status = await read_retained(host, port, panic["availability_topic"])
            assert status[panic["availability_topic"]] == b"online"


async def test_discovery_is_off_by_default(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    host, port = mosquitto.host, mosquitto.port
    assert load_config(DEMO_CONFIG).dashboard.ha_discovery is False
    async with (
        simulated_campus() as modules,
        running(demo_config_on(port, modules), outbox_path=tmp_path / "o.sqlite") as gateway,
    ):
        z14 = f"{PREFIX}/zone/Z14/state"
        await retained_until(host, port, z14, lambda f: z14 in f, 10, "zone states published")
        assert gateway.uplink is not None
        topics = gateway.uplink.retained_topics  # discovery would be put before any state
        assert z14 in topics and not any(t.startswith("homeassistant/") for t in topics)
        assert await read_retained(host, port, "homeassistant/#") == {}
