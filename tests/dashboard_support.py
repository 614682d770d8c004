"""Reading retained MQTT state the way a dashboard does: a brand-new subscriber.

:func:`read_retained` connects a fresh client, subscribes to a filter and returns
every retained message the broker hands over for it. To know that all of them
have arrived it then subscribes to a private sentinel topic and publishes on it:
the broker sends the retained messages of the first subscription before it
forwards the later publish, so the sentinel ends the read (a condition, not a
sleep).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import aiomqtt

Retained = dict[str, Any]
"""Topic → the retained payload (JSON decoded when it is JSON, else the raw bytes)."""


async def read_retained(host: str, port: int, topic_filter: str) -> Retained:
    """Every retained message under ``topic_filter``, as a new subscriber sees them now."""
    sentinel = f"test/sentinel/{secrets.token_hex(6)}"
    found: Retained = {}
    async with aiomqtt.Client(
        host,
        port,
        identifier=f"dashboard-{secrets.token_hex(4)}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(topic_filter, qos=1)
        await client.subscribe(sentinel, qos=1)
        await client.publish(sentinel, b"end", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                topic = message.topic.value
                if topic == sentinel:
                    break
                if message.retain:
                    found[topic] = _decode(message.payload)
    return found


async def retained_until(
    host: str,
    port: int,
    topic_filter: str,
    predicate: Callable[[Retained], bool],
    within: float,
    what: str,
) -> Retained:
    """Read the retained messages again and again until ``predicate`` holds (a broker
    that is restarting meanwhile is tried again).

    Raises:
        AssertionError: not within ``within`` seconds (with the last read).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    found: Retained = {}
    while True:
        try:
            found = await read_retained(host, port, topic_filter)
        except aiomqtt.MqttError:
            found = {}
        else:
            if predicate(found):
                return found
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}; retained: {found}")
        await asyncio.sleep(0.1)


async def clear_retained(host: str, port: int, topic: str) -> None:
    """Delete the retained message of ``topic`` (an empty retained publish)."""
    async with aiomqtt.Client(
        host, port, identifier=f"clear-{secrets.token_hex(4)}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.publish(topic, b"", qos=1, retain=True)


def _decode(payload: Any) -> Any:
    raw = payload if isinstance(payload, bytes) else str(payload).encode()
    try:
        return json.loads(raw)
    except ValueError:
        return raw
