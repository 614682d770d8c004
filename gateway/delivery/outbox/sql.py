"""Schema and statements of the outbox database (SQLite >= 3.35 for ``RETURNING``).

Table ``messages``, one row per MQTT message to deliver:

* ``n`` INTEGER PRIMARY KEY — send order within a priority (creation order);
* ``seq`` — the event's gap-free sequence number within its ``stream``; NULL for
  non-event messages (snapshot bytes), which therefore never make a hole in ``seq``;
* ``stream`` — the stream the event's ``seq`` belongs to (a file holds rows of the
  streams before it until they are delivered); NULL for non-event messages;
* ``id`` — event id (ULID) or a ULID of its own for other messages;
* ``type``, ``priority`` (1..5), ``topic`` (suffix under the gateway prefix),
  ``payload`` (exact bytes to publish), ``size`` (bytes of payload);
* ``track_ack`` — 1 for priority 1-3 events, which stay open until the center acks;
* ``created_at``, ``sent_at`` (last PUBACK), ``acked_at`` — UNIX seconds;
* ``attempts`` — PUBACKs seen (a re-publish of an unacked alarm adds one).

Table ``meta``: ``stream`` (the stream new events join), ``last_seq`` (its last
committed seq), ``running`` (``1`` from a start until a clean stop: found at a start,
the last run stopped uncleanly and may have sent seqs it never stored, so a new
stream begins).

A file of an older version (``seq`` unique on its own, no ``stream`` column) is
rebuilt by :data:`MIGRATE_STREAM` in the first write transaction.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    n INTEGER PRIMARY KEY,
    seq INTEGER,
    stream TEXT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    track_ack INTEGER NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    acked_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (stream, seq)
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (priority, n) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_unacked ON messages (sent_at)
    WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL;
DROP INDEX IF EXISTS messages_unacked_order;
CREATE INDEX IF NOT EXISTS messages_by_priority ON messages (priority, n);
DROP INDEX IF EXISTS messages_open;
CREATE INDEX IF NOT EXISTS messages_open_by_stream ON messages (stream, seq)
    WHERE track_ack = 1 AND acked_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at);
"""

# The table of a file before streams were a column: rebuilt with its rows, each event
# row given the file's stream (``?``). Run statement by statement in one transaction.
MIGRATE_STREAM = [
    "ALTER TABLE messages RENAME TO messages_v1",
    *(s.strip() for s in SCHEMA.split(";") if "CREATE TABLE IF NOT EXISTS messages" in s),
    "INSERT INTO messages (n, seq, stream, id, type, priority, topic, payload, size, track_ack,"
    " created_at, sent_at, acked_at, attempts) SELECT n, seq, CASE WHEN seq IS NULL THEN NULL"
    " ELSE ? END, id, type, priority, topic, payload, size, track_ack, created_at, sent_at,"
    " acked_at, attempts FROM messages_v1",
    "DROP TABLE messages_v1",
]
SCHEMA_STATEMENTS = [s.strip() for s in SCHEMA.split(";") if s.strip()]

