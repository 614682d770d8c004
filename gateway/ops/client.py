"""``campus-gateway status``: ask the running daemon's local endpoint, print it at a glance.

Talks to ``http://<[metrics] host>:<port>/status`` on this box only; the uplink
plays no part, so it works while the broker is down.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config.root import MetricsConfig
from gateway.errors import GatewayError
from gateway.events.model import parse_rfc3339

_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class StatusUnavailable(GatewayError):
    """The daemon's endpoint did not answer (not running, disabled, another port)."""


def status_url(cfg: MetricsConfig) -> str:
    """The ``/status`` URL of the endpoint ``cfg`` describes (a wildcard host → loopback)."""
    host = _ANY.get(cfg.host, cfg.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.port}/status"


def fetch_status(
    cfg: MetricsConfig, timeout: float = 5.0, *, expect: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The running daemon's status as JSON data.

    Args:
        expect: ``(site id, gateway)`` the answer must come from; another gateway on
            that port (a second config, a test, a demo) is refused rather than shown.

    Raises:
        StatusUnavailable: metrics disabled or on port 0, nothing listening, a bad
            answer, or an answer from a gateway other than ``expect``.
    """
    if not cfg.enabled:
        raise StatusUnavailable("[metrics] enabled = false: the daemon serves no status")
    if cfg.port == 0:
        raise StatusUnavailable("[metrics] port = 0: the daemon's port is not known in advance")
    url = status_url(cfg)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise StatusUnavailable(f"{url}: HTTP {exc.code}: {exc.read()[:200]!r}") from exc
    except (OSError, ValueError) as exc:
        raise StatusUnavailable(f"{url}: {exc} (is campus-gateway running?)") from exc
    if expect is not None:
        found = (str(body.get("site")), str(body.get("gateway")))
        if found != expect:
            raise StatusUnavailable(
                f"{url} is the status of {found[0]}/{found[1]}, not of {expect[0]}/{expect[1]}: "
                "another gateway holds that [metrics] port (is this config's daemon running?)"
            )
    return body


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _when(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _site_zone(name: str | None) -> tzinfo | None:
    """The site's time zone (``[site] timezone``), or None (the box's own) when unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def format_status(s: dict[str, Any], now: float | None = None) -> str:
    """The status as a technician reads it: a few lines per part, newest events first,
    then the running walk test and the last walk test's report (zones tripped with their
    first and last trip, zones never tripped). Times in the site's time zone (``timezone``
    of the answer; the box's own when absent), named with its UTC offset on the first line."""
    now = time.time() if now is None else now
    up, ob = s["uplink"], s["outbox"]
    tz = _site_zone(s.get("timezone"))
    offset = datetime.fromtimestamp(now, UTC).astimezone(tz).strftime("%z")
    lines = [
        f"campus-gateway {s['version']}  site {s['site']}/{s['gateway']}  up {_age(s['uptime_s'])}"
        f"  (times in {s.get('timezone') if tz is not None else 'local time'}, "
        f"UTC{offset[:3]}:{offset[3:]})",
        f"uplink   {up['state']} to {up['broker']}  reconnects {up['reconnects']}  "
        f"in flight {up['inflight']}/{up['window']}  publish failures {up['publish_failures']}",
        f"outbox   {_known(ob['depth'])} pending (oldest {_age(ob['oldest_pending_s'])})  "
        f"{_known(ob['unacked_alarms'])} alarms unacked ({_known(ob['overdue_alarms'])} "
        f"overdue)  {ob['waiting_to_commit']} waiting to commit  shed {ob['shed_total']}",
    ]
    if ob.get("storage_error"):
        lines.append(f"         OUTBOX NOT READABLE: {ob['storage_error']}")
    faults = []
    if ob["disk_pressure"]:
        faults.append("DISK FULL")
    if ob["commit_failures"]:
        faults.append(f"{ob['commit_failures']} failed commits")
    if ob.get("spill_failures"):
        faults.append(f"{ob['spill_failures']} failed spills of held alarms")
    if ob["quarantined"]:
        faults.append(f"corrupt file quarantined to {ob['quarantined']}")
    if ob.get("state_quarantined"):
        faults.append(f"corrupt state file quarantined to {ob['state_quarantined']}")
    if ob.get("state_unread"):
        faults.append(
            f"STATE NOT READ, {ob.get('state_unsaved', 0)} changes in memory only: "
            f"{ob['state_unread']}"
        )
    if ob.get("not_durable"):
        faults.append(f"NOT DURABLE: {ob['not_durable']}")
    if ob.get("state_commit_failures"):
        faults.append(f"{ob['state_commit_failures']} failed state commits")
    if faults:
        lines.append("storage  " + "; ".join(faults))
    if s["stalled"]:
        lines.append("STALLED  " + ", ".join(s["stalled"]) + " (watchdog withheld)")
    devices = s["devices"]
    lines.append(f"devices  {len(devices)}" + ("" if devices else " configured"))
    lines += [f"  {d['health']:<8} {d['family']:<13} {d['id']}" for d in devices]
    lines += _receiver_lines(s.get("dc09"))
    alarms = s["alarms"]
    lines.append(f"in alarm {len(alarms)}")
    lines += [
        f"  {a['zone']:<10} {a['type']:<22} since {_when(a['since'], tz)}"
        + (f" ({a['detail']})" if a["detail"] else "")
        for a in alarms
    ]
    recent = s["recent"]
    lines.append(f"last {len(recent)} events")
    # columns as wide as the longest shown (a camera's subject names its video source)
    kind, subject = _width(recent, "type", 22), _width(recent, "subject", 12)
    lines += [
        f"  {_when(e['stored_at'], tz)}  #{e['seq']:<6} P{e['priority']} {e['type']:<{kind}} "
        f"{e['subject']:<{subject}} {e['state']:<8} {_delivery(e)}"
        for e in recent
    ]
    lines += _walk_lines(s.get("walk_test"), tz)
    return "\n".join(lines)


