"""Is the system clock NTP-synchronized? (the ``clocksynced`` event attribute)

Reads the kernel's time status with ``adjtimex(2)`` (read-only call, no root needed):
``TIME_ERROR`` (5) or ``STA_UNSYNC`` set means the clock is not synchronized. Off
Linux, or if the call fails, the answer is False: we never claim a sync we cannot see.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


class ClockSync:
    """Cached answer to "is the clock synchronized", refreshed every ``ttl`` seconds."""

    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._checked = -float("inf")
        self._synced = False
        name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(name, use_errno=True) if name else None

    def synced(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self._ttl:
            self._checked = now
            self._synced = self._read()
        return self._synced

    def _read(self) -> bool:
        if self._libc is None or not hasattr(self._libc, "adjtimex"):
            return False
        tx = _Timex()
        state = self._libc.adjtimex(ctypes.byref(tx))
        return state not in (-1, _TIME_ERROR) and not (tx.status & _STA_UNSYNC)
