"""When an open event is due again, on a clock the test turns (the monotonic clock in use)."""

from __future__ import annotations

from gateway.delivery.outbox.due import COMPACT_AFTER, ResendSchedule
from gateway.delivery.outbox.resend_rows import ResendRows
from gateway.delivery.outbox.rows import PendingRow
from tests.helpers import ManualClock


def test_due_after_the_ack_timeout_in_send_order_and_never_after_an_ack() -> None:
    clock = ManualClock()
    schedule = ResendSchedule(30.0, clock)
    schedule.sent(7, 3)
    clock.now += 1
    schedule.sent(5, 1)
    schedule.sent(9, 1)
    assert schedule.overdue() == [] and schedule.next_due_in() == 29.0
    clock.now += 30
    assert schedule.overdue() == [5, 9, 7]  # priority, then creation
    assert schedule.overdue(exclude=[5]) == [9, 7]
    schedule.forget([9])  # acked
    schedule.sent(5, 1)  # re-sent: due again a timeout later
    assert schedule.overdue() == [7] and schedule.overdue_count() == 1
    schedule.forget([7])
    assert schedule.next_due_in() == 30.0 and len(schedule) == 1


def test_rows_from_an_earlier_process_wait_at_most_one_timeout_whatever_the_wall_clock() -> None:
    clock = ManualClock()
    schedule = ResendSchedule(30.0, clock)
    schedule.restore(1, 1, sent_at=5000.0, wall_now=5010.0)  # 20 s left
    schedule.restore(2, 1, sent_at=9000.0, wall_now=5010.0)  # sent "in the future": 30 s
    schedule.restore(3, 2, sent_at=10.0, wall_now=5010.0)  # long overdue: now
    assert schedule.overdue() == [3]
    clock.now += 20
    assert schedule.overdue() == [1, 3]
    clock.now += 10
    assert schedule.overdue() == [1, 2, 3]


def test_acked_rows_leave_no_backlog_of_stale_entries_behind() -> None:
    """A drain PUBACKs and acks a million alarms: the rows acked must not stay in the
    schedule's heap, or it grows by one entry per event (about 100 MB at a million) and
    the first look with nothing waiting pops them all in one turn of the loop (480 ms,
    issue 14). The live ones keep their order and due times through a rebuild."""
    clock = ManualClock()
    schedule = ResendSchedule(30.0, clock)
    schedule.sent(1, 2)  # stays open throughout
    for n in range(2, 100_002):
        schedule.sent(n, 2)
        clock.now += 0.0001
        schedule.forget([n])  # acked
        assert len(schedule._heap) <= 2 * len(schedule) + COMPACT_AFTER + 1
    assert len(schedule) == 1 and 1 in schedule
    assert abs(schedule.next_due_in() - (30.0 - 100_000 * 0.0001)) < 1e-6  # type: ignore[operator]
    clock.now += 30
    assert schedule.overdue() == [1]


def test_kept_alarm_rows_are_bounded_and_the_newest_stay() -> None:
    """Full, the oldest kept alarm (lowest row key) gives way to a newer one, never the
    reverse, and a priority 3 row is never kept (a review of 2026-12-05: with 1,100
    alarms open at start, a new panic went unkept and was not re-sent while the file
    could not be read)."""
    rows = ResendRows(max_rows=2, max_bytes=1 << 20)
    for n in (1, 2, 3):
        rows.keep(_alarm(n))
    assert [rows.get(n) is not None for n in (1, 2, 3)] == [False, True, True]
    rows.keep(_alarm(0))  # older than every kept one
    assert rows.get(0) is None and len(rows) == 2
    rows.keep(_alarm(4, priority=3))
    assert rows.get(4) is None
    rows.keep(_alarm(3, attempts=2))  # the latest copy replaces the kept one
    copy = rows.get(3)
    assert copy is not None and copy.attempts == 2 and len(rows) == 2
    rows.drop(2)  # acked
    rows.keep(_alarm(5))
    rows.keep(_alarm(6))  # full again: 3 gives way, the oldest kept
    assert [rows.get(n) is not None for n in (3, 5, 6)] == [False, True, True]
    by_size = ResendRows(max_rows=10, max_bytes=250)
    for n in (1, 2, 3):
        by_size.keep(_alarm(n))  # 100 bytes each
    assert [by_size.get(n) is not None for n in (1, 2, 3)] == [False, True, True]


def _alarm(n: int, *, priority: int = 1, attempts: int = 0, size: int = 100) -> PendingRow:
    return PendingRow(n, n, f"id{n}", priority, "events/alarm/panic", b"x" * size, attempts, True)


def test_a_kept_alarm_row_that_cannot_fit_evicts_nothing() -> None:
    """Full by bytes, a row that would need newer rows to give way is not kept, and the
    older ones evicted while trying are kept again (a review of 2026-12-05: two rows
    went for nothing)."""
    rows = ResendRows(max_rows=10, max_bytes=1000)
    for n, size in ((1, 100), (2, 100), (10, 700)):
        rows.keep(_alarm(n, size=size))
    rows.keep(_alarm(5, size=400))
    assert [rows.get(n) is not None for n in (1, 2, 5, 10)] == [True, True, False, True]
    rows.keep(_alarm(11, size=300))  # newer: 1 and 2 give way, and it fits
    assert [rows.get(n) is not None for n in (1, 2, 10, 11)] == [False, False, True, True]
