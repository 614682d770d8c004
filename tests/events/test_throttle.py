"""``ReportThrottle``: the first refusal of a key at once, then one a period with the
count in between, and with a cap at most that many reports a period in all."""

from __future__ import annotations

from gateway.events.throttle import Admitted, ReportThrottle
from tests.helpers import ManualClock


def test_once_per_key_a_period_with_the_count_between() -> None:
    clock = ManualClock()
    throttle: ReportThrottle[str] = ReportThrottle(60.0, clock=clock)
    assert throttle.admit("a") == Admitted(0, 0)
    assert throttle.admit("b") == Admitted(0, 0)  # keys are apart
    clock.now += 59.9
    assert throttle.admit("a") is None
    assert throttle.admit("a") is None
    clock.now += 0.1
    assert throttle.admit("a") == Admitted(2, 0)
    assert throttle.admit("a") is None
    clock.now += 600
    assert throttle.admit("a") == Admitted(1, 0)


def test_a_cap_holds_back_reports_of_new_keys_and_says_how_many() -> None:
    clock = ManualClock()
    throttle: ReportThrottle[int] = ReportThrottle(60.0, cap=3, clock=clock)
    assert [throttle.admit(k) is not None for k in range(5)] == [True, True, True, False, False]
    assert throttle.capped
    clock.now += 60
    assert throttle.admit(99) == Admitted(0, 2)
    assert not throttle.capped
    assert throttle.admit(3) == Admitted(0, 0)  # held back before, never counted as seen
