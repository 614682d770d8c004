"""The center's acks on ``<prefix>/ack``, read defensively.

An ack payload is a JSON object with either or both of:

* ``"ids": [event id, ...]`` — these events are acked (:func:`parse_ack`);
* ``"stream": "<stream>", "up_to_seq": N`` — every event of that outbox stream
  with ``seq`` <= N that the broker has confirmed is acked (:func:`parse_stream_ack`;
  N is an integer >= 1, written ``5`` or ``5.0``: one JSON number).

Whatever arrives there (the topic is the broker's, not ours), the answer is the
ids, a stream range, or nothing with one warning: never an exception that could
end the uplink's session (a payload nested thousands deep overflows Python's JSON
decoder with RecursionError, which is not a ValueError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.commands.signing import as_integer

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamAck:
    """``{"stream": …, "up_to_seq": …}``: the center has every event of ``stream`` up to
    ``up_to_seq`` (inclusive)."""

    stream: str
    up_to_seq: int


def _body(payload: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(payload)
    except (ValueError, TypeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def parse_ack(payload: bytes) -> list[str]:
    """The event ids an ack payload names; ``[]`` for anything else (a warning unless the
    payload is a valid stream ack without ids)."""
    body = _body(payload)
    ids = body.get("ids") if body is not None else None
    if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
        return ids
    if ids is not None or parse_stream_ack(payload) is None:
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
    return []


def parse_stream_ack(payload: bytes) -> StreamAck | None:
    """The stream range an ack payload names, or None when it names none (or a bad one)."""
    body = _body(payload)
    if body is None or ("stream" not in body and "up_to_seq" not in body):
        return None
    stream, up_to = body.get("stream"), body.get("up_to_seq")
    if not isinstance(stream, str) or not stream:
        return None
    seq = as_integer(up_to)
    if seq is None or seq < 1:
        return None
    return StreamAck(stream, seq)
