"""Home Assistant MQTT discovery: the gateway as one HA device, a sensor per zone and area.

Optional (``[dashboard] ha_discovery``, off by default). Sources: Home
Assistant's documentation of MQTT discovery (topic
``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``, a retained JSON
config; node and object ids of ``[a-zA-Z0-9_-]``), of the MQTT binary sensor and
MQTT sensor configuration variables, and of the binary sensor device classes
(``home-assistant.io`` ``source/_integrations/binary_sensor.mqtt.markdown``,
``sensor.mqtt.markdown``, ``binary_sensor.markdown``). Only documented variables
are used; ``tests/dashboard/test_ha_discovery.py`` holds that list.

* one ``binary_sensor`` per zone on its retained ``…/zone/<id>/state``: ``ON``
  while the zone's alarm is active; the whole state (latched, bypassed, area
  armed, since …) as attributes; ``device_class`` by zone type (below);
* one ``sensor`` per area on ``…/area/<id>/state``: ``armed`` / ``disarmed``;
* availability from the gateway's ``…/status`` (``online`` birth, ``offline``
  Last Will), so HA shows every entity unavailable when the gateway is gone;
* one HA device per gateway; no ``command_topic`` anywhere: Home Assistant
  cannot arm, disarm or reset anything (commands stay signed).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from typing import Any

from gateway.config.root import GatewayConfig

DEVICE_CLASS = {
    "panic": "safety",  # on means unsafe
    "intrusion": "motion",  # on means motion detected
    "perimeter": "motion",  # a beam broken or a fence touched: something moved
    "tamper": "tamper",  # on means tampering detected
    "technical": "problem",  # water, temperature, equipment: on means problem detected
}
"""Zone type → Home Assistant binary sensor device class (``binary_sensor.markdown``)."""

ALARM_ON_TEMPLATE = "{{ 'ON' if value_json.state == 'alarm' else 'OFF' }}"
AREA_TEMPLATE = "{{ value_json.state }}"

_HA_ID = re.compile(r"[^a-zA-Z0-9_-]")


def discovery_messages(cfg: GatewayConfig) -> list[tuple[str, dict[str, Any]]]:
    """Every discovery config of this gateway: ``(topic, payload)``, to be retained."""
    prefix, dp = cfg.topic_prefix, cfg.dashboard.discovery_prefix
    node = ha_id(f"campus_{cfg.site.id}_{cfg.site.gateway}")
    device = {
        "identifiers": [f"campus-gateway_{cfg.site.id}_{cfg.site.gateway}"],
        "name": f"{cfg.site.name or cfg.site.id} {cfg.site.gateway}",
        "manufacturer": "campus-gateway",
        "model": "campus-gateway alarm transmission gateway",
        "sw_version": _version(),
    }
    common = {
        "availability_topic": f"{prefix}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": device,
    }
    messages: list[tuple[str, dict[str, Any]]] = []
    for zone_id, object_id in _object_ids([z.id for z in cfg.zones]).items():
        zone = next(z for z in cfg.zones if z.id == zone_id)
        state_topic = f"{prefix}/zone/{zone_id}/state"
        payload = {
            "name": zone.name or zone_id,
            "unique_id": f"{node}_zone_{object_id}",
            "state_topic": state_topic,
            "value_template": ALARM_ON_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": state_topic,
            "device_class": DEVICE_CLASS[zone.type],
            **common,
        }
        messages.append((f"{dp}/binary_sensor/{node}/zone_{object_id}/config", payload))
    for area_id, object_id in _object_ids([a.id for a in cfg.areas]).items():
        area = next(a for a in cfg.areas if a.id == area_id)
        state_topic = f"{prefix}/area/{area_id}/state"
        payload = {
            "name": f"{area.name or area_id} 布防状态",
            "unique_id": f"{node}_area_{object_id}",
            "state_topic": state_topic,
            "value_template": AREA_TEMPLATE,
            "json_attributes_topic": state_topic,
            "icon": "mdi:shield-home",
            **common,
        }
        messages.append((f"{dp}/sensor/{node}/area_{object_id}/config", payload))
    return messages


def ha_id(text: str) -> str:
    """``text`` with every character HA does not allow in a node or object id made ``_``."""
    return _HA_ID.sub("_", text)


def _object_ids(ids: list[str]) -> dict[str, str]:
    """Our id → an HA object id; ids that would collide once cleaned get a hash suffix."""
    cleaned = [ha_id(i) for i in ids]
    out = {}
    for ident, clean in zip(ids, cleaned, strict=True):
        if cleaned.count(clean) > 1:
            clean += "_" + hashlib.sha256(ident.encode()).hexdigest()[:8]
        out[ident] = clean
    return out


def _version() -> str:
    try:
        return importlib.metadata.version("campus-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
