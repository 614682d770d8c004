"""The center's acks on ``<prefix>/ack``: ``{"ids": [event id, ...]}``, read defensively.

Whatever arrives there (the topic is the broker's, not ours), the answer is a list
of event ids or an empty list with one warning: never an exception that could end
the uplink's session (a payload nested thousands deep overflows Python's JSON
decoder with RecursionError, which is not a ValueError).
"""

from __future__ import annotations

import json

import structlog

log = structlog.get_logger(__name__)


def parse_ack(payload: bytes) -> list[str]:
    """The event ids an ack payload names; ``[]`` (and a warning) for anything else."""
    try:
        body = json.loads(payload)
    except (ValueError, TypeError, RecursionError):
        body = None
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        log.warning("uplink.bad_ack", payload=repr(payload)[:200])
        return []
    return ids
