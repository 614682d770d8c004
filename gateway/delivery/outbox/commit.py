"""One commit of the outbox writer as one call on the connection's thread.

The writer (:class:`~gateway.delivery.outbox.Outbox`) gathers what waits in its
queue (events, pictures, kept state, PUBACK and ack marks, purges, replays) into
a :class:`Transaction` on the event loop, :func:`apply` runs every statement of
it between ``BEGIN IMMEDIATE`` and ``COMMIT`` on the connection's own thread
(:mod:`gateway.runtime.onthread`: one hop, not one per statement), and
the writer reads the :class:`Outcome` back on the loop to settle futures,
counters and the resend schedule. Nothing here touches the writer's state: the
transaction carries copies of what it needs.

On any error the transaction is rolled back before the error is raised, so the
file holds all of a commit or none of it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.delivery.outbox import backlog, kept, resend_rows, sql
from gateway.delivery.outbox.capacity import Counts, shed_rows
from gateway.runtime.durable import write_transaction
from gateway.runtime.onthread import select_chunks


@dataclass(slots=True)
class Transaction:
    """What one commit writes. Op-indexed maps key results back to the writer's ops.

    Attributes:
        now: the wall-clock time written as ``sent_at``/``acked_at`` (seconds).
        prepare_stream: create (or migrate) the schema first, the first commit on a
            new connection; the stream a pre-stream file's rows join. None: ready.
        inserts: ``sql.INSERT`` rows (events and pictures).
        sent: ``(now, n)`` PUBACK marks.
        marks_before: op index of each stream ack → how many of ``sent`` were queued
            before it: a stream ack covers only rows marked sent, so marks and stream
            acks are applied in the order they came.
        acked: op index → event ids the center acked.
        acked_through: op index → ``(stream, seq)`` of a stream ack.
        purges: op index → ``created_at`` bound of delivered rows to delete.
        replays: op index → ``(stream, from_seq, to_seq)`` to send again.
        kept_deletes, kept_puts: the kept state (``kept.statements``).
        meta: ``(key, value)`` rows of the meta table.
        last_seq: the writer's stream's last ``seq`` once this commit is in.
        counts: the capacity counters with this commit's inserts, when shedding may
            be needed (:func:`~gateway.delivery.outbox.capacity.shed_rows`).
        recount: count pending rows and unacked alarms afresh at the end (the
            backlog in memory is not exact: ``backlog.py``).
        alarm_rows: read the rows of up to this many open alarms at the end
            (``sql.OPEN_ALARM_ROWS``: a start that could not read the file, or a
            file migrated now, has none in memory yet).
    """

    now: float
    prepare_stream: str | None = None
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    sent: list[tuple[float, int]] = field(default_factory=list)
    marks_before: dict[int, int] = field(default_factory=dict)
    acked: dict[int, list[str]] = field(default_factory=dict)
    acked_through: dict[int, tuple[str, int]] = field(default_factory=dict)
    purges: dict[int, float] = field(default_factory=dict)
    replays: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    kept_deletes: list[tuple[str, str]] = field(default_factory=list)
    kept_puts: list[tuple[str, str, str]] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)
    last_seq: int = 0
    counts: Counts | None = None
    recount: bool = False
    alarm_rows: int = 0


@dataclass(slots=True)
class Outcome:
    """What a committed :class:`Transaction` found.

    Attributes:
        migrated_from: the stream a pre-stream file's rows joined, when migrated.
        opened: ``(n, priority)`` of rows just marked sent that wait for an ack.
        acked: op index → ``(id, created_at, n, track_ack)`` of each row acked.
        acked_through: op index → ``(id, created_at, n)`` of each event acked.
        purged: op index → ``(size, priority)`` of each row deleted.
        replays: op index → (row keys sent again, seqs still in the file).
        shed: ``(priority, [(seq, size, undelivered), …])`` per shedding step.
        pending: rows this transaction made pending (inserts, replays) less those it
            took out (first PUBACK marks, undelivered rows shed), for
            :class:`~gateway.delivery.outbox.backlog.Backlog`.
        unacked: alarms it made sent-and-unacked (first PUBACK marks of open events)
            less those it closed (center acks, replays). Each statement's share is
            taken from what that statement changed, in the transaction; purges delete
            only delivered, closed rows and shedding only priority 4-5 rows, which
            never wait for an ack (``track_ack`` is set for priority 1-3), so neither
            moves an unacked alarm.
        counted: ``(pending, unacked)`` counted at the end of the transaction, when
            asked (``Transaction.recount``).
        open_sent: with ``counted``, the open events sent (``sql.OPEN_SENT`` rows),
            for the resend schedule of a start that could not read the file.
        alarm_rows: ``sql.OPEN_ALARM_ROWS`` rows, when asked (``Transaction.alarm_rows``).
    """

    migrated_from: str | None = None
    opened: list[tuple[int, int]] = field(default_factory=list)
    acked: dict[int, list[tuple[str, float, int, bool]]] = field(default_factory=dict)
    acked_through: dict[int, list[tuple[str, float, int]]] = field(default_factory=dict)
    purged: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    replays: dict[int, tuple[list[int], set[int]]] = field(default_factory=dict)
    shed: list[tuple[int, list[Any]]] = field(default_factory=list)
    pending: int = 0
    unacked: int = 0
    counted: tuple[int, int] | None = None
    open_sent: list[tuple[Any, ...]] = field(default_factory=list)
    alarm_rows: list[tuple[Any, ...]] = field(default_factory=list)


def apply(conn: sqlite3.Connection, tx: Transaction) -> Outcome:
    """Run ``tx`` in one transaction on ``conn`` (its own thread).

    Raises:
        sqlite3.Error, OSError: the commit failed; nothing of it is in the file.
    """
    with write_transaction(conn):
        return _statements(conn, tx)


def _statements(conn: sqlite3.Connection, tx: Transaction) -> Outcome:
    out = Outcome()
    if tx.prepare_stream is not None:
        out.migrated_from = prepare(conn, tx.prepare_stream)
    if tx.inserts:
        out.pending += conn.executemany(sql.INSERT, tx.inserts).rowcount
    # PUBACK marks and stream acks in the order they came (a stream ack covers the rows
    # marked sent before it, and only those: reviews of 2026-12-05), then acks by id,
    # which close a row whatever its mark says.
    marked = 0
    for i, (stream, seq) in tx.acked_through.items():
        upto = max(marked, tx.marks_before.get(i, len(tx.sent)))
        _mark_sent(conn, out, tx.sent[marked:upto])
        marked = upto
        rows = conn.execute(sql.MARK_ACKED_THROUGH, (tx.now, stream, seq)).fetchall()
        out.acked_through[i] = [(str(r[0]), float(r[1]), int(r[2])) for r in rows]
        out.unacked -= len(rows)  # each one sent and open (the statement's WHERE)
    _mark_sent(conn, out, tx.sent[marked:])
    for i, ids in tx.acked.items():
        rows = select_chunks(conn, sql.MARK_ACKED, ids, tx.now)
        out.acked[i] = [(str(r[0]), float(r[1]), int(r[2]), bool(r[3])) for r in rows]
        out.unacked -= sum(1 for r in rows if r[4])
    for i, before in tx.purges.items():
        purged = conn.execute(sql.PURGE, (before,)).fetchall()
        out.purged[i] = [(int(size), int(priority)) for size, priority in purged]
    for i, span in tx.replays.items():
        replayed = conn.execute(sql.REPLAY, span).fetchall()
        again = [int(r[0]) for r in replayed]
        seqs = {int(r[0]) for r in conn.execute(sql.HELD_SEQS, span).fetchall()}
        out.replays[i] = (again, seqs)
        out.pending += len(again)
        out.unacked -= sum(1 for r in replayed if r[1])
    kept.apply(conn, tx.kept_deletes, tx.kept_puts)
    if tx.meta:
        conn.executemany(sql.PUT_META, tx.meta)
    if tx.counts is not None:
        for rows in out.purged.values():
            for size, priority in rows:
                tx.counts.remove(priority, size)
        out.shed = shed_rows(conn, tx.counts)
        out.pending -= sum(1 for _, rows in out.shed for _, _, undelivered in rows if undelivered)
    if tx.recount:
        out.counted = backlog.count(conn)
        out.open_sent = conn.execute(sql.OPEN_SENT).fetchall()
    if tx.alarm_rows or out.migrated_from is not None:
        limit = tx.alarm_rows or resend_rows.MAX_ROWS
        out.alarm_rows = conn.execute(sql.OPEN_ALARM_ROWS, (limit,)).fetchall()
    return out


def _mark_sent(conn: sqlite3.Connection, out: Outcome, marks: list[tuple[float, int]]) -> None:
    """Apply PUBACK marks, noting the rows they open and what they move in the counts."""
    if not marks:
        return
    marking = select_chunks(conn, sql.MARKING, list(dict.fromkeys(n for _, n in marks)))
    conn.executemany(sql.MARK_SENT, marks)
    out.opened += [(int(n), int(p)) for n, p, waits, _ in marking if waits]
    out.pending -= sum(1 for *_, first in marking if first)
    out.unacked += sum(1 for _, _, waits, first in marking if waits and first)


def prepare(conn: sqlite3.Connection, stream: str) -> str | None:
    """Create the tables, or rebuild an older file's, inside the open transaction.

    Returns:
        The stream the rows of a file from before streams joined, when it was
        rebuilt (its ``meta`` stream, else ``stream``); None otherwise.
    """
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(messages)").fetchall()}
    migrated = None
    if columns and "stream" not in columns:
        row = conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
        migrated = str(row[0]) if row else stream
        for statement in sql.MIGRATE_STREAM:
            conn.execute(statement, (migrated,) if "?" in statement else ())
    for statement in [*sql.SCHEMA_STATEMENTS, kept.SCHEMA]:
        conn.execute(statement)
    return migrated
