"""The bench page's password (gateway/bench/auth.py) with a clock the test moves."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from gateway.bench.auth import LOCKOUT_S, MAX_FAILURES, SESSION_S, BenchAuth, LockedOut
from tests.helpers import ManualClock


def test_a_session_for_the_right_password_until_it_expires_or_logs_out() -> None:
    clock = ManualClock()
    auth = BenchAuth(b"pw", clock=clock)
    assert auth.login("nope", "10.0.0.1") is None
    token = auth.login("pw", "10.0.0.1")
    assert token is not None and auth.valid(token) and auth.may_view(token)
    assert not auth.valid("forged") and not auth.may_view(None)
    clock.now += SESSION_S
    assert not auth.valid(token)
    again = auth.login("pw", "10.0.0.1")
    auth.logout(again)
    assert not auth.valid(again)


def test_guessing_locks_one_address_out_for_a_while() -> None:
    clock = ManualClock()
    auth = BenchAuth(b"pw", clock=clock)
    for _ in range(MAX_FAILURES):
        assert auth.login("guess", "10.0.0.9") is None
    with pytest.raises(LockedOut) as locked:
        auth.login("pw", "10.0.0.9")  # even the right one, while locked
    assert locked.value.retry_after == pytest.approx(LOCKOUT_S)
    assert auth.login("pw", "10.0.0.2") is not None  # another address
    clock.now += LOCKOUT_S
    assert auth.login("pw", "10.0.0.9") is not None


def test_without_a_password_anyone_views_and_nobody_logs_in() -> None:
    auth = BenchAuth(None)
    assert not auth.enabled and auth.may_view(None)
    assert auth.login("", "127.0.0.1") is None and not auth.valid("x")


def test_wrong_passwords_and_lockouts_are_logged_with_the_address_and_counted() -> None:
    """Review of 2026-12-05: guessing left no trace."""
    auth = BenchAuth(b"pw", clock=ManualClock())
    with capture_logs() as logs:
        for _ in range(MAX_FAILURES):
            assert auth.login("guess", "10.0.0.9") is None
    failed = [e for e in logs if e["event"] == "bench.login_failed"]
    locked = [e for e in logs if e["event"] == "bench.locked_out"]
    assert len(failed) == MAX_FAILURES and {e["peer"] for e in failed} == {"10.0.0.9"}
    assert len(locked) == 1 and locked[0]["peer"] == "10.0.0.9"
    assert (auth.failed_logins, auth.lockouts) == (MAX_FAILURES, 1)
