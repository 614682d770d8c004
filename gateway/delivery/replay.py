"""The center's ``replay`` command: send again what the outbox still holds of a stream.

=========  ==============================================  ======================================
command    params                                          data of an ``ok`` result
=========  ==============================================  ======================================
replay     ``stream`` (this gateway's outbox stream, from  ``stream``, ``from_seq``, ``to_seq``,
           its heartbeat), ``from_seq`` (int >= 1),        ``resent`` (events due again),
           ``to_seq`` (int, default: the last seq)         ``not_held`` (``[[first, last]]``
                                                           seq ranges purged or shed)
=========  ==============================================  ======================================

A center that was away (or lost what it had) catches up without waiting for the
re-sends of unacked events: every event of the range that was sent before is due
again, with its own id (the center dedupes), in priority order after the first
sends of its priority; events never sent yet are on their way anyway. It is a
signed command like every other (:mod:`gateway.commands.processor`). A stream this
gateway does not have (an outbox quarantined since), a range beyond the last seq
or wider than ``MAX_RANGE`` is refused (``invalid``).
"""

from __future__ import annotations

from typing import Any

from gateway.commands.processor import Command, Handler
from gateway.commands.signing import as_integer
from gateway.delivery.outbox import Outbox
from gateway.errors import CommandRefused

MAX_RANGE = 100_000
"""Most seqs one replay may name (a center asks again for the next range)."""


def replay_handlers(outbox: Outbox) -> dict[str, Handler]:
    """The ``replay`` handler, bound to ``outbox``."""

    async def replay(command: Command) -> dict[str, Any]:
        stream = command.params.get("stream")
        if stream != outbox.stream:
            raise CommandRefused(
                f"params.stream {stream!r} is not this gateway's stream {outbox.stream!r}",
                command="replay",
                reason="invalid",
            )
        last = outbox.last_seq
        first = _seq(command, "from_seq", 1)
        end = _seq(command, "to_seq", last)
        if first > end or end > last or end - first >= MAX_RANGE:
            raise CommandRefused(
                f"seq range {first}..{end} is not within 1..{last} and {MAX_RANGE} wide",
                command="replay",
                reason="invalid",
            )
        resent, gone = await outbox.replay(first, end)
        return {
            "stream": stream,
            "from_seq": first,
            "to_seq": end,
            "resent": resent,
            "not_held": _ranges(gone),
        }

    return {"replay": replay}


def _seq(command: Command, name: str, default: int) -> int:
    value = as_integer(command.params.get(name, default))  # 5 or 5.0: one JSON number
    if value is None or value < 1:
        raise CommandRefused(f"params.{name} must be an integer >= 1", reason="invalid")
    return value


def _ranges(seqs: list[int]) -> list[list[int]]:
    """``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]`` (``seqs`` ascending)."""
    out: list[list[int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out
