"""Only signed acks count: the check every message on ``<prefix>/ack`` passes first.

An ack stops the re-sends of an alarm, so a forged one could silence a panic:
any broker client allowed to publish on ``…/ack`` could send one. Acks are
therefore signed like commands — same site key, same RFC 8785 canonical form,
the signature bound to the ack topic (:mod:`gateway.commands.signing`,
``docs/center-protocol.md`` "Acks"). An ack that is not JSON, unsigned or badly
signed is ignored (its events stay open and are re-sent), counted by reason
(``campus_gateway_acks_refused_total{reason}``), logged once per reason and
source, and reported to the center as ``fault.ack_refused``
(:mod:`gateway.delivery.ack_refusals`). MQTT 5 does not tell a subscriber who
published, so the source is what the ack claims in its optional ``center``
member (``-`` when none): a hint for the technician, never trusted. At most
:data:`MAX_SOURCES` sources are remembered, so a flood of made-up names cannot
grow memory; past that one more line says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from gateway.commands.signing import SIGNATURE_FIELD, loads, verify

log = structlog.get_logger(__name__)

RefusalReason = Literal["malformed", "unsigned", "bad_signature"]
REASONS: tuple[RefusalReason, ...] = ("malformed", "unsigned", "bad_signature")
MAX_SOURCES = 256
MAX_ACK_BYTES = 1024 * 1024
"""The largest ack read (about 30,000 ids): a bigger one is refused unread, so a
broker client cannot grow the gateway by hundreds of MB per message (review of
2026-12-05: ten acks of 100 MB took it to 530 MB and held a panic 2 s)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one ack was refused.

    Attributes:
        reason: ``malformed``, ``unsigned`` or ``bad_signature``.
        source: the ack's ``center`` member (at most 64 characters; ``-`` when it
            has none): what the sender claims, never trusted.
        size: the payload's length in bytes.
    """

    reason: RefusalReason
    source: str
    size: int


class AckGate:
    """Admits the center's acks that carry a valid signature.

    Args:
        key: the site key; None when the config says ``allow_unsigned = true``
            (a bench: every well-formed ack is admitted).
        topic: ``<prefix>/ack``, which every signature covers.
        on_refused: called with the reason of each refused ack (the metric).

    Attributes:
        refused: refusals so far, by reason.
    """

    def __init__(
        self,
        key: bytes | None,
        topic: str,
        on_refused: Callable[[RefusalReason], None] | None = None,
    ) -> None:
        self._key = key
        self._topic = topic
        self._on_refused = on_refused
        self._logged: set[tuple[str, str]] = set()
        self.refused: dict[RefusalReason, int] = dict.fromkeys(REASONS, 0)

    def admit(self, payload: bytes) -> bool:
        """True when the ack may act: signed under the site key (or signing is off)."""
        return self.check(payload) is None

    def check(self, payload: bytes) -> Refusal | None:
        """None when the ack may act, else why it is refused (counted and logged here).

        Never raises: whatever arrives on the topic, the answer is yes or no. An ack
        over :data:`MAX_ACK_BYTES` is refused as ``malformed`` before it is parsed.
        """
        if len(payload) > MAX_ACK_BYTES:
            return self._refuse("malformed", None, payload)
        if self._key is None:
            return None
        try:
            body = loads(payload)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            body = None
        if not isinstance(body, dict):
            return self._refuse("malformed", body, payload)
        if SIGNATURE_FIELD not in body:
            return self._refuse("unsigned", body, payload)
        if not verify(self._key, self._topic, body):
            return self._refuse("bad_signature", body, payload)
        return None

    def _refuse(self, reason: RefusalReason, body: Any, payload: bytes) -> Refusal:
        self.refused[reason] += 1
        if self._on_refused is not None:
            self._on_refused(reason)
        claimed = body.get("center") if isinstance(body, dict) else None
        source = claimed[:64] if isinstance(claimed, str) and claimed else "-"
        refusal = Refusal(reason, source, len(payload))
        if (reason, source) in self._logged:
            return refusal
        if len(self._logged) >= MAX_SOURCES:
            if ("", "") not in self._logged:
                self._logged.add(("", ""))
                log.warning("uplink.ack_refused_sources_full", remembered=MAX_SOURCES)
            return refusal
        self._logged.add((reason, source))
        log.warning(
            "uplink.ack_refused",
            reason=reason,
            source=source,
            topic=self._topic,
            payload=repr(payload)[:200],
        )
        return refusal
