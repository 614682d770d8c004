"""Batch uploads of offline handheld readers over TCP: CSV records, hours late.

One connection is one upload (our protocol; the records are RallyLog-shaped CSV,
:mod:`.records`)::

    reader → gateway:  7,2026-11-29 20:02:13,0400000001,3.9
                       … one line per record, oldest first (blank and # lines ignored)
                       END <number of record lines sent>
    gateway → reader:  ACK <taken> <bad>      every record handed to the engine and
                                              stored: the reader may clear its memory
                       NAK <received> <announced>   lines went missing: send it all again

Each record is handed to the engine as it arrives, judged by the reader's own
timestamps; a re-sent upload only adds duplicates, which the engine drops. An
upload cut off before ``END`` loses nothing that arrived (there is just nobody
left to answer). A record with another ``Station_Id`` than the configured
``device_number`` is a bad line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from drivers.patrol_reader.lines import LineReader
from drivers.patrol_reader.records import parse_csv_record
from gateway.config.patrol import HandheldReaderConfig
from gateway.errors import DeviceProtocolError
from gateway.events.patrol_observation import PatrolHit


class HandheldReader(LineReader[HandheldReaderConfig]):
    """Receives one handheld reader's uploads; ``await reader.run()``.

    Constructed as :class:`~drivers.patrol_reader.lines.LineReader`; ``taken``
    counts the records handed to the engine.
    """

    async def serve(
        self, lines: AsyncIterator[str | DeviceProtocolError], writer: asyncio.StreamWriter
    ) -> None:
        """Take one upload; answer ``ACK``/``NAK`` at its ``END``."""
        taken = bad = 0
        async for line in lines:
            text = line if isinstance(line, str) else ""
            if isinstance(line, str) and (not text.strip() or text.startswith("#")):
                continue
            if text.startswith("END"):
                writer.write(self._verdict(text, taken, bad).encode() + b"\n")
                await writer.drain()
                taken = bad = 0
                continue
            try:
                if isinstance(line, DeviceProtocolError):
                    raise line
                await self._record(line, taken + bad + 1)
                taken += 1
            except DeviceProtocolError as exc:
                self.bad_line(exc)
                bad += 1
        if taken or bad:
            self.log.warning("patrol.upload_cut_off", taken=taken, bad=bad)

    def _verdict(self, end: str, taken: int, bad: int) -> str:
        announced = end.removeprefix("END").strip()
        if announced.isdigit() and int(announced) == taken + bad:
            self.log.info("patrol.upload", taken=taken, bad=bad)
            return f"ACK {taken} {bad}"
        self.log.warning("patrol.upload_incomplete", received=taken + bad, announced=announced)
        return f"NAK {taken + bad} {announced or '?'}"

    async def _record(self, line: str, number: int) -> None:
        record = parse_csv_record(line, self.tz, device_id=self.device_id)
        expected = self.cfg.device_number
        if expected is not None and record.reader_number != expected:
            raise DeviceProtocolError(
                f"record of reader {record.reader_number}, configured {expected}",
                device_id=self.device_id,
                raw=record.raw,
            )
        await self.sink(
            PatrolHit(
                reader_id=self.device_id,
                kind="handheld",
                tag=record.tag,
                devicetime=record.devicetime,
                received_at=self.now(),
                battery_v=record.battery_v,
                record=number,
                raw=record.raw,
            )
        )
        self.taken += 1
