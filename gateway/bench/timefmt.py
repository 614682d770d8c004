"""Times as the technician reads them: the site's local time with its UTC offset.

Events carry UTC (``time``); a school on ``Asia/Shanghai`` reads
``2026-12-02 20:00:01 +08:00``. The offset is always shown, so a time is never
taken for another zone's.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


class SiteTime:
    """Formats times in one site's time zone.

    Args:
        timezone: IANA name (``[site] timezone``).
    """

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.name = timezone

    def local(self, t: datetime | None) -> str | None:
        """``YYYY-MM-DD HH:MM:SS +HH:MM`` in the site's zone; None stays None."""
        if t is None:
            return None
        here = t.astimezone(self.zone)
        return here.strftime("%Y-%m-%d %H:%M:%S ") + _offset(here)

    def local_text(self, rfc3339: str | None) -> str | None:
        """:meth:`local` of an RFC 3339 text (as events carry them)."""
        if not rfc3339:
            return None
        return self.local(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")))

    def utc_offset(self, t: datetime) -> str:
        """``UTC+08:00`` at ``t``."""
        return "UTC" + _offset(t.astimezone(self.zone))


def _offset(t: datetime) -> str:
    text = t.strftime("%z")  # +0800
    return f"{text[:3]}:{text[3:]}"