def _width(rows: list[dict[str, Any]], key: str, least: int) -> int:
    """The width of a column: its longest value shown, at least ``least``."""
    return max([least, *(len(str(row[key])) for row in rows)])


def _receiver_lines(r: dict[str, Any] | None) -> list[str]:
    """The DC-09 receiver's counters (none without a receiver)."""
    if r is None:
        return []
    c: dict[str, int] = r["counts"]
    refused = sum(n for k, n in c.items() if k.startswith("refused."))
    return [
        f"dc09     {c.get('frames', 0)} frames: {c.get('accepted', 0)} accepted, "
        f"{c.get('null', 0)} link tests, {c.get('duplicates', 0)} repeats, {refused} refused; "
        f"answered ACK {c.get('ack', 0)} NAK {c.get('nak', 0)} DUH {c.get('duh', 0)}, "
        f"none {c.get('unanswered', 0)}  connections {r['connections']}"
    ]


def _walk_lines(walk: dict[str, Any] | None, tz: tzinfo | None) -> list[str]:
    """The running walk test and the last report: zones tripped (first and last trip,
    how often, by what), zones never tripped, and the times, in the site's time."""
    if walk is None:
        return []
    names: dict[str, str] = walk.get("names", {})
    lines: list[str] = []
    active, report = walk.get("active"), walk.get("last_report")
    if active is None:
        lines.append("walk test  none running")
    else:
        lines.append(
            f"walk test  RUNNING {_scope(active)} by {active['by']}  "
            f"since {_stamp(active['started'], tz)} until {_stamp(active['until'], tz)}"
        )
        lines += _trip_lines(active, names, "not yet tripped", tz)
    if report is None:
        lines.append("last walk test  none")
    else:
        lines.append(
            f"last walk test  {_scope(report)} by {report['by']}  "
            f"{_stamp(report['started'], tz)} to {_stamp(report['ended'], tz)}  "
            f"ended: {report['reason']}"
            + (f" by {report['ended_by']}" if report.get("ended_by") else "")
        )
        lines += _trip_lines(report, names, "never tripped", tz)
    return lines


def _scope(test: dict[str, Any]) -> str:
    what = f"area {test['area']}" if test.get("area") else "zones"
    return f"{what} ({len(test['zones'])} zones)"


def _trip_lines(
    test: dict[str, Any], names: dict[str, str], missing: str, tz: tzinfo | None
) -> list[str]:
    tripped: dict[str, dict[str, Any]] = test.get("tripped", {})
    untripped: list[str] = test.get("untripped", [])
    lines = [f"  tripped {len(tripped)} of {len(test['zones'])}"]
    for zone in test["zones"]:
        trip = tripped.get(zone)
        if trip is not None:
            by = ",".join(trip.get("conditions", []))
            first, last = _stamp(trip["first"], tz), _stamp(trip["last"], tz)
            lines.append(
                f"    {zone:<10} first {first}  last {last}  {trip['count']}x {by}  "
                + names.get(zone, "")
            )
    lines.append(f"  {missing} {len(untripped)}")
    lines += [f"    {zone:<10} {names.get(zone, '')}" for zone in untripped]
    if test.get("kept_live"):
        lines.append("  kept live (panic): " + ", ".join(test["kept_live"]))
    return lines


def _stamp(text: str | None, tz: tzinfo | None) -> str:
    """An RFC 3339 time from the daemon, in the site's time."""
    if not text:
        return "-"
    return _when(parse_rfc3339(text).timestamp(), tz)


def _delivery(event: dict[str, Any]) -> str:
    """``acked`` (the center), ``sent`` (the broker's PUBACK) or ``pending``."""
    if event["acked_at"] is not None:
        return "acked"
    return "sent" if event["sent_at"] is not None else "pending"


def _known(value: object) -> str:
    """A figure the snapshot read, or ``?`` when the outbox could not be read."""
    return "?" if value is None else str(value)
