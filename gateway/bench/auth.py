"""The bench page's optional password: sessions, and a lock against guessing.

Without ``[bench] password_file`` the page is read-only for whoever can reach it
(it is bound to localhost by default) and its one action, the walk test, is
refused. With one, everything asks for the password first; a correct one gives
an HttpOnly, SameSite=Strict session cookie valid for :data:`SESSION_S`. The
password is compared in constant time; after :data:`MAX_FAILURES` wrong ones in a
row a client address is refused for :data:`LOCKOUT_S` seconds. Every wrong
password and every lockout is logged (``bench.login_failed``, ``bench.locked_out``,
with the client's address) and counted. Sessions live in memory only: a restart
asks again.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

SESSION_S = 8 * 3600.0
MAX_FAILURES = 5
LOCKOUT_S = 30.0
COOKIE = "bench_session"


class LockedOut(Exception):
    """Too many wrong passwords from this address; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many wrong passwords; try again in {retry_after:.0f} s")


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class BenchAuth:
    """Checks the password and keeps the sessions.

    Args:
        password: the page password, or None (read-only page, no walk tests).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self, password: bytes | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._password = password
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._failures: dict[str, _Failures] = {}
        self.failed_logins = 0  # wrong passwords since start
        self.lockouts = 0  # peers locked out since start

    @property
    def enabled(self) -> bool:
        """A password is set: viewing needs a session, and walk tests are allowed."""
        return self._password is not None

    def login(self, attempt: str, peer: str) -> str | None:
        """A new session token for the right password, None for a wrong one.

        Raises:
            LockedOut: ``peer`` gave too many wrong passwords lately.
        """
        if self._password is None:
            return None
        now = self._clock()
        failures = self._failures.setdefault(peer, _Failures())
        if failures.locked_until > now:
            raise LockedOut(failures.locked_until - now)
        if not hmac.compare_digest(attempt.encode(), self._password):
            failures.count += 1
            self.failed_logins += 1
            log.warning("bench.login_failed", peer=peer, failures=failures.count)
            if failures.count >= MAX_FAILURES:
                failures.count, failures.locked_until = 0, now + LOCKOUT_S
                self.lockouts += 1
                log.warning("bench.locked_out", peer=peer, for_s=LOCKOUT_S)
            return None
        self._failures.pop(peer, None)
        token = secrets.token_urlsafe(32)
        self._sessions = {t: exp for t, exp in self._sessions.items() if exp > now}
        self._sessions[token] = now + SESSION_S
        return token

    def valid(self, token: str | None) -> bool:
        """The session ``token`` is current (always False without a password)."""
        if token is None or self._password is None:
            return False
        expires = self._sessions.get(token)
        return expires is not None and expires > self._clock()

    def may_view(self, token: str | None) -> bool:
        """Without a password anyone may look; with one, a session is needed."""
        return not self.enabled or self.valid(token)

    def logout(self, token: str | None) -> None:
        """Forget the session ``token``."""
        if token is not None:
            self._sessions.pop(token, None)