INSERT = (
    "INSERT INTO messages (n, seq, stream, id, type, priority, topic, payload, size, track_ack,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
MARK_SENT = "UPDATE messages SET sent_at = ?, attempts = attempts + 1 WHERE n = ?"
# The last column: the row was an unacked alarm (``sent_at`` is not changed here, so
# RETURNING gives the value it had), for the backlog's count (``backlog.py``).
MARK_ACKED = (
    "UPDATE messages SET acked_at = ? WHERE id IN ({marks}) AND acked_at IS NULL"
    " RETURNING id, created_at, n, track_ack, track_ack = 1 AND sent_at IS NOT NULL"
)
# A stream ack: every confirmed event up to a seq (an unpublished one cannot have arrived).
MARK_ACKED_THROUGH = (
    "UPDATE messages INDEXED BY messages_open_by_stream SET acked_at = ?"
    " WHERE track_ack = 1 AND acked_at IS NULL AND stream = ? AND seq <= ?"
    " AND sent_at IS NOT NULL"
    " RETURNING id, created_at, n"
)
# ``track_ack`` only while the center has not acked it: a replay sends acked events
# again, and their PUBACK must not put them on the resend schedule (a review of
# 2026-12-05: 200 acked panics replayed read as 200 unacked).
COLUMNS = (
    "n, seq, id, priority, topic, payload, attempts, track_ack = 1 AND acked_at IS NULL, stream"
)
# A page of first sends of one priority from a row key on (``due_queue.py``): one
# range of ``messages_pending``, read row by row until the page is full.
PAGE = (
    f"SELECT {COLUMNS} FROM messages INDEXED BY messages_pending"
    " WHERE sent_at IS NULL AND priority = ? AND n >= ? ORDER BY n"
)
# Open events (sent, not acked) by row key: those of them the resend schedule says are due.
OPEN_ROWS = f"SELECT {COLUMNS} FROM messages WHERE n IN ({{marks}}) AND acked_at IS NULL"
# The rows about to be marked sent, read before ``MARK_SENT`` in its transaction (the
# mark changes neither column read): ``n``, ``priority``, whether it waits for the
# center's ack (it goes on the resend schedule) and whether it was still pending (the
# mark takes it out of the pending count, and into the unacked one if it waits:
# ``backlog.py``).
MARKING = (
    "SELECT n, priority, track_ack = 1 AND acked_at IS NULL, sent_at IS NULL FROM messages"
    " WHERE n IN ({marks})"
)
# At open: every open event a previous process sent, with its wall-clock PUBACK time
# and what an ack names it by (the center's ack takes it off the resend schedule before
# the ack commits).
OPEN_SENT = (
    "SELECT n, priority, sent_at, id, stream, seq FROM messages INDEXED BY messages_unacked"
    " WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL"
)
# The same of a file from before streams (read at open, before its migration).
OPEN_SENT_V1 = OPEN_SENT.replace("stream, seq", "NULL, seq")
# At open (and at the first commit after a start that could not read the file): the
# rows of the open alarms a previous process sent, newest first, as many as
# ``resend_rows.py`` keeps (``?``), so their re-sends need no read of the file.
OPEN_ALARM_ROWS = (
    f"SELECT {COLUMNS} FROM messages INDEXED BY messages_unacked"
    " WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL AND +priority <= 2"
    " ORDER BY n DESC LIMIT ?"
)
# At start, for the escalation of alarms (priority 1-2) a previous process left unacked:
# a scan of the open events' index (``+priority`` keeps the planner off
# ``messages_by_priority``, which would visit every alarm ever retained). No INDEXED BY:
# a file of an older version gets the index in the first commit, and a start that
# cannot write must still read it.
OPEN_ALARMS = (
    "SELECT id, type, seq, created_at, payload FROM messages"
    " WHERE track_ack = 1 AND acked_at IS NULL AND +priority <= 2 ORDER BY seq"
)
SHED = (
    "DELETE FROM messages WHERE n IN"
    " (SELECT n FROM messages WHERE priority = ? ORDER BY n LIMIT ?)"
    " RETURNING seq, size, sent_at IS NULL"
)
PURGE = (
    "DELETE FROM messages WHERE created_at < ? AND sent_at IS NOT NULL"
    " AND (track_ack = 0 OR acked_at IS NOT NULL) RETURNING size, priority"
)
# A center's replay: the events of a seq range the outbox holds, sent before, due again
# (pending, so they go out in priority order after the first sends of their priority).
# The second column: the row was an unacked alarm (it is pending now instead).
REPLAY = (
    "UPDATE messages SET sent_at = NULL WHERE stream = ? AND seq BETWEEN ? AND ?"
    " AND sent_at IS NOT NULL"
    " RETURNING n, track_ack = 1 AND acked_at IS NULL"
)
HELD_SEQS = "SELECT seq FROM messages WHERE stream = ? AND seq BETWEEN ? AND ? ORDER BY seq"
TOTALS = "SELECT count(*), coalesce(sum(size), 0) FROM messages"
LOW_TOTALS = "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE priority >= 4"

# The backlog's two counts (``backlog.py``), read at open and after a failed commit
# only: each counts every entry of a partial index, about 45 ms at 1,000,000 rows,
# so the heartbeat takes them from memory instead.
PENDING_COUNT = "SELECT count(*) FROM messages INDEXED BY messages_pending WHERE sent_at IS NULL"
UNACKED_COUNT = (
    "SELECT count(*) FROM messages INDEXED BY messages_unacked"
    " WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL"
)
# Reads of the heartbeat and the status (``metrics.py``), each a seek on an index.
# The lowest seq still waiting for the center's ack (the heartbeat's ``acked_up_to``):
# one seek on ``messages_open_by_stream`` (open events only, by stream and seq). On an
# index of ``seq`` alone it was a scan whenever another stream held open events and
# this one none (after an unclean stop with a backlog): 295 ms at 1,000,000 rows.
# No INDEXED BY, as for OPEN_ALARMS (the planner's choice is checked by a test).
FIRST_OPEN_SEQ = (
    "SELECT min(seq) FROM messages WHERE track_ack = 1 AND acked_at IS NULL AND stream = ?"
)
# Rows are stored in ``n`` order, so the oldest pending row is the first by ``n`` of
# the five priorities: five seeks on ``messages_pending``, never a scan.
OLDEST_PENDING = (
    "SELECT created_at FROM ("
    + " UNION ALL ".join(
        "SELECT * FROM (SELECT n, created_at FROM messages INDEXED BY messages_pending"
        f" WHERE sent_at IS NULL AND priority = {p} ORDER BY n LIMIT 1)"
        for p in range(1, 6)
    )
    + ") ORDER BY n LIMIT 1"
)
# The local status (gateway/ops): the newest events by n.
RECENT = (
    "SELECT seq, payload, created_at, sent_at, acked_at, track_ack FROM messages"
    " WHERE seq IS NOT NULL ORDER BY n DESC LIMIT ?"
)
PUT_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
