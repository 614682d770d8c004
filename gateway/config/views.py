"""Configuration of the local views: dashboard topics and the technician's bench page.

``[dashboard]`` (retained zone and area states are always published; Home
Assistant MQTT discovery only when asked) and ``[bench]`` (the web page the
daemon serves). Neither can control anything: commands stay signed (``[commands]``);
the bench page's only action, a walk test, needs its password.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from gateway.config.base import FilePath, Strict, read_secret

_TOPIC_LEVELS = re.compile(r"^[^#+/\s]+(/[^#+/\s]+)*$")


class DashboardConfig(Strict):
    """``[dashboard]``: what dashboards (Node-RED, Home Assistant) get over MQTT.

    The retained ``<prefix>/zone/<id>/state`` and ``<prefix>/area/<id>/state`` are
    always published. ``ha_discovery`` (off by default) also publishes Home
    Assistant MQTT discovery configs under ``discovery_prefix``
    (``homeassistant/binary_sensor/…/config``); the broker's ACL must then let the
    gateway write there.
    """

    ha_discovery: bool = False
    discovery_prefix: str = "homeassistant"

    @field_validator("discovery_prefix")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if not _TOPIC_LEVELS.match(value):
            raise ValueError(
                f"{value!r} is not a topic prefix: levels of text without '+', '#', spaces, "
                "or a leading, trailing or doubled '/'"
            )
        return value


class BenchConfig(Strict):
    """``[bench]``: the technician's bench page, served by the daemon over HTTP.

    Bound to ``host`` (localhost by default: reach it on the box, or through an
    SSH tunnel) and ``port`` (0 takes any free port, for tests). Without
    ``password_file`` the page is read-only for anyone who can reach it; with one,
    it asks for the password and then also starts and stops walk tests. ``events``
    is how many recent events the page keeps (newest first).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    password_file: FilePath | None = None
    events: int = Field(default=200, ge=10, le=10_000)

    def password(self) -> bytes | None:
        """The page password (file content, surrounding whitespace stripped), or None.

        Raises:
            ConfigError: the file cannot be read or is empty (the password is never shown).
        """
        if self.password_file is None:
            return None
        return read_secret(self.password_file, "bench.password_file", "the bench password")
